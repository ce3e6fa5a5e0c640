/* mac_swap.h - the benchmark floor's whole work: swap the Ethernet addresses. */
#ifndef TANDEM_MAC_SWAP_H
#define TANDEM_MAC_SWAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>

static __always_inline int swap_macs_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	return XDP_TX;
}

#endif
