/* test_support.h - what privileged tests need from C: Swift's Glibc module
 * lacks the _GNU_SOURCE calls (sched_setaffinity, setns). */
#ifndef TANDEM_TEST_SUPPORT_H
#define TANDEM_TEST_SUPPORT_H

#include <stddef.h>

/* pin_thread.c */

/* Pins the calling thread to `cpu`; returns 0 or -errno. */
int tandem_test_pin_thread(int cpu);
/* Lets the calling thread run on every CPU again. */
int tandem_test_unpin_thread(void);

/* netns.c */

/* Moves the calling thread into the network namespace at `path`; returns a
 * descriptor of the namespace it left (for tandem_test_leave_netns), or
 * -errno. */
int tandem_test_enter_netns(const char *path);
/* Returns the calling thread to the namespace `fd` names, and closes it. */
int tandem_test_leave_netns(int fd);

/* run_command.c */

/* Runs `command` with /bin/sh, its stdout and stderr into `out` (NUL
 * terminated, truncated to `size`); returns the exit status or -1. */
int tandem_test_run(const char *command, char *out, size_t size);

#endif
