/* pipeline.h - one frame through the load balancer:
 *
 *   parse ─► port used by a service? ─no─► XDP_PASS
 *              ▼
 *            flow entry still good? ──yes──► forward to its real
 *              │no
 *              ▼
 *            service lookup ─miss─► XDP_PASS
 *              ▼
 *            live persistence record usable here? ─yes─► that real
 *              │no
 *              ▼
 *            scheduler (ring) ─► write record, write flow ─► forward
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

/* Picks a real for a packet without a good flow entry. 0: none usable.
 * *backend: the real's backend index in this service. */
static __always_inline __u32 new_flow_real(const struct tandem_service *svc,
					   const struct packet *pkt, struct tandem_counters *sc,
					   __u32 *backend)
{
	struct tandem_persist_key pk = {};
	__u64 now = 0;
	__u32 id = 0;
	int follow = 0;

	*backend = TANDEM_NO_BACKEND;
	if (svc->flags & TANDEM_SVC_PERSIST) {
		now = bpf_ktime_get_ns();
		persist_key(&pk, svc, pkt);
		id = persist_lookup(&pk, svc, now, &follow, backend);
		if (id) {
			sc->persist_hits++;
			sc->follow_hits += follow;
			struct tandem_counters *bc = backend_counters(*backend);
			if (bc) {
				bc->persist_hits++;
				bc->follow_hits += follow;
			}
			return id;
		}
	}

	id = select_real(svc, pkt, &pk);
	if (!id)
		return 0;
	struct tandem_real *real = bpf_map_lookup_elem(&reals, &id);

	if (!real || !(real->flags & TANDEM_REAL_ACTIVE))
		return 0;
	struct tandem_backend *b = backend_of(svc->id, id);

	if (b)
		*backend = b->index;
	/* The sorry server serves only while nothing else can: no record. */
	if ((svc->flags & TANDEM_SVC_PERSIST) && svc->ring_len)
		persist_write(&pk, svc, id, real->rec_gen, now);
	return id;
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

	struct tandem_flow *flow = NULL;
	struct tandem_real *real = established(&pkt, &flow);
	if (real) {
		struct tandem_counters *sc = svc_counters(flow->service);
		if (sc) {
			count_forward(sc, flow->backend, pkt.len, 0);
			return forward_dsr(data, data_end, real);
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

	if (pkt.flow.proto == IPPROTO_TCP &&
	    (pkt.tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) != TCP_FLAG_SYN_BIT)
		count_reason(TANDEM_R_FLOW_MISS_NOT_SYN);

	__u32 backend;
	__u32 id = new_flow_real(svc, &pkt, sc, &backend);
	real = id ? bpf_map_lookup_elem(&reals, &id) : NULL;
	if (!real) {
		sc->packets++;
		sc->bytes += pkt.len;
		sc->drops++;
		return reason_verdict(TANDEM_R_DROP_NO_REAL);
	}
	struct tandem_flow f = {
		.real = id,
		.flow_gen = real->flow_gen,
		.service = sid,
		.svc_gen = *svc_gen,
		.backend = backend,
	};
	bpf_map_update_elem(&flows, &pkt.flow, &f, BPF_ANY);
	count_forward(sc, backend, pkt.len, 1);
	return forward_dsr(data, data_end, real);
}

#endif
