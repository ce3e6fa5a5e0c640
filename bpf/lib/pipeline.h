/* pipeline.h - one frame through the load balancer:
 *
 *   parse ─► port used by a service? ─no─► XDP_PASS
 *              ▼
 *            TCP SYN? ─yes─────────────────────────┐ (no flow lookup)
 *              │no                                 ▼
 *            flow entry still good? ─yes─► real  service lookup ─miss─► PASS
 *              │no                                 ▼
 *              ▼                                 live record? ─yes─► its real
 *            service lookup ─miss─► XDP_PASS       │no
 *              ▼                                   ▼
 *            SYN's remembered choice? ─► record? ─► ring ─► forward; write
 *            ─► (ring changed < 5 s ago: previous ring) nothing (or, for wrr and
 *              ▼                                   moments after a ring change,
 *            write record and flow ─► forward      the choice in syn_choices)
 *
 * A SYN writes no record and no flow: state is written by the first
 * packet after it (the handshake's ACK), which a spoofed source never
 * sends. So a SYN flood cannot push the records and flows of clients who
 * completed a handshake out of the LRU tables. The SYN's choice is
 * derived again at the ACK: the record, else the ring, which is a pure
 * function of the client (maglev with persistence) or the 5-tuple. Where
 * it is not (wrr's cursor; a ring changed between SYN and ACK), the SYN
 * keeps its choice in the small syn_choices table, and for 5 s after a
 * change a first ACK without one is placed by the previous ring: its SYN
 * came before the change.
 *
 * Established traffic costs one hash lookup (the flow table); the service
 * is found through the flow's service id, whose generation retires flows of
 * a removed or re-addressed service. Traffic to ports no service uses costs
 * none: no good flow can exist there, since removing a service retires its
 * flows.
 */
#ifndef TANDEM_PIPELINE_H
#define TANDEM_PIPELINE_H

#include "maps.h"
#include "parse.h"
#include "stats.h"
#include "persist.h"
#include "select.h"
#include "forward.h"

static __always_inline int reason_verdict(__u32 reason)
{
	count_reason(reason);
	switch (reason) {
	case TANDEM_R_DROP_MALFORMED:
	case TANDEM_R_DROP_FRAGMENT:
	case TANDEM_R_DROP_IPV6_EXT:
	case TANDEM_R_DROP_NO_REAL:
		return XDP_DROP;
	}
	return XDP_PASS;
}

static __always_inline void count_forward(struct tandem_counters *sc, __u32 backend, __u32 len,
					  int is_new)
{
	sc->packets++;
	sc->bytes += len;
	sc->new_flows += is_new;

	struct tandem_counters *bc = backend_counters(backend);

	if (bc) {
		bc->packets++;
		bc->bytes += len;
		bc->new_flows += is_new;
	}
}

static __always_inline void count_hit(struct tandem_counters *sc, __u32 backend, int follow)
{
	sc->persist_hits++;
	sc->follow_hits += follow;

	struct tandem_counters *bc = backend_counters(backend);

	if (bc) {
		bc->persist_hits++;
		bc->follow_hits += follow;
	}
}

static __always_inline int is_syn(const struct packet *pkt)
{
	return pkt->flow.proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) == TCP_FLAG_SYN_BIT;
}

/* The service's ring changed less than TANDEM_RING_GRACE_NS ago. */
static __always_inline int ring_in_grace(const struct tandem_service *svc, __u64 now)
{
	return now - svc->ring_changed_ns < TANDEM_RING_GRACE_NS;
}

/* The flow's real while its entry is good (real active, same generations). */
static __always_inline struct tandem_real *established(const struct packet *pkt,
						       struct tandem_flow **flow)
{
	struct tandem_flow *f = bpf_map_lookup_elem(&flows, &pkt->flow);

	if (!f)
		return NULL;
	__u32 id = f->real, sid = f->service;
	struct tandem_real *real = bpf_map_lookup_elem(&reals, &id);
	__u32 *svc_gen = bpf_map_lookup_elem(&svc_gens, &sid);

	if (!real || !svc_gen || !(real->flags & TANDEM_REAL_ACTIVE) ||
	    real->flow_gen != f->flow_gen || *svc_gen != f->svc_gen)
		return NULL;
	*flow = f;
	return real;
}

static __always_inline int port_in_use(__u16 port)
{
	__u32 zero = 0;
	struct tandem_port_filter *pf = bpf_map_lookup_elem(&port_filter, &zero);

	return pf && (pf->bits[(port >> 6) & 1023] >> (port & 63)) & 1;
}

static __always_inline struct tandem_real *active_real(__u32 id)
{
	struct tandem_real *real = id ? bpf_map_lookup_elem(&reals, &id) : NULL;

	return real && (real->flags & TANDEM_REAL_ACTIVE) ? real : NULL;
}

/* The backend index of real `id` in the service; TANDEM_NO_BACKEND for the
 * sorry server. */
static __always_inline __u32 backend_index(const struct tandem_service *svc, __u32 id)
{
	struct tandem_backend *b = backend_of(svc->id, id);

	return b ? b->index : TANDEM_NO_BACKEND;
}

static __always_inline int drop_no_real(struct tandem_counters *sc, const struct packet *pkt)
{
	sc->packets++;
	sc->bytes += pkt->len;
	sc->drops++;
	return reason_verdict(TANDEM_R_DROP_NO_REAL);
}

/*
 * A TCP SYN: the real its record names, else the ring's. Writes nothing,
 * unless the first ACK could not find the same real again: wrr (a cursor)
 * or a ring that changed moments ago; then the choice goes to syn_choices.
 */
static __always_inline int new_syn(void *data, void *data_end, const struct packet *pkt,
				   const struct tandem_service *svc, struct tandem_counters *sc,
				   __u64 now)
{
	struct tandem_persist_key pk = {};
	__u32 backend = TANDEM_NO_BACKEND, id = 0;
	int follow = 0;

	if (svc->flags & TANDEM_SVC_PERSIST) {
		persist_key(&pk, svc, pkt);
		id = persist_lookup(&pk, svc, now, &follow, &backend);
	}
	int recorded = id != 0;

	if (!recorded) {
		id = select_real(svc, pkt, &pk, svc->ring_id, svc->ring_len);
		backend = backend_index(svc, id);
	}
	struct tandem_real *real = active_real(id);

	if (!real)
		return drop_no_real(sc, pkt);
	if (!recorded && (svc->scheduler == TANDEM_SCHED_WRR || ring_in_grace(svc, now))) {
		struct tandem_syn_choice c = { .real = id };

		bpf_map_update_elem(&syn_choices, &pkt->flow, &c, BPF_ANY);
		count_table(TANDEM_T_SYN_REMEMBERED);
	} else {
		count_table(TANDEM_T_SYN_STATELESS);
	}
	count_forward(sc, backend, pkt->len, 0);
	return forward_dsr(data, data_end, real);
}

/* The real a remembered SYN chose, while it still takes clients here; 0
 * otherwise. The entry is used once. */
static __always_inline __u32 syn_choice(const struct packet *pkt, const struct tandem_service *svc)
{
	struct tandem_syn_choice *c = bpf_map_lookup_elem(&syn_choices, &pkt->flow);

	if (!c)
		return 0;
	__u32 id = c->real;

	bpf_map_delete_elem(&syn_choices, &pkt->flow);
	if (id != svc->sorry_real && !backend_keeps_clients(backend_of(svc->id, id)))
		return 0;
	count_table(TANDEM_T_SYN_CHOICE_USED);
	return id;
}

/* The previous ring's real for a first ACK moments after a ring change,
 * while that real still takes clients here; 0 otherwise. */
static __always_inline __u32 previous_ring_choice(const struct packet *pkt,
						  const struct tandem_service *svc,
						  const struct tandem_persist_key *pk)
{
	if (!svc->prev_ring_len || svc->scheduler == TANDEM_SCHED_WRR)
		return 0;
	__u32 id = select_real(svc, pkt, pk, svc->prev_ring_id, svc->prev_ring_len);

	if (!backend_keeps_clients(backend_of(svc->id, id)))
		return 0;
	count_table(TANDEM_T_PREV_RING_USED);
	return id;
}

/*
 * The first packet after a SYN (or of a UDP flow, or of a TCP flow whose
 * entry is gone): the SYN's remembered choice, else a live record, else
 * the ring; writes the record (when none was live) and the flow.
 */
static __always_inline int new_flow(void *data, void *data_end, const struct packet *pkt,
				    const struct tandem_service *svc, struct tandem_counters *sc,
				    __u32 svc_gen, __u64 now)
{
	struct tandem_persist_key pk = {};
	__u32 backend = TANDEM_NO_BACKEND, id = 0, recorded = 0;
	int follow = 0, grace = ring_in_grace(svc, now);
	int tcp = pkt->flow.proto == IPPROTO_TCP;

	if (tcp && (grace || svc->scheduler == TANDEM_SCHED_WRR))
		id = syn_choice(pkt, svc);
	if (svc->flags & TANDEM_SVC_PERSIST) {
		persist_key(&pk, svc, pkt);
		recorded = persist_lookup(&pk, svc, now, &follow, &backend);
	}
	if (!id && recorded) {
		id = recorded;
		count_hit(sc, backend, follow);
	} else {
		if (!id && tcp && grace)
			id = previous_ring_choice(pkt, svc, &pk);
		if (!id)
			id = select_real(svc, pkt, &pk, svc->ring_id, svc->ring_len);
		backend = backend_index(svc, id);
	}
	struct tandem_real *real = active_real(id);

	if (!real)
		return drop_no_real(sc, pkt);
	/* The sorry server serves only while nothing else can: no record. */
	if ((svc->flags & TANDEM_SVC_PERSIST) && !recorded && svc->ring_len &&
	    id != svc->sorry_real) {
		persist_write(&pk, svc, id, real->rec_gen, now);
		count_insert(&persist, TANDEM_TABLE_RECORDS, now, TANDEM_T_RECORDS_WRITTEN,
			     TANDEM_T_RECORDS_FULL);
	}
	struct tandem_flow f = {
		.real = id,
		.flow_gen = real->flow_gen,
		.service = svc->id,
		.svc_gen = svc_gen,
		.backend = backend,
	};
	bpf_map_update_elem(&flows, &pkt->flow, &f, BPF_ANY);
	count_insert(&flows, TANDEM_TABLE_FLOWS, now, TANDEM_T_FLOWS_WRITTEN, TANDEM_T_FLOWS_FULL);
	count_forward(sc, backend, pkt->len, 1);
	return forward_dsr(data, data_end, real);
}

static __always_inline int tandem_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt = {};

	int rc = parse_packet(data, data_end, &pkt);
	if (rc != TANDEM_PARSED)
		return reason_verdict(rc);

	if (!port_in_use(pkt.flow.dport))
		return reason_verdict(TANDEM_R_PASS_NOT_VIP);

	/* A SYN starts a connection: whatever flow its 5-tuple had is over. */
	int syn = is_syn(&pkt);
	if (!syn) {
		struct tandem_flow *flow = NULL;
		struct tandem_real *real = established(&pkt, &flow);
		if (real) {
			struct tandem_counters *sc = svc_counters(flow->service);
			if (sc) {
				count_forward(sc, flow->backend, pkt.len, 0);
				return forward_dsr(data, data_end, real);
			}
		}
	}

	struct tandem_service_key sk = {
		.port = pkt.flow.dport,
		.proto = pkt.flow.proto,
		.af = pkt.flow.af,
	};
	__builtin_memcpy(sk.vip, pkt.flow.dst, sizeof(sk.vip));
	struct tandem_service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return reason_verdict(TANDEM_R_PASS_NOT_VIP);
	__u32 sid = svc->id;
	struct tandem_counters *sc = svc_counters(sid);
	__u32 *svc_gen = bpf_map_lookup_elem(&svc_gens, &sid);
	if (!sc || !svc_gen)
		return reason_verdict(TANDEM_R_PASS_NOT_VIP);

	__u64 now = bpf_ktime_get_ns();
	if (syn)
		return new_syn(data, data_end, &pkt, svc, sc, now);
	return new_flow(data, data_end, &pkt, svc, sc, *svc_gen, now);
}

#endif
