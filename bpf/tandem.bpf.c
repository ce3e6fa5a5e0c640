// SPDX-License-Identifier: GPL-2.0
/* tandem.bpf.c - the XDP entry point: parse, find the service, keep the
 * flow's real or choose one (persistence first, then the scheduler), and
 * send the frame to it. Each step lives in lib/. */
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/stats.h"
#include "lib/persist.h"
#include "lib/select.h"
#include "lib/forward.h"

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

/* Returns the flow's real when its entry is still good, else 0. */
static __always_inline __u32 established_real(const struct packet *pkt)
{
	struct tandem_flow *f = bpf_map_lookup_elem(&flows, &pkt->flow);

	if (!f)
		return 0;
	__u32 id = f->real;
	struct tandem_real *real = bpf_map_lookup_elem(&reals, &id);

	if (!real || !(real->flags & TANDEM_REAL_ACTIVE) ||
	    real->flow_gen != f->flow_gen)
		return 0;
	return id;
}

/* Picks a real for a packet without a good flow entry. 0: none usable. */
static __always_inline __u32 new_flow_real(const struct tandem_service *svc,
					   const struct packet *pkt,
					   struct tandem_counters *sc)
{
	struct tandem_persist_key pk = {};
	__u64 now = 0;
	__u32 id = 0;
	int follow = 0;

	if (svc->flags & TANDEM_SVC_PERSIST) {
		now = bpf_ktime_get_ns();
		persist_key(&pk, svc, pkt);
		id = persist_lookup(&pk, svc, now, &follow);
		if (id) {
			sc->persist_hits++;
			sc->follow_hits += follow;
			struct tandem_counters *rc = real_counters(id);
			if (rc) {
				rc->persist_hits++;
				rc->follow_hits += follow;
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
	/* The sorry server serves only while nothing else can: no record. */
	if ((svc->flags & TANDEM_SVC_PERSIST) && svc->ring_len)
		persist_write(&pk, svc, id, real->rec_gen, now);
	return id;
}

SEC("xdp")
int tandem_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt = {};

	int rc = parse_packet(data, data_end, &pkt);
	if (rc != TANDEM_PARSED)
		return reason_verdict(rc);

	struct tandem_service_key sk = {
		.port = pkt.flow.dport,
		.proto = pkt.flow.proto,
		.af = pkt.flow.af,
	};
	__builtin_memcpy(sk.vip, pkt.flow.dst, sizeof(sk.vip));
	struct tandem_service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return reason_verdict(TANDEM_R_PASS_NOT_VIP);

	struct tandem_counters *sc = svc_counters(svc->id);
	if (!sc)
		return reason_verdict(TANDEM_R_PASS_NOT_VIP);
	sc->packets++;
	sc->bytes += pkt.len;

	__u32 id = established_real(&pkt);
	int is_new = !id;

	if (is_new) {
		if (pkt.flow.proto == IPPROTO_TCP &&
		    (pkt.tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) != TCP_FLAG_SYN_BIT)
			count_reason(TANDEM_R_FLOW_MISS_NOT_SYN);
		id = new_flow_real(svc, &pkt, sc);
		if (!id) {
			sc->drops++;
			return reason_verdict(TANDEM_R_DROP_NO_REAL);
		}
	}

	struct tandem_real *real = bpf_map_lookup_elem(&reals, &id);
	if (!real) {
		sc->drops++;
		return reason_verdict(TANDEM_R_DROP_NO_REAL);
	}
	if (is_new) {
		struct tandem_flow f = { .real = id, .flow_gen = real->flow_gen };

		bpf_map_update_elem(&flows, &pkt.flow, &f, BPF_ANY);
		sc->new_flows++;
	}

	struct tandem_counters *rc2 = real_counters(id);
	if (rc2) {
		rc2->packets++;
		rc2->bytes += pkt.len;
		rc2->new_flows += is_new;
	}
	count_reason(TANDEM_R_TX);
	return forward_dsr(data, data_end, real);
}

char LICENSE[] SEC("license") = "GPL";
