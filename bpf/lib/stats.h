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

static __always_inline void count_table(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&table_stats, &stat);

	if (c)
		*c += 1;
}

/* The kernel counts a hash table's entries (6.6+); its declaration wants a
 * struct bpf_map, which BTF matches by kind: any struct will do. */
struct bpf_map {
	int unused;
};
extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym;

/* An LRU table evicts before it is quite full: each CPU keeps a few free
 * entries aside. Within this many entries of capacity it counts as full. */
#define TANDEM_FULL_SLACK(cap) ((cap) / 16 < 1024 ? (cap) / 16 : 1024)

/*
 * Counts a new entry about to be written to `map` (table `table`), and
 * whether the table is full, so the write pushes out its least recently
 * used entry. The kernel's count of entries sums a counter over all CPUs:
 * each CPU reads it again only every 100 ms or 256 writes.
 */
static __always_inline void count_insert(void *map, __u32 table, __u64 now, __u32 written,
					 __u32 full)
{
	struct tandem_table_fill *f = bpf_map_lookup_elem(&table_fill, &table);

	count_table(written);
	if (!f)
		return;
	if (now - f->checked_ns >= TANDEM_FILL_CHECK_NS || f->writes >= TANDEM_FILL_CHECK_WRITES) {
		f->entries = bpf_map_sum_elem_count(map);
		f->checked_ns = now;
		f->writes = 0;
	}
	/* Between counts, every write is taken for a new entry. */
	if (f->capacity && f->entries + f->writes + TANDEM_FULL_SLACK(f->capacity) >= f->capacity)
		count_table(full);
	f->writes++;
}

#endif
