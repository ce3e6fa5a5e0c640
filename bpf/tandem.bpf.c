// SPDX-License-Identifier: GPL-2.0
/* tandem.bpf.c - the XDP entry point. The pipeline is lib/pipeline.h; each
 * step (parse, persistence, scheduling, forwarding, counters) has its own
 * header in lib/. */
#include "lib/pipeline.h"

SEC("xdp")
int tandem_xdp(struct xdp_md *ctx)
{
	return tandem_process(ctx);
}

char LICENSE[] SEC("license") = "GPL";
