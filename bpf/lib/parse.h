/* parse.h - header cursor from Ethernet to the L4 ports.
 *
 * The rules for odd packets (docs/design/packet-path.md, "Packet rules"):
 *   not IPv4/IPv6 ......................... pass  (PASS_NOT_IP)
 *   802.1Q / 802.1ad tag .................. pass  (PASS_VLAN)
 *   truncated or invalid L2/L3 header ..... pass  (PASS_MALFORMED); the
 *                                           stack validates and drops it
 *   IPv4 options .......................... honoured, L4 found after them
 *   IPv4 fragment, VIP address ............ drop  (DROP_FRAGMENT)
 *   IPv6 extension header, VIP address .... drop  (DROP_IPV6_EXT)
 *   ICMP and other protocols .............. pass  (PASS_OTHER_PROTO)
 *   TCP/UDP header truncated, VIP address . drop  (DROP_MALFORMED)
 * Fragments, extension headers and truncated L4 headers to other addresses
 * are passed as PASS_NOT_VIP / PASS_MALFORMED.
 */
#ifndef TANDEM_PARSE_H
#define TANDEM_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

#define TANDEM_PARSED TANDEM_R_MAX /* not a reason: carry on */

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct packet {
	struct tandem_flow_key flow;
	__u32 len;
	__u8 tcp_flags; /* byte 13 of the TCP header; 0 for UDP */
};

#define TCP_FLAG_SYN_BIT 0x02
#define TCP_FLAG_ACK_BIT 0x10

static __always_inline int is_vip_addr(const struct packet *pkt)
{
	struct tandem_vip_key k = {};

	__builtin_memcpy(k.addr, pkt->flow.dst, sizeof(k.addr));
	k.af = pkt->flow.af;
	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/* Reads the ports. The L4 header must fit both the frame (data_end, for
 * the verifier) and the payload length the IP header claims (l4_len, a
 * plain number so the compiler cannot merge it with the pointer check). */
static __always_inline int parse_l4(void *l4, __u32 l4_len, void *data_end, struct packet *pkt)
{
	/* Hide l4_len's origin, or clang proves the data_end test redundant
	 * and drops the one check the verifier understands. */
	barrier_var(l4_len);
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || l4_len < sizeof(*th) || th->doff < 5)
			return is_vip_addr(pkt) ? TANDEM_R_DROP_MALFORMED : TANDEM_R_PASS_MALFORMED;
		pkt->flow.sport = bpf_ntohs(th->source);
		pkt->flow.dport = bpf_ntohs(th->dest);
		pkt->tcp_flags = ((__u8 *)th)[13];
		return TANDEM_PARSED;
	}
	struct udphdr *uh = l4;

	if ((void *)(uh + 1) > data_end || l4_len < sizeof(*uh))
		return is_vip_addr(pkt) ? TANDEM_R_DROP_MALFORMED : TANDEM_R_PASS_MALFORMED;
	pkt->flow.sport = bpf_ntohs(uh->source);
	pkt->flow.dport = bpf_ntohs(uh->dest);
	return TANDEM_PARSED;
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct packet *pkt)
{
	struct iphdr *iph = l3;

	if ((void *)(iph + 1) > data_end)
		return TANDEM_R_PASS_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return TANDEM_R_PASS_MALFORMED;

	/* ihl is 4 bits, so hlen <= 60 and the verifier can bound l4. */
	__u32 hlen = iph->ihl * 4;
	__u16 tot_len = bpf_ntohs(iph->tot_len);

	if (l3 + hlen > data_end || tot_len < hlen || l3 + tot_len > data_end)
		return TANDEM_R_PASS_MALFORMED;

	pkt->flow.af = TANDEM_AF_INET;
	pkt->flow.proto = iph->protocol;
	__builtin_memcpy(pkt->flow.src, &iph->saddr, 4);
	__builtin_memcpy(pkt->flow.dst, &iph->daddr, 4);

	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return TANDEM_R_PASS_OTHER_PROTO;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return is_vip_addr(pkt) ? TANDEM_R_DROP_FRAGMENT : TANDEM_R_PASS_NOT_VIP;
	return parse_l4(l3 + hlen, tot_len - hlen, data_end, pkt);
}

static __always_inline int is_ipv6_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:	  /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	}
	return 0;
}

static __always_inline int parse_ipv6(void *l3, void *data_end, struct packet *pkt)
{
	struct ipv6hdr *ip6h = l3;

	if ((void *)(ip6h + 1) > data_end)
		return TANDEM_R_PASS_MALFORMED;
	if (ip6h->version != 6)
		return TANDEM_R_PASS_MALFORMED;
	__u16 payload_len = bpf_ntohs(ip6h->payload_len);

	if ((void *)(ip6h + 1) + payload_len > data_end)
		return TANDEM_R_PASS_MALFORMED;

	pkt->flow.af = TANDEM_AF_INET6;
	pkt->flow.proto = ip6h->nexthdr;
	__builtin_memcpy(pkt->flow.src, &ip6h->saddr, 16);
	__builtin_memcpy(pkt->flow.dst, &ip6h->daddr, 16);

	if (ip6h->nexthdr == IPPROTO_TCP || ip6h->nexthdr == IPPROTO_UDP)
		return parse_l4(ip6h + 1, payload_len, data_end, pkt);
	if (is_ipv6_ext(ip6h->nexthdr))
		return is_vip_addr(pkt) ? TANDEM_R_DROP_IPV6_EXT : TANDEM_R_PASS_NOT_VIP;
	return TANDEM_R_PASS_OTHER_PROTO;
}

/* Fills pkt; returns TANDEM_PARSED or the reason to pass/drop. */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TANDEM_R_PASS_MALFORMED;
	pkt->len = data_end - data;

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return parse_ipv4(eth + 1, data_end, pkt);
	case bpf_htons(ETH_P_IPV6):
		return parse_ipv6(eth + 1, data_end, pkt);
	case bpf_htons(ETH_P_8021Q):
	case bpf_htons(ETH_P_8021AD):
		return TANDEM_R_PASS_VLAN;
	}
	return TANDEM_R_PASS_NOT_IP;
}

#endif
