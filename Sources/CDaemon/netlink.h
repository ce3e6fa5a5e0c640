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
 * (-ETIMEDOUT when the kernel said nothing for 2 s, -EMSGSIZE when the
 * datagram did not fit in `size`). */
int tandem_nl_receive(int fd, void *buffer, size_t size);

/* What message `nh` of a dump's reply says of the dump: 1 for an entry to
 * read; 0 with *done set for its end (NLMSG_DONE, or an error message of 0);
 * -errno with *done set when it failed, even partway (the kernel puts the
 * reason in NLMSG_DONE then). A dump the kernel marks interrupted (the
 * table changed while it was read) sets *interrupted: the caller returns
 * -EINTR and its Swift caller reads the table again. */
int tandem_nl_dump_step(const struct nlmsghdr *nh, int *done, int *interrupted);

#endif
