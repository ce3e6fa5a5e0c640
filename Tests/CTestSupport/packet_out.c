#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include "packet_out.h"

int tandem_packet_out_open(const char *ifname, const unsigned char *dst_mac, struct sockaddr_ll *to)
{
	int ifindex = if_nametoindex(ifname);

	if (!ifindex)
		return -EINVAL;
	int fd = socket(AF_PACKET, SOCK_RAW, 0);

	if (fd < 0)
		return -errno;
	int one = 1;

	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	*to = (struct sockaddr_ll){
		.sll_family = AF_PACKET,
		.sll_ifindex = ifindex,
		.sll_halen = 6,
	};
	memcpy(to->sll_addr, dst_mac, 6);
	return fd;
}

int tandem_packet_out_send(int fd, struct sockaddr_ll *to, struct iovec *iov, struct mmsghdr *msgs,
			   unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		msgs[i] = (struct mmsghdr){ .msg_hdr = {
						    .msg_name = to,
						    .msg_namelen = sizeof(*to),
						    .msg_iov = &iov[i],
						    .msg_iovlen = 1,
					    } };
	int r = sendmmsg(fd, msgs, n, 0);

	if (r < 0)
		return errno == EINTR || errno == ENOBUFS || errno == EAGAIN ? 0 : -errno;
	return r;
}
