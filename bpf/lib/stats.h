/* stats.h - per-CPU counters: no atomics, summed by the reader. */
#ifndef TANDEM_STATS_H
#define TANDEM_STATS_H

#include "maps.h"

static __always_inline void count_reason(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&pkt_stats, &reason);

	if (c)
		*c += 1;
}

static __always_inline struct tandem_counters *svc_counters(__u32 id)
{
	return bpf_map_lookup_elem(&svc_stats, &id);
}

/* NULL for TANDEM_NO_BACKEND (out of the array's range). */
static __always_inline struct tandem_counters *backend_counters(__u32 index)
{
	return bpf_map_lookup_elem(&backend_stats, &index);
}

#endif
