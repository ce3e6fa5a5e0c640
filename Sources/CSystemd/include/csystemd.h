/* systemd's service notification protocol (sd_notify(3)) without
 * libsystemd: one datagram to the socket in $NOTIFY_SOCKET. */
#ifndef TANDEM_CSYSTEMD_H
#define TANDEM_CSYSTEMD_H

/* Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 when sent, 0
 * when the variable is unset (not started by systemd), or -errno. */
int tandem_sd_notify(const char *state);

#endif
