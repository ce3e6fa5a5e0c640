/* persist.h - source-IP persistence shared by a follow group.
 *
 * A record names a real and the real's rec_gen when it was written. Failing
 * a real bumps its rec_gen, which invalidates all of its records for the
 * next packet in O(1); the stale entries age out of the LRU on their own.
 */
#ifndef TANDEM_PERSIST_H
#define TANDEM_PERSIST_H

#include "maps.h"

static __always_inline void persist_key(struct tandem_persist_key *k,
					const struct tandem_service *svc, const struct packet *pkt)
{
	k->group = svc->group;
	k->af = pkt->flow.af;
	/* Word-wise: all three arrays sit at 4-byte aligned offsets. */
	const __u32 *src = (const __u32 *)pkt->flow.src;
	const __u32 *mask = (const __u32 *)svc->mask;
	__u32 *client = (__u32 *)k->client;

	client[0] = src[0] & mask[0];
	client[1] = src[1] & mask[1];
	client[2] = src[2] & mask[2];
	client[3] = src[3] & mask[3];
}

static __always_inline struct tandem_backend *backend_of(__u32 service, __u32 real)
{
	struct tandem_backend_key k = { .service = service, .real = real };

	return bpf_map_lookup_elem(&backends, &k);
}

/* Takes part in scheduling only while UP; DRAINING keeps its clients. */
static __always_inline int backend_keeps_clients(const struct tandem_backend *b)
{
	return b && (b->state == TANDEM_BACKEND_UP || b->state == TANDEM_BACKEND_DRAINING);
}

/*
 * Returns the real of a live record usable on this service, or 0. Sets
 * *follow when the record was made by another service of the group, and
 * *backend to the real's backend index in this service.
 */
static __always_inline __u32 persist_lookup(const struct tandem_persist_key *k,
					    const struct tandem_service *svc, __u64 now,
					    int *follow, __u32 *backend)
{
	struct tandem_persist *rec = bpf_map_lookup_elem(&persist, k);

	if (!rec)
		return 0;

	__u32 id = rec->real;
	struct tandem_real *real = bpf_map_lookup_elem(&reals, &id);

	if (!real || !(real->flags & TANDEM_REAL_ACTIVE))
		return 0;
	if (rec->rec_gen != real->rec_gen)
		return 0;
	if (now - rec->last_seen_ns >= svc->persist_timeout_ns)
		return 0;
	struct tandem_backend *b = backend_of(svc->id, id);

	if (!backend_keeps_clients(b))
		return 0;
	*backend = b->index;

	if (now - rec->last_seen_ns >= TANDEM_PERSIST_REFRESH_NS)
		rec->last_seen_ns = now;
	*follow = rec->service != svc->id;
	return id;
}

static __always_inline void persist_write(const struct tandem_persist_key *k,
					  const struct tandem_service *svc, __u32 real,
					  __u32 rec_gen, __u64 now)
{
	struct tandem_persist rec = {
		.real = real,
		.rec_gen = rec_gen,
		.service = svc->id,
		.last_seen_ns = now,
		.written_ns = now,
	};

	bpf_map_update_elem(&persist, k, &rec, BPF_ANY);

	/* Tell the controller, for its peers; a full ring loses the event
	 * (counted), never the write. */
	struct tandem_record_event *e = bpf_ringbuf_reserve(&record_events, sizeof(*e), 0);

	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&record_events_lost, &zero);

		if (lost)
			*lost += 1;
		return;
	}
	e->key = *k;
	e->real = real;
	e->service = svc->id;
	e->written_ns = now;
	bpf_ringbuf_submit(e, 0);
}

#endif
