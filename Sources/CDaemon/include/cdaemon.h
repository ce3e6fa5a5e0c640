/* What the daemon needs from the system that Swift's Glibc module does not
 * offer: systemd's notification protocol (sd_notify(3)) without
 * libsystemd, and a priority for one thread. */
#ifndef TANDEM_CDAEMON_H
#define TANDEM_CDAEMON_H

/* Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 when sent, 0
 * when the variable is unset (not started by systemd), or -errno. */
int tandem_sd_notify(const char *state);

/* Sets the calling thread's nice value (not the whole process's). Returns
 * 0 or -errno. */
int tandem_set_thread_nice(int nice);

#endif
