// SPDX-License-Identifier: GPL-2.0
/* live.bpf.c - the live-packet benchmark's two ends (tools/bench).
 *
 * live_gen is never attached: BPF_PROG_TEST_RUN runs it in live-frames mode
 * (BPF_F_TEST_XDP_LIVE_FRAMES) with the generator's veth as ingress device.
 * Its XDP_TX becomes a transmit out of that veth, so each frame arrives on
 * the peer, the load balancer's eth0, where the program under test runs.
 * With live_mode set it writes a fresh source address and port into every
 * frame first, so each frame is a new connection.
 *
 * live_sink sits on the generator's veth and counts the frames the program
 * under test sent back (XDP_TX), then drops them: the count over wall time
 * is the forwarding rate. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} live_received SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} live_sent SEC(".maps");

/* 0: send the frame as it is; 1: a new connection in every frame. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} live_mode SEC(".maps");

SEC("xdp")
int live_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(iph + 1);
	__u32 zero = 0;
	__u64 *sent = bpf_map_lookup_elem(&live_sent, &zero);
	__u32 *mode = bpf_map_lookup_elem(&live_mode, &zero);

	if (!sent || !mode)
		return XDP_ABORTED;
	if (*mode && (void *)(tcp + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP)) {
		/* 131,072 clients (198.18.0.0/15) in turn, a new source port
		 * on each round: every frame is a new connection, the first
		 * round's also a new client. */
		__u32 n = (__u32)*sent;
		iph->saddr = bpf_htonl(0xC6120000 | (n & 0x1FFFF));
		tcp->source = bpf_htons(1024 + ((n >> 17) % 64000));
	}
	*sent += 1;
	return XDP_TX;
}

SEC("xdp")
int live_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *received = bpf_map_lookup_elem(&live_received, &zero);

	if (received)
		*received += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
