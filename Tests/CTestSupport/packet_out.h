/* packet_out.h - the raw-frame senders' shared half (flood.c, frames.c):
 * an AF_PACKET socket out of one interface, and one sendmmsg of a batch.
 * Private to CTestSupport. */
#ifndef TANDEM_PACKET_OUT_H
#define TANDEM_PACKET_OUT_H

#include <linux/if_packet.h>
#include <sys/socket.h>

/* Opens an AF_PACKET socket that sends out of `ifname`, straight to the
 * driver (no qdisc between it and the veth), and fills `to` for frames to
 * `dst_mac`. Returns the socket or -errno. */
int tandem_packet_out_open(const char *ifname, const unsigned char *dst_mac,
			   struct sockaddr_ll *to);

/* Sends `n` frames, `iov[i]` each, to `to` with one sendmmsg. Returns the
 * frames sent (0 when the device asks to try again) or -errno. */
int tandem_packet_out_send(int fd, struct sockaddr_ll *to, struct iovec *iov, struct mmsghdr *msgs,
			   unsigned int n);

#endif
