/* select.h - schedulers. Every scheduler reads the service's live ring:
 *   maglev  slot = hash % ring_len  (with persistence the hash of the
 *           service's hash_seed and the masked client, so every service of
 *           a group and every node agree; else the 5-tuple)
 *   wrr     slot = per-CPU cursor++ % ring_len (ring holds the weighted
 *           round-robin sequence)
 *   fixed   the controller fills the ring with the highest-weight real
 * The controller builds rings from the reals that are UP; ring_len 0 means
 * no usable real. */
#ifndef TANDEM_SELECT_H
#define TANDEM_SELECT_H

#include "maps.h"

/* The real ring `ring_id` (of `ring_len` entries) picks: the live ring,
 * or for a first ACK moments after a change the previous one. */
static __always_inline __u32 select_real(const struct tandem_service *svc, const struct packet *pkt,
					 const struct tandem_persist_key *pk, __u32 ring_id,
					 __u32 ring_len)
{
	__u32 slot;

	if (ring_len == 0)
		return svc->sorry_real;

	if (svc->scheduler == TANDEM_SCHED_WRR) {
		__u32 id = svc->id;
		__u32 *cursor = bpf_map_lookup_elem(&wrr_cursor, &id);

		if (!cursor)
			return 0;
		slot = *cursor % ring_len;
		*cursor = slot + 1;
	} else if (svc->flags & TANDEM_SVC_PERSIST) {
		slot = tandem_hash_client(svc->hash_seed, pk) % ring_len;
	} else {
		slot = tandem_hash_flow(&pkt->flow) % ring_len;
	}

	struct tandem_ring *ring = bpf_map_lookup_elem(&rings, &ring_id);
	/* slot < ring_len <= TANDEM_RING_SIZE; the verifier needs a 64-bit
	 * bound it can see, which the compiler's 32-bit compare does not give:
	 * barrier_var keeps clang from folding the check below into it. */
	__u64 idx = slot;

	barrier_var(idx);
	if (!ring || idx >= TANDEM_RING_SIZE)
		return 0;
	return ring->reals[idx];
}

#endif
