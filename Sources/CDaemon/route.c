/* route.c - host routes over rtnetlink, without spawning ip(8): add,
 * delete (of one protocol only) and list the routes of one table; and the
 * route the kernel picks for one address. Each call opens its own
 * NETLINK_ROUTE socket in the caller's network namespace, so the
 * functions are safe from any thread. */
#include "cdaemon.h"
#include "netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct route_request {
	struct nlmsghdr nh;
	struct rtmsg rt;
	char attrs[64];
};

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
	tandem_nl_add_attr(&req.nh, RTA_TABLE, &r->table, sizeof(r->table));
	tandem_nl_add_attr(&req.nh, RTA_DST, r->dst, len);
	if (type == RTM_NEWROUTE)
		tandem_nl_add_attr(&req.nh, RTA_OIF, &r->ifindex, sizeof(r->ifindex));

	fd = tandem_nl_open();
	if (fd < 0)
		return fd;
	err = tandem_nl_send(fd, &req.nh);
	while (!err) {
		int left = tandem_nl_receive(fd, reply, sizeof(reply));
		struct nlmsghdr *nh = (struct nlmsghdr *)reply;

		if (left < 0) {
			err = left;
			break;
		}
		for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
			if (nh->nlmsg_seq != 1 || nh->nlmsg_type != NLMSG_ERROR)
				continue;
			/* error 0 is the acknowledgement; otherwise -errno. */
			err = nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)) ?
				      -EPROTO :
				      ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
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

	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
		return 0;
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
	int fd, count = 0, interrupted = 0;

	fd = tandem_nl_open();
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
		tandem_nl_add_attr(&req.nh, RTA_TABLE, &table, sizeof(table));
		err = tandem_nl_send(fd, &req.nh);
		while (!err && !done) {
			int left = tandem_nl_receive(fd, reply, sizeof(reply));
			struct nlmsghdr *nh = (struct nlmsghdr *)reply;

			if (left < 0) {
				err = left;
				break;
			}
			for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
				struct tandem_route route;
				int step;

				if (nh->nlmsg_seq != req.nh.nlmsg_seq)
					continue;
				step = tandem_nl_dump_step(nh, &done, &interrupted);
				if (step <= 0) {
					err = step;
					/* No routes of this family at all (no IPv6). */
					if (err == -EAFNOSUPPORT || err == -ENOENT)
						err = 0;
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
	return interrupted ? -EINTR : count;
}

/* Reads the reply to a route lookup into `out`. */
static void parse_hop(struct nlmsghdr *nh, struct tandem_route_hop *out)
{
	struct rtmsg *rt = NLMSG_DATA(nh);
	int len = (int)RTM_PAYLOAD(nh);
	struct rtattr *a;

	memset(out, 0, sizeof(*out));
	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
		return;
	out->type = rt->rtm_type;
	for (a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t size = RTA_PAYLOAD(a);

		if (a->rta_type == RTA_OIF && size == 4) {
			memcpy(&out->ifindex, RTA_DATA(a), 4);
		} else if (a->rta_type == RTA_GATEWAY && size <= sizeof(out->gateway)) {
			out->has_gateway = 1;
			out->gateway_family = size == 4 ? AF_INET : AF_INET6;
			memcpy(out->gateway, RTA_DATA(a), size);
		} else if (a->rta_type == RTA_VIA && size >= sizeof(struct rtvia)) {
			/* An IPv4 route through an IPv6 next hop. */
			struct rtvia *via = RTA_DATA(a);
			size_t bytes = size - sizeof(struct rtvia);

			out->has_gateway = 1;
			out->gateway_family = (uint8_t)via->rtvia_family;
			memcpy(out->gateway, via->rtvia_addr,
			       bytes < sizeof(out->gateway) ? bytes : sizeof(out->gateway));
		}
	}
}

int tandem_route_get(uint8_t family, const uint8_t *dst, struct tandem_route_hop *out)
{
	struct route_request req = { 0 };
	char reply[4096];
	size_t len = family == AF_INET ? 4 : 16;
	int fd, err;

	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = family;
	req.rt.rtm_dst_len = (unsigned char)(len * 8);
	tandem_nl_add_attr(&req.nh, RTA_DST, dst, len);

	fd = tandem_nl_open();
	if (fd < 0)
		return fd;
	err = tandem_nl_send(fd, &req.nh);
	while (!err) {
		int left = tandem_nl_receive(fd, reply, sizeof(reply));
		struct nlmsghdr *nh = (struct nlmsghdr *)reply;

		if (left < 0) {
			err = left;
			break;
		}
		for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
			if (nh->nlmsg_seq != 1)
				continue;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				err = nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)) ?
					      -EPROTO :
					      ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
				close(fd);
				return err ? err : -ENOENT;
			}
			if (nh->nlmsg_type == RTM_NEWROUTE) {
				parse_hop(nh, out);
				close(fd);
				return 0;
			}
		}
	}
	close(fd);
	return err;
}
