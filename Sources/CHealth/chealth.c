/* chealth.c - the half-open tcp probe's packets: SYNs built and sent in
 * batches through a raw socket, SYN-ACKs and resets read in batches through
 * a classic BPF filter, and the keyed hash that makes each SYN's sequence
 * number. */
#define _GNU_SOURCE
#include "chealth.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SYN_BATCH 64
#define TCP_SYN_LEN 24 /* header and one option: MSS */
#define REPLY_BYTES 128

int tandem_syn_socket(int family, uint16_t port)
{
	/* Only packets to `port` with SYN and ACK, or RST: everything else the
	 * kernel drops before it is queued. IPv4 raw sockets see the IP header
	 * (its length in X), IPv6 ones start at the TCP header. */
	struct sock_filter v4[] = {
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 5),
		BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x04, 2, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x12, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, REPLY_BYTES),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_filter v6[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 2),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 5),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x04, 2, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x12, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, REPLY_BYTES),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog program;
	int one = 1, size = 1 << 20, offset = 16, fd, err;
	char drain[REPLY_BYTES];

	if (family == AF_INET) {
		program.len = sizeof(v4) / sizeof(v4[0]);
		program.filter = v4;
	} else {
		program.len = sizeof(v6) / sizeof(v6[0]);
		program.filter = v6;
	}
	fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) < 0)
		goto fail;
	if (family == AF_INET) {
		if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0)
			goto fail;
	} else if (setsockopt(fd, IPPROTO_IPV6, IPV6_CHECKSUM, &offset, sizeof(offset)) < 0) {
		goto fail;
	}
	/* Room for a burst of answers; the kernel caps it at rmem_max. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	/* What came in before the filter was attached. */
	while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) >= 0)
		;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A SYN's TCP header with an MSS option; the checksum is left 0. */
static void tcp_syn(uint8_t *tcp, uint16_t sport, const struct tandem_syn *syn, uint16_t mss)
{
	memset(tcp, 0, TCP_SYN_LEN);
	put16(tcp, sport);
	put16(tcp + 2, syn->dport);
	put32(tcp + 4, syn->seq);
	put32(tcp + 8, syn->ack);
	tcp[12] = (TCP_SYN_LEN / 4) << 4;
	tcp[13] = syn->flags ? syn->flags : 0x02;
	put16(tcp + 14, 64240);
	tcp[20] = 2;
	tcp[21] = 4;
	put16(tcp + 22, mss);
}

int tandem_syn_send(int fd, int family, uint16_t sport, const struct tandem_syn *syns, int count,
		    int32_t *sent)
{
	uint8_t packets[SYN_BATCH][20 + TCP_SYN_LEN];
	struct sockaddr_storage names[SYN_BATCH];
	struct iovec iov[SYN_BATCH];
	struct mmsghdr msgs[SYN_BATCH];
	int done = 0;

	*sent = 0;
	while (done < count) {
		int n = count - done < SYN_BATCH ? count - done : SYN_BATCH;
		for (int i = 0; i < n; i++) {
			const struct tandem_syn *syn = &syns[done + i];
			uint8_t *p = packets[i];
			memset(&msgs[i], 0, sizeof(msgs[i]));
			memset(&names[i], 0, sizeof(names[i]));
			if (family == AF_INET) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&names[i];
				uint8_t *tcp = p + 20;
				uint32_t sum;
				memset(p, 0, 20);
				p[0] = 0x45;
				put16(p + 2, 20 + TCP_SYN_LEN);
				put16(p + 6, 0x4000); /* DF */
				p[8] = 64;
				p[9] = IPPROTO_TCP;
				memcpy(p + 12, syn->src, 4);
				memcpy(p + 16, syn->dst, 4);
				tcp_syn(tcp, sport, syn, 1460);
				sum = sum16(syn->src, 4, 0);
				sum = sum16(syn->dst, 4, sum);
				sum += IPPROTO_TCP + TCP_SYN_LEN;
				put16(tcp + 16, fold(sum16(tcp, TCP_SYN_LEN, sum)));
				sin->sin_family = AF_INET;
				memcpy(&sin->sin_addr, syn->dst, 4);
				msgs[i].msg_hdr.msg_namelen = sizeof(*sin);
				iov[i].iov_base = p;
				iov[i].iov_len = 20 + TCP_SYN_LEN;
			} else {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&names[i];
				tcp_syn(p, sport, syn, 1440);
				sin6->sin6_family = AF_INET6;
				memcpy(&sin6->sin6_addr, syn->dst, 16);
				msgs[i].msg_hdr.msg_namelen = sizeof(*sin6);
				iov[i].iov_base = p;
				iov[i].iov_len = TCP_SYN_LEN;
			}
			msgs[i].msg_hdr.msg_name = &names[i];
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int batch = sendmmsg(fd, msgs, n, MSG_DONTWAIT);
		if (batch < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += batch;
		*sent = done;
		if (batch < n) {
			/* The next one failed: send it alone for its errno. */
			batch = sendmmsg(fd, &msgs[batch], 1, MSG_DONTWAIT);
			if (batch != 1)
				return batch < 0 ? -errno : -EAGAIN;
			done += 1;
			*sent = done;
		}
	}
	return 0;
}

int tandem_syn_receive(int fd, int family, uint16_t sport, struct tandem_syn_reply *replies,
		       int max, int *read)
{
	uint8_t buffers[SYN_BATCH][REPLY_BYTES];
	struct sockaddr_storage names[SYN_BATCH];
	struct iovec iov[SYN_BATCH];
	struct mmsghdr msgs[SYN_BATCH];
	int n = max < SYN_BATCH ? max : SYN_BATCH, count = 0;

	for (int i = 0; i < n; i++) {
		memset(&msgs[i], 0, sizeof(msgs[i]));
		iov[i].iov_base = buffers[i];
		iov[i].iov_len = REPLY_BYTES;
		msgs[i].msg_hdr.msg_name = &names[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	int got = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
	*read = got < 0 ? 0 : got;
	if (got < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	for (int i = 0; i < got; i++) {
		const uint8_t *p = buffers[i];
		size_t len = msgs[i].msg_len < REPLY_BYTES ? msgs[i].msg_len : REPLY_BYTES;
		struct tandem_syn_reply *r = &replies[count];
		memset(r, 0, sizeof(*r));
		if (family == AF_INET) {
			size_t ihl;
			if (len < 20 || (p[0] >> 4) != 4 || p[9] != IPPROTO_TCP)
				continue;
			ihl = (size_t)(p[0] & 0x0f) * 4;
			if (ihl < 20 || len < ihl + 20)
				continue;
			memcpy(r->src, p + 12, 4);
			p += ihl;
			len -= ihl;
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&names[i];
			if (len < 20 || sin6->sin6_family != AF_INET6)
				continue;
			memcpy(r->src, &sin6->sin6_addr, 16);
		}
		uint8_t flags = p[13];
		if (((uint16_t)(p[2] << 8 | p[3])) != sport)
			continue;
		if (!(flags & 0x10)) /* no ACK: not an answer to our SYN */
			continue;
		if (flags & 0x04)
			r->reset = 1;
		else if ((flags & 0x12) != 0x12)
			continue;
		r->sport = (uint16_t)(p[0] << 8 | p[1]);
		r->ack = get32(p + 8);
		count++;
	}
	return count;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                   \
	do {                       \
		v0 += v1;          \
		v1 = ROTL(v1, 13); \
		v1 ^= v0;          \
		v0 = ROTL(v0, 32); \
		v2 += v3;          \
		v3 = ROTL(v3, 16); \
		v3 ^= v2;          \
		v0 += v3;          \
		v3 = ROTL(v3, 21); \
		v3 ^= v0;          \
		v2 += v1;          \
		v1 = ROTL(v1, 17); \
		v1 ^= v2;          \
		v2 = ROTL(v2, 32); \
	} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint64_t tandem_siphash32(const uint8_t key[16], const uint8_t data[32])
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	for (int i = 0; i < 32; i += 8) {
		uint64_t m = le64(data + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)32 << 56;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
