/* netlink.h - what route.c and neigh.c share: a NETLINK_ROUTE socket and
 * its request/reply plumbing. Private to CDaemon (not under include/). */
#ifndef TANDEM_CDAEMON_NETLINK_H
#define TANDEM_CDAEMON_NETLINK_H

#include <linux/netlink.h>
#include <stddef.h>
#include <sys/types.h>

/* Appends attribute `type` holding `len` bytes of `data` to the message;
 * the caller's buffer has room. */
void tandem_nl_add_attr(struct nlmsghdr *nh, unsigned short type, const void *data, size_t len);

/* A NETLINK_ROUTE socket whose replies cannot hang the caller (2 s at
 * most per read), with strict dump checking where the kernel has it.
 * Returns the descriptor or -errno. */
int tandem_nl_open(void);

/* Sends one request to the kernel. Returns 0 or -errno. */
int tandem_nl_send(int fd, struct nlmsghdr *nh);

/* Reads one datagram of replies. Returns its length, or -errno
 * (-ETIMEDOUT when the kernel said nothing for 2 s). */
ssize_t tandem_nl_receive(int fd, void *buffer, size_t size);

#endif
