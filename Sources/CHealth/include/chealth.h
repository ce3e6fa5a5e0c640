/* What the health checker needs from the system that Swift's Glibc module
 * does not offer: epoll(7) and eventfd(2), for the loop that drives the
 * checks' non-blocking sockets; and the half-open tcp probe's packets (SYNs
 * out through a raw socket with sendmmsg(2), SYN-ACKs and resets in with
 * recvmmsg(2) through a classic BPF filter). */
#ifndef TANDEM_CHEALTH_H
#define TANDEM_CHEALTH_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* An epoll_event's fields without its packed union, which Swift imports
 * awkwardly. */
static inline struct epoll_event tandem_epoll_event(uint32_t events, uint64_t data)
{
	struct epoll_event e;
	e.events = events;
	e.data.u64 = data;
	return e;
}

static inline uint64_t tandem_epoll_data(const struct epoll_event *e)
{
	return e->data.u64;
}

/* Asks for the `lines` cache lines from `p` ahead of their use. The loop
 * reaches each probe once a second, by when the kernel's work has pushed it
 * out of the cache: the probes of a turn are fetched together rather than
 * one after another between the turn's system calls. */
static inline void tandem_prefetch(const void *p, int lines)
{
	for (int i = 0; i < lines; i++)
		__builtin_prefetch((const char *)p + 64 * i);
}

/* One SYN to send: addresses in network order (IPv4 in the first 4 bytes),
 * ports in host order. The source address is used for IPv4 only (IPv6's
 * checksum is the kernel's, IPV6_CHECKSUM). `flags` 0 is a SYN; others
 * (with `ack`) are what tests forge. */
struct tandem_syn {
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t dport;
	uint32_t seq;
	uint32_t ack;
	uint8_t flags;
};

/* One answer read: the sender's address and port, our ack, and whether it
 * is a reset (else a SYN-ACK). */
struct tandem_syn_reply {
	uint8_t src[16];
	uint16_t sport;
	uint32_t ack;
	uint8_t reset;
};

/* A raw IPPROTO_TCP socket of `family` (AF_INET: IP_HDRINCL; AF_INET6:
 * IPV6_CHECKSUM) whose filter passes only SYN-ACKs and resets to `port`:
 * non-blocking, close-on-exec. -errno on failure. */
int tandem_syn_socket(int family, uint16_t port);

/* Builds and sends `count` SYNs from `sport` (sendmmsg, in batches). Sets
 * `*sent` to how many were sent; returns 0 when that is all of them, else
 * the -errno of the first that was not. */
int tandem_syn_send(int fd, int family, uint16_t sport, const struct tandem_syn *syns, int count,
		    int32_t *sent);

/* Reads up to `max` packets (one recvmmsg; `*read` of them came) and keeps
 * the answers to our SYNs. Returns how many, -errno on failure. */
int tandem_syn_receive(int fd, int family, uint16_t sport, struct tandem_syn_reply *replies,
		       int max, int *read);

/* SipHash-2-4 of 32 bytes under a 16-byte key. */
uint64_t tandem_siphash32(const uint8_t key[16], const uint8_t data[32]);

#endif
