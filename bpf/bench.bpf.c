// SPDX-License-Identifier: GPL-2.0
/* bench.bpf.c - benchmark entry points (tools/bench), never attached.
 *
 * BPF_PROG_TEST_RUN with `repeat` hands each iteration the previous one's
 * output frame. These programs add one to the IPv4 source address before
 * doing their work, so N repetitions are N distinct clients: the new-flow,
 * follow and reschedule paths measured inside the kernel's loop, without a
 * syscall per packet. The baseline does the same increment, then swaps MACs,
 * so both sides carry the same extra work.
 *
 * Loaded with the dataplane's pin root, this object shares its maps. */
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

char LICENSE[] SEC("license") = "GPL";
