/* forward.h - direct server return: the packet goes back out the same NIC
 * with only the MACs changed. Our own MAC is the one the frame came to, so
 * it becomes the source; the real's MAC becomes the destination. The real
 * holds the VIP on a loopback and answers the client itself. */
#ifndef TANDEM_FORWARD_H
#define TANDEM_FORWARD_H

#include <linux/if_ether.h>
#include "tandem_abi.h"

static __always_inline int forward_dsr(void *data, void *data_end, const struct tandem_real *real)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, real->mac, ETH_ALEN);
	return XDP_TX;
}

#endif
