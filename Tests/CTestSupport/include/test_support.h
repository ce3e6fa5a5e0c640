#ifndef TANDEM_TEST_SUPPORT_H
#define TANDEM_TEST_SUPPORT_H
/* TestSupport's C half: the two calls that need _GNU_SOURCE, which a header
 * Swift imports cannot define (it clashes with Swift's Glibc module). */

/* Pins thread `tid` (0: the caller) to `cpu`, or lets it run on every CPU
 * when `cpu` < 0; returns 0 or -errno. */
int tandem_test_set_affinity(int tid, int cpu);

/* Moves the calling thread into the network namespace open at `fd`;
 * returns 0 or -errno. */
int tandem_test_enter_netns(int fd);
#endif
