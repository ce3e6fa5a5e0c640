#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>
#include "packet_out.h"
#include "test_support.h"

#define FRAME_LEN 60 /* Ethernet minimum: 14 + 20 + 20 + padding */
#define BATCH 256

static unsigned short ip_checksum(const unsigned char *h)
{
	unsigned long sum = 0;

	for (int i = 0; i < 20; i += 2)
		sum += (h[i] << 8) | h[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned short)~sum;
}

/* One SYN: from `src` (host order) port `sport`, to vip:dport. */
static void build(unsigned char *f, const unsigned char *dst_mac, const unsigned char *src_mac,
		  unsigned int src, unsigned int vip, unsigned short sport, unsigned short dport)
{
	unsigned char *ip = f + 14, *tcp = ip + 20;

	memset(f, 0, FRAME_LEN);
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src_mac, 6);
	f[12] = 0x08;
	ip[0] = 0x45;
	ip[3] = 40;
	ip[8] = 64;
	ip[9] = 6;
	*(unsigned int *)(ip + 12) = htonl(src);
	*(unsigned int *)(ip + 16) = htonl(vip);
	unsigned short c = ip_checksum(ip);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	tcp[0] = sport >> 8;
	tcp[1] = sport & 0xff;
	tcp[2] = dport >> 8;
	tcp[3] = dport & 0xff;
	tcp[4] = src >> 8; /* a sequence number */
	tcp[12] = 0x50;
	tcp[13] = 0x02; /* SYN */
	tcp[14] = 0xff;
	tcp[15] = 0xff;
	/* The TCP checksum stays 0: the load balancer never reads it, and
	 * the reals drop the forwarded SYN without answering it. */
}

long tandem_test_flood_syn(const char *ifname, const unsigned char *dst_mac,
			   const unsigned char *src_mac, unsigned int vip, unsigned short dport,
			   unsigned int src_base, unsigned int src_count, unsigned long count)
{
	if (!src_count)
		return -EINVAL;
	struct sockaddr_ll to;
	int fd = tandem_packet_out_open(ifname, dst_mac, &to);

	if (fd < 0)
		return fd;
	static unsigned char frames[BATCH][FRAME_LEN];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	unsigned long sent = 0;
	unsigned int stride = 40503; /* odd: walks every source before one repeats */

	while (sent < count) {
		unsigned int n = count - sent < BATCH ? (unsigned int)(count - sent) : BATCH;

		for (unsigned int i = 0; i < n; i++) {
			unsigned long k = sent + i;
			unsigned int src = src_base + (unsigned int)((k * stride) % src_count);
			unsigned short sport =
				1024 + (unsigned short)(k / src_count % 64000 + k % 7);

			build(frames[i], dst_mac, src_mac, src, vip, sport, dport);
			iov[i] = (struct iovec){ .iov_base = frames[i], .iov_len = FRAME_LEN };
		}
		int r = tandem_packet_out_send(fd, &to, iov, msgs, n);

		if (r < 0) {
			close(fd);
			return r;
		}
		sent += r;
	}
	close(fd);
	return (long)sent;
}
