// SPDX-License-Identifier: GPL-2.0
/* baseline.bpf.c - reference programs: the benchmark floor (swap MACs,
 * XDP_TX) and a plain XDP_PASS for the far end of a veth that receives
 * XDP_TX frames (without a program there, veth drops them). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/mac_swap.h"

SEC("xdp")
int baseline_swap(struct xdp_md *ctx)
{
	return swap_macs_tx(ctx);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
