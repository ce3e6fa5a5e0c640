/* maps.h - every map of the dataplane, pinned by name under the pin root
 * the loader gives (default /sys/fs/bpf/tandem), so a restarted controller
 * adopts them with their flows and records intact. */
#ifndef TANDEM_MAPS_H
#define TANDEM_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tandem_abi.h"

/* VIP:port/protocol -> service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TANDEM_MAX_SERVICES);
	__type(key, struct tandem_service_key);
	__type(value, struct tandem_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

/* Every VIP address; only consulted for fragments and odd headers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TANDEM_MAX_SERVICES);
	__type(key, struct tandem_vip_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_addrs SEC(".maps");

/* Service id -> generation; bumped when a service id is removed or gets a
 * new VIP:port, which retires the flows made for it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TANDEM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_gens SEC(".maps");

/* Ports some service listens on (bitmap): the non-VIP fast exit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tandem_port_filter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_filter SEC(".maps");

/* Real id -> address, MAC and generations. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TANDEM_MAX_REALS);
	__type(key, __u32);
	__type(value, struct tandem_real);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reals SEC(".maps");

/* (service, real) -> state and weight of that real in that service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TANDEM_MAX_BACKENDS);
	__type(key, struct tandem_backend_key);
	__type(value, struct tandem_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* Ring id -> scheduler table; two per service, flipped on update. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TANDEM_MAX_RINGS);
	__type(key, __u32);
	__type(value, struct tandem_ring);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rings SEC(".maps");

/* Established flows: 5-tuple -> real, least recently used evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TANDEM_FLOW_ENTRIES);
	__type(key, struct tandem_flow_key);
	__type(value, struct tandem_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

/* Choices of SYNs the first ACK could not derive again (wrr, or a ring
 * that changed moments ago): the only state an unanswered SYN writes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TANDEM_SYN_ENTRIES);
	__type(key, struct tandem_flow_key);
	__type(value, struct tandem_syn_choice);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} syn_choices SEC(".maps");

/* Persistence records shared by a follow group. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TANDEM_PERSIST_ENTRIES);
	__type(key, struct tandem_persist_key);
	__type(value, struct tandem_persist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} persist SEC(".maps");

/* Record writes for the controller's record sync (tandem_record_event). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TANDEM_RECORD_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} record_events SEC(".maps");

/* Record events the ring buffer had no room for (one entry, per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} record_events_lost SEC(".maps");

/* Counters per service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct tandem_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_stats SEC(".maps");

/* Counters per (service, real), by the backend's index: a real's traffic
 * on :80 stays out of its :443 line. A real's total is their sum. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct tandem_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_stats SEC(".maps");

/* Packets per enum tandem_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_R_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pkt_stats SEC(".maps");

/* Counts per enum tandem_table_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_T_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} table_stats SEC(".maps");

/* Entries and capacity of the flow and record tables, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_TABLE_MAX);
	__type(key, __u32);
	__type(value, struct tandem_table_fill);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} table_fill SEC(".maps");

/* Weighted round robin position per service, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TANDEM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wrr_cursor SEC(".maps");

/* The node's own state (drained, announce table), kept for the next
 * controller and for tandem down; the program does not read it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tandem_node);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} node SEC(".maps");

#endif
