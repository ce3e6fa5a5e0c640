/* netlink.c - the NETLINK_ROUTE socket route.c and neigh.c talk over. */
#include "netlink.h"

#include <errno.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

void tandem_nl_add_attr(struct nlmsghdr *nh, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

int tandem_nl_open(void)
{
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	struct timeval timeout = { .tv_sec = 2 };
	int one = 1;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) ||
	    bind(fd, (struct sockaddr *)&local, sizeof(local))) {
		int err = -errno;

		close(fd);
		return err;
	}
	/* Lets the kernel filter a dump (by table, by interface); older
	 * kernels ignore it and the callers filter again. */
	setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
	return fd;
}

int tandem_nl_send(int fd, struct nlmsghdr *nh)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t sent;

	do {
		sent = sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
	} while (sent < 0 && errno == EINTR);
	return sent < 0 ? -errno : 0;
}

int tandem_nl_receive(int fd, void *buffer, size_t size)
{
	ssize_t got;

	do {
		got = recv(fd, buffer, size, MSG_TRUNC);
	} while (got < 0 && errno == EINTR);
	if (got < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	/* With MSG_TRUNC, the datagram's whole length: more than was read. */
	if ((size_t)got > size)
		return -EMSGSIZE;
	return (int)got;
}

int tandem_nl_dump_step(const struct nlmsghdr *nh, int *done, int *interrupted)
{
	if (nh->nlmsg_flags & NLM_F_DUMP_INTR)
		*interrupted = 1;
	if (nh->nlmsg_type == NLMSG_DONE) {
		const int *code = NLMSG_DATA(nh);

		*done = 1;
		if (nh->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) && *code < 0)
			return *code;
		return 0;
	}
	if (nh->nlmsg_type == NLMSG_ERROR) {
		*done = 1;
		if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
			return -EPROTO;
		return ((const struct nlmsgerr *)NLMSG_DATA(nh))->error;
	}
	return 1;
}
