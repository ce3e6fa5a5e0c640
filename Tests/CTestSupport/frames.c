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

#define BATCH 256
#define MAX_FRAME 1514

long tandem_test_send_frames(const char *ifname, const unsigned char *frame, unsigned int len,
			     unsigned long count, unsigned long first, int new_connections)
{
	if (len < 14 || len > MAX_FRAME)
		return -EINVAL;
	/* A new connection per frame needs an IPv4 TCP frame to rewrite. */
	if (new_connections && (len < 14 + 20 + 20 || frame[12] != 0x08 || frame[13] != 0x00))
		return -EINVAL;
	struct sockaddr_ll to;
	int fd = tandem_packet_out_open(ifname, frame, &to);

	if (fd < 0)
		return fd;

	static unsigned char frames[BATCH][MAX_FRAME];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	unsigned long sent = 0;

	for (unsigned int i = 0; i < BATCH; i++) {
		memcpy(frames[i], frame, len);
		iov[i] = (struct iovec){ .iov_base = frames[i], .iov_len = len };
	}
	while (sent < count) {
		unsigned int n = count - sent < BATCH ? (unsigned int)(count - sent) : BATCH;

		for (unsigned int i = 0; i < n; i++) {
			if (new_connections) {
				/* As bpf/live.bpf.c's live_gen: 131,072 clients
				 * (198.18.0.0/15) in turn, a new source port each
				 * round. The IP checksum is left as it was, as
				 * live_gen leaves it: the load balancer does not
				 * read it. */
				unsigned long k = first + sent + i;
				unsigned int saddr =
					htonl(0xC6120000u | (unsigned int)(k & 0x1FFFF));
				unsigned short sport =
					htons((unsigned short)(1024 + ((k >> 17) % 64000)));

				memcpy(frames[i] + 14 + 12, &saddr, 4);
				memcpy(frames[i] + 14 + 20, &sport, 2);
			}
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
