// SPDX-License-Identifier: GPL-2.0
/* bench.bpf.c - benchmark entry points (tools/bench), never attached.
 *
 * BPF_PROG_TEST_RUN with `repeat` hands each iteration the previous one's
 * output frame. bench_next_client adds one to the IPv4 source address
 * before doing its work, so N repetitions are N distinct clients: the SYN
 * and first-ACK paths measured inside the kernel's loop, without a syscall
 * per packet. bench_next_flow adds one to the TCP source port (carrying
 * into the address): N repetitions are N distinct flows, for the
 * established row over many flows. Each baseline does the same increment,
 * then swaps MACs, so both sides carry the same extra work.
 *
 * Loaded with the dataplane's pin root, this object shares its maps.
 * tools/bench also builds it against the lib/ of an earlier commit (the
 * dataplane before SYNs stopped writing state), sharing the same maps. */
#include "lib/pipeline.h"
#include "lib/mac_swap.h"

/* Not inlined: clang otherwise merges its ctx->data_end load with the
 * pipeline's through a 32-bit move the verifier cannot follow. */
static __attribute__((noinline)) void next_client(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	iph->saddr = bpf_htonl(bpf_ntohl(iph->saddr) + 1);
}

/* The next source port; after 65535 port 0 of the next address. Expects
 * IPv4 without options, as the benchmark's frames are. */
static __attribute__((noinline)) void next_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct tcphdr *th = (void *)(iph + 1);

	if ((void *)(th + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	__u16 port = bpf_ntohs(th->source) + 1;

	th->source = bpf_htons(port);
	if (port == 0)
		iph->saddr = bpf_htonl(bpf_ntohl(iph->saddr) + 1);
}

/* The pipeline alone, as tandem_xdp runs it (for the previous commit's
 * build, which has no tandem_xdp of its own here). */
SEC("xdp")
int bench_pipeline(struct xdp_md *ctx)
{
	return tandem_process(ctx);
}

SEC("xdp")
int bench_next_client(struct xdp_md *ctx)
{
	next_client(ctx);
	return tandem_process(ctx);
}

SEC("xdp")
int bench_baseline_next_client(struct xdp_md *ctx)
{
	next_client(ctx);
	return swap_macs_tx(ctx);
}

SEC("xdp")
int bench_next_flow(struct xdp_md *ctx)
{
	next_flow(ctx);
	return tandem_process(ctx);
}

SEC("xdp")
int bench_baseline_next_flow(struct xdp_md *ctx)
{
	next_flow(ctx);
	return swap_macs_tx(ctx);
}

char LICENSE[] SEC("license") = "GPL";
