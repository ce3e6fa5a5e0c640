/* neigh.c - the kernel's neighbour table (ARP and NDP) over rtnetlink,
 * without spawning ip(8): the entries of one interface, as `ip neigh show
 * dev IFACE` lists them. Each call opens its own NETLINK_ROUTE socket in
 * the caller's network namespace, so it is safe from any thread. */
#include "cdaemon.h"
#include "netlink.h"

#include <errno.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct neigh_request {
	struct nlmsghdr nh;
	struct ndmsg nd;
	char attrs[16];
};

/* Reads one neighbour message into `out`; 1 when it is of `ifindex`. */
static int parse_neighbour(struct nlmsghdr *nh, uint32_t ifindex, struct tandem_neighbour *out)
{
	struct ndmsg *nd = NLMSG_DATA(nh);
	int len;
	struct rtattr *a;

	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*nd)))
		return 0;
	len = (int)(nh->nlmsg_len - NLMSG_LENGTH(sizeof(*nd)));
	memset(out, 0, sizeof(*out));
	out->ifindex = (uint32_t)nd->ndm_ifindex;
	out->family = nd->ndm_family;
	out->state = nd->ndm_state;
	for (a = (struct rtattr *)((char *)nd + NLMSG_ALIGN(sizeof(*nd))); RTA_OK(a, len);
	     a = RTA_NEXT(a, len)) {
		size_t size = RTA_PAYLOAD(a);

		if (a->rta_type == NDA_DST && size <= sizeof(out->dst)) {
			memcpy(out->dst, RTA_DATA(a), size);
		} else if (a->rta_type == NDA_LLADDR && size <= sizeof(out->lladdr)) {
			memcpy(out->lladdr, RTA_DATA(a), size);
			out->lladdr_len = (uint8_t)size;
		}
	}
	return out->ifindex == ifindex && (out->family == AF_INET || out->family == AF_INET6);
}

int tandem_neigh_list(uint32_t ifindex, struct tandem_neighbour *out, int max)
{
	struct neigh_request req = { 0 };
	char reply[32768];
	int fd, count = 0, done = 0, interrupted = 0, err;

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ndmsg));
	req.nh.nlmsg_type = RTM_GETNEIGH;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.nd.ndm_family = AF_UNSPEC; /* both ARP and NDP */
	/* The filter goes in an attribute: a strict kernel refuses a dump
	 * request with ndm_ifindex set. */
	tandem_nl_add_attr(&req.nh, NDA_IFINDEX, &ifindex, sizeof(ifindex));

	fd = tandem_nl_open();
	if (fd < 0)
		return fd;
	err = tandem_nl_send(fd, &req.nh);
	while (!err && !done) {
		int left = tandem_nl_receive(fd, reply, sizeof(reply));
		struct nlmsghdr *nh = (struct nlmsghdr *)reply;

		if (left < 0) {
			err = left;
			break;
		}
		for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
			struct tandem_neighbour entry;
			int step;

			if (nh->nlmsg_seq != 1)
				continue;
			step = tandem_nl_dump_step(nh, &done, &interrupted);
			if (step <= 0) {
				err = step;
				break;
			}
			if (nh->nlmsg_type != RTM_NEWNEIGH || !parse_neighbour(nh, ifindex, &entry))
				continue;
			if (count < max)
				out[count] = entry;
			count++;
		}
	}
	close(fd);
	if (!err && interrupted)
		err = -EINTR;
	return err ? err : count;
}
