/* route.c - host routes over rtnetlink, without spawning ip(8): add,
 * delete (of one protocol only) and list the routes of one table. Each
 * call opens its own NETLINK_ROUTE socket in the caller's network
 * namespace, so the functions are safe from any thread. */
#include "cdaemon.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

struct route_request {
	struct nlmsghdr nh;
	struct rtmsg rt;
	char attrs[64];
};

static void add_attr(struct nlmsghdr *nh, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* A socket whose replies cannot hang the caller: 2 s at most per read. */
static int open_route_socket(void)
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
	/* Lets the kernel filter a dump by table; older kernels ignore it. */
	setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
	return fd;
}

static int send_request(int fd, struct nlmsghdr *nh)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t sent;

	do {
		sent = sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
	} while (sent < 0 && errno == EINTR);
	return sent < 0 ? -errno : 0;
}

static ssize_t receive(int fd, void *buffer, size_t size)
{
	ssize_t got;

	do {
		got = recv(fd, buffer, size, 0);
	} while (got < 0 && errno == EINTR);
	if (got < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	return got;
}

/* Sends a route change and waits for the kernel's acknowledgement. */
static int change(const struct tandem_route *r, int type, int flags)
{
	struct route_request req = { 0 };
	char reply[4096];
	size_t len = r->family == AF_INET ? 4 : 16;
	int fd, err;

	if (r->family != AF_INET && r->family != AF_INET6)
		return -EAFNOSUPPORT;
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.nh.nlmsg_type = type;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = r->family;
	req.rt.rtm_dst_len = r->prefix_len;
	req.rt.rtm_protocol = r->protocol;
	req.rt.rtm_table = r->table < 256 ? r->table : RT_TABLE_UNSPEC;
	if (type == RTM_NEWROUTE) {
		req.rt.rtm_type = RTN_UNICAST;
		/* What ip(8) picks for a route without a gateway. */
		req.rt.rtm_scope = r->family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
	} else {
		req.rt.rtm_scope = RT_SCOPE_NOWHERE; /* delete: any scope */
	}
	add_attr(&req.nh, RTA_TABLE, &r->table, sizeof(r->table));
	add_attr(&req.nh, RTA_DST, r->dst, len);
	if (type == RTM_NEWROUTE)
		add_attr(&req.nh, RTA_OIF, &r->ifindex, sizeof(r->ifindex));

	fd = open_route_socket();
	if (fd < 0)
		return fd;
	err = send_request(fd, &req.nh);
	while (!err) {
		ssize_t got = receive(fd, reply, sizeof(reply));
		struct nlmsghdr *nh = (struct nlmsghdr *)reply;

		if (got < 0) {
			err = (int)got;
			break;
		}
		for (; NLMSG_OK(nh, (size_t)got); nh = NLMSG_NEXT(nh, got)) {
			if (nh->nlmsg_seq != 1 || nh->nlmsg_type != NLMSG_ERROR)
				continue;
			/* error 0 is the acknowledgement; otherwise -errno. */
			err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
			close(fd);
			return err;
		}
	}
	close(fd);
	return err;
}

int tandem_route_add(const struct tandem_route *r)
{
	return change(r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
}

int tandem_route_delete(const struct tandem_route *r)
{
	return change(r, RTM_DELROUTE, 0);
}

/* Reads one route message into `out`; 1 when it is of `table`. */
static int parse_route(struct nlmsghdr *nh, uint32_t table, struct tandem_route *out)
{
	struct rtmsg *rt = NLMSG_DATA(nh);
	int len = (int)RTM_PAYLOAD(nh);
	struct rtattr *a;

	memset(out, 0, sizeof(*out));
	out->table = rt->rtm_table;
	out->family = rt->rtm_family;
	out->prefix_len = rt->rtm_dst_len;
	out->protocol = rt->rtm_protocol;
	out->type = rt->rtm_type;
	for (a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t size = RTA_PAYLOAD(a);

		if (a->rta_type == RTA_TABLE && size == 4)
			memcpy(&out->table, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_OIF && size == 4)
			memcpy(&out->ifindex, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_DST && size <= sizeof(out->dst))
			memcpy(out->dst, RTA_DATA(a), size);
	}
	return out->table == table && (out->family == AF_INET || out->family == AF_INET6);
}

int tandem_route_list(uint32_t table, struct tandem_route *out, int max)
{
	struct route_request req = { 0 };
	static const int families[] = { AF_INET, AF_INET6 };
	char reply[32768];
	int fd, count = 0;

	fd = open_route_socket();
	if (fd < 0)
		return fd;
	for (unsigned i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		int done = 0, err;

		memset(&req, 0, sizeof(req));
		req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
		req.nh.nlmsg_type = RTM_GETROUTE;
		req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		req.nh.nlmsg_seq = 2 + i;
		req.rt.rtm_family = families[i];
		req.rt.rtm_table = table < 256 ? table : RT_TABLE_UNSPEC;
		add_attr(&req.nh, RTA_TABLE, &table, sizeof(table));
		err = send_request(fd, &req.nh);
		while (!err && !done) {
			ssize_t got = receive(fd, reply, sizeof(reply));
			struct nlmsghdr *nh = (struct nlmsghdr *)reply;

			if (got < 0) {
				err = (int)got;
				break;
			}
			for (; NLMSG_OK(nh, (size_t)got); nh = NLMSG_NEXT(nh, got)) {
				struct tandem_route route;

				if (nh->nlmsg_seq != req.nh.nlmsg_seq)
					continue;
				if (nh->nlmsg_type == NLMSG_DONE) {
					done = 1;
					break;
				}
				if (nh->nlmsg_type == NLMSG_ERROR) {
					err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
					/* No routes of this family at all (no IPv6). */
					if (err == -EAFNOSUPPORT || err == -ENOENT)
						err = 0, done = 1;
					break;
				}
				if (nh->nlmsg_type != RTM_NEWROUTE ||
				    !parse_route(nh, table, &route))
					continue;
				if (count < max)
					out[count] = route;
				count++;
			}
		}
		if (err) {
			close(fd);
			return err;
		}
	}
	close(fd);
	return count;
}
