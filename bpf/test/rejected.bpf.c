// SPDX-License-Identifier: GPL-2.0
/* rejected.bpf.c - a program the verifier must refuse (it reads the packet
 * without a bounds check), for the loader's verifier-log test. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int rejected(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[0];
}

char LICENSE[] SEC("license") = "GPL";
