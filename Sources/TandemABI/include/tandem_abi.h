/*
 * tandem_abi.h - every struct, enum and limit shared by the XDP program
 * (bpf/) and the Swift controller (imported as the TandemABI module).
 *
 * Layout rules: fixed-width types only, explicit padding, no bitfields, so
 * the C compiler for the BPF target and for the host agree byte for byte.
 * Tests/TandemABITests checks sizes and offsets from Swift.
 *
 * Addresses are 16 bytes in network order, as they sit in the packet; an
 * IPv4 address uses bytes 0-3 and leaves the rest zero. Ports are in host
 * order. Both so that `bpftool map dump` reads as [198,18,0,100,...] and 80.
 */
#ifndef TANDEM_ABI_H
#define TANDEM_ABI_H

#ifdef __bpf__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

/* Limits; each may be overridden at build time with -D. */
#ifndef TANDEM_MAX_SERVICES
#define TANDEM_MAX_SERVICES 1024
#endif
#ifndef TANDEM_MAX_REALS
#define TANDEM_MAX_REALS 65536 /* real ids; id 0 means "none" */
#endif
#ifndef TANDEM_MAX_BACKENDS
#define TANDEM_MAX_BACKENDS 65536 /* (service, real) pairs */
#endif
#ifndef TANDEM_RING_SIZE
#define TANDEM_RING_SIZE 4093 /* prime; maglev lookup table size */
#endif
/* Default table sizes; `tables:` in the config sets them at load. */
#ifndef TANDEM_FLOW_ENTRIES
#define TANDEM_FLOW_ENTRIES 262144
#endif
#ifndef TANDEM_PERSIST_ENTRIES
#define TANDEM_PERSIST_ENTRIES 1048576
#endif
/* SYNs whose choice cannot be derived again at the first ACK (wrr, or a
 * ring changed moments ago) remember it here; a flood evicts only these. */
#ifndef TANDEM_SYN_ENTRIES
#define TANDEM_SYN_ENTRIES 65536
#endif
/* After a ring change, the previous ring still places first ACKs whose SYN
 * came before the change, for this long (ns): longer than a handshake. */
#define TANDEM_RING_GRACE_NS 5000000000ULL
/* How often each CPU counts the entries of a table (ns), to tell whether
 * an insert lands in a full table. */
#define TANDEM_FILL_CHECK_NS 100000000ULL
#define TANDEM_FILL_CHECK_WRITES 256
/* Two rings per service: the controller fills the idle one, then flips. */
#define TANDEM_MAX_RINGS (2 * TANDEM_MAX_SERVICES)
/* A hit refreshes a persistence record at most this often (ns), so hot
 * clients don't write the shared record on every new connection. */
#define TANDEM_PERSIST_REFRESH_NS 1000000000ULL
/* Bytes of the record_events ring buffer (a power of 2, whole pages): at
 * 40 bytes (+8 of header) an event, ~21,000 writes the controller has not
 * read yet; past that, writes are counted as lost, never wait. */
#ifndef TANDEM_RECORD_EVENTS_BYTES
#define TANDEM_RECORD_EVENTS_BYTES (1 << 20)
#endif

enum tandem_af {
	TANDEM_AF_INET = 4,
	TANDEM_AF_INET6 = 6,
};

enum tandem_scheduler {
	TANDEM_SCHED_MAGLEV = 0,
	TANDEM_SCHED_WRR = 1,
	TANDEM_SCHED_FIXED = 2,
};

enum tandem_service_flags {
	TANDEM_SVC_PERSIST = 1 << 0,	     /* source-ip persistence on */
	TANDEM_SVC_DROP_ON_FAILURE = 1 << 1, /* informational; see flow_gen */
};

/* Per (service, real) state: only UP and DRAINING keep persistence. */
enum tandem_backend_state {
	TANDEM_BACKEND_UP = 0,
	TANDEM_BACKEND_DRAINING = 1,
	TANDEM_BACKEND_DOWN = 2,
	TANDEM_BACKEND_DISABLED = 3,
};

enum tandem_real_flags {
	TANDEM_REAL_ACTIVE = 1 << 0,
};

/* Global packet accounting (pkt_stats map index). */
enum tandem_reason {
	TANDEM_R_PASS_NOT_IP = 0,  /* ARP, LLDP, anything not IPv4/IPv6 */
	TANDEM_R_PASS_VLAN,	   /* 802.1Q / 802.1ad tagged frames */
	TANDEM_R_PASS_NOT_VIP,	   /* IP traffic not for a service */
	TANDEM_R_PASS_MALFORMED,   /* bad or truncated L2/L3 header */
	TANDEM_R_PASS_OTHER_PROTO, /* ICMP etc., also to a VIP address */
	TANDEM_R_DROP_MALFORMED,   /* to a VIP address, L4 header bad */
	TANDEM_R_DROP_FRAGMENT,	   /* IPv4 fragment to a VIP address */
	TANDEM_R_DROP_IPV6_EXT,	   /* IPv6 extension header, VIP address */
	TANDEM_R_DROP_NO_REAL,	   /* service with no usable real, no sorry */
	/* No longer counted: every connection's first ACK writes its flow
	 * now (TANDEM_T_FLOWS_WRITTEN); kept so the indices stay put. */
	TANDEM_R_FLOW_MISS_NOT_SYN,
	TANDEM_R_MAX,
};

/* State accounting (table_stats map index): what SYNs and first packets
 * wrote, and what the LRU tables pushed out. */
enum tandem_table_stat {
	TANDEM_T_SYN_STATELESS = 0, /* SYN forwarded, nothing written */
	TANDEM_T_SYN_REMEMBERED,    /* SYN's choice kept in syn_choices */
	TANDEM_T_FLOWS_WRITTEN,	    /* new flow entries (first ACK, UDP) */
	TANDEM_T_FLOWS_FULL,	    /* ... written into a full flow table */
	TANDEM_T_RECORDS_WRITTEN,   /* persistence records written */
	TANDEM_T_RECORDS_FULL,	    /* ... written into a full record table */
	TANDEM_T_SYN_CHOICE_USED,   /* first ACKs placed by a remembered SYN */
	TANDEM_T_PREV_RING_USED,    /* first ACKs placed by the previous ring */
	TANDEM_T_MAX,
};

/* table_fill map index. */
enum tandem_table {
	TANDEM_TABLE_FLOWS = 0,
	TANDEM_TABLE_RECORDS = 1,
	TANDEM_TABLE_MAX,
};

/* table_fill (per-CPU array): each CPU's recent count of a table's
 * entries, refreshed every TANDEM_FILL_CHECK_NS or TANDEM_FILL_CHECK_WRITES
 * writes of this CPU, whichever comes first; capacity is written by the
 * controller at load. */
struct tandem_table_fill {
	__u64 checked_ns;
	__u64 entries;
	__u32 capacity;
	__u32 writes; /* by this CPU since entries was counted */
};

/* services map: VIP:port/protocol -> service. */
struct tandem_service_key {
	__u8 vip[16];
	__u16 port;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 af;    /* enum tandem_af */
};

struct tandem_service {
	__u32 id;	/* index into svc_stats, wrr_cursor, backends */
	__u32 group;	/* follow group: key of the shared records */
	__u32 ring_id;	/* which of the two rings is live */
	__u32 ring_len; /* entries in use; 0 = no usable real */
	__u8 scheduler; /* enum tandem_scheduler */
	__u8 flags;	/* enum tandem_service_flags */
	__u8 netmask;	/* prefix length applied to the client address */
	__u8 pad0;
	__u32 sorry_real; /* real id used only when ring_len is 0; 0 = none */
	__u8 mask[16];	  /* netmask as an address mask */
	__u64 persist_timeout_ns;
	/* Seed of tandem_hash_client, the same for every service of the
	 * group and derived from the config alone (the group's lowest
	 * VIP:port/protocol), so every node hashes a client alike; unlike
	 * `group`, a node-local id that only names records. */
	__u32 hash_seed;
	__u32 pad1;
	/* The ring live before the last change, and when it changed
	 * (bpf_ktime_get_ns): first ACKs whose SYN predates the change are
	 * placed by it for TANDEM_RING_GRACE_NS. */
	__u32 prev_ring_id;
	__u32 prev_ring_len;
	__u64 ring_changed_ns;
};

/* vip_addrs map: every VIP address, for the fragment/extension rules. */
struct tandem_vip_key {
	__u8 addr[16];
	__u8 af;
	__u8 pad[3];
};

/* reals map (array, index = real id). A real is an address within one
 * follow group; services of the group share it, each on its own port. */
struct tandem_real {
	__u8 addr[16];
	__u8 mac[6]; /* next hop for DSR */
	__u8 af;
	__u8 flags;	/* enum tandem_real_flags */
	__u32 rec_gen;	/* bump: every persistence record invalid, O(1) */
	__u32 flow_gen; /* bump: every established flow rescheduled */
};

/* backends map: the state of a real in one service. */
struct tandem_backend_key {
	__u32 service;
	__u32 real;
};

struct tandem_backend {
	__u32 state; /* enum tandem_backend_state */
	__u32 weight;
	/* Index into backend_stats: the counters of this real in this
	 * service. Given by the controller, kept across restarts. */
	__u32 index;
	__u32 pad;
};

/* backend index of a flow sent to a real that is no backend of the
 * service (the sorry server): counted per service only. */
#define TANDEM_NO_BACKEND 0xffffffffu

/* rings map (array, index = ring id): scheduler lookup table. */
struct tandem_ring {
	__u32 reals[TANDEM_RING_SIZE];
};

/* flows map (LRU): 5-tuple -> real. */
struct tandem_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 af;
	__u8 pad[2];
};

struct tandem_flow {
	__u32 real;
	__u32 flow_gen;
	__u32 service; /* counters of established packets go here */
	__u32 svc_gen; /* valid only while equal to svc_gens[service] */
	__u32 backend; /* ... and here: backend_stats index */
	__u32 pad;
};

/* syn_choices map (LRU): 5-tuple -> the real its SYN was sent to, for
 * SYNs whose choice the first ACK could not derive again. */
struct tandem_syn_choice {
	__u32 real;
	__u32 pad;
};

/* port_filter map (one entry): bit n set when some service uses port n, so
 * traffic to other ports is passed without a hash lookup. */
struct tandem_port_filter {
	__u64 bits[65536 / 64];
};

/* persist map (LRU): (group, masked client) -> real; one table for all
 * services of a follow group, which is what makes ports follow. */
struct tandem_persist_key {
	__u32 group;
	__u8 client[16];
	__u8 af;
	__u8 pad[3];
};

struct tandem_persist {
	__u32 real;
	__u32 rec_gen; /* valid only while equal to the real's rec_gen */
	__u32 service; /* service that made it: other ports = follow hit */
	/* Node that wrote it: 0 = this node, else tandem_node_id() of the
	 * peer whose synced record the controller installed. */
	__u32 origin;
	__u64 last_seen_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	/* When the choice was made (CLOCK_MONOTONIC; a synced record: the
	 * peer's write time on this clock). A refresh leaves it; the later
	 * write of a client wins on every node. */
	__u64 written_ns;
};

/* record_events (ring buffer): one event per record the program writes
 * (new client, rescheduled client, rewritten after a move; never a refresh
 * of an unchanged record), for the controller to send to its peers. A
 * synced record installed by the controller makes none. */
struct tandem_record_event {
	struct tandem_persist_key key;
	__u32 real;
	__u32 service;	  /* service whose packet wrote it */
	__u64 written_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
};

/* svc_stats and backend_stats (per-CPU arrays): counters per service and
 * per (service, real). */
struct tandem_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 persist_hits;
	__u64 follow_hits;
	__u64 drops;
};

enum tandem_node_flags {
	TANDEM_NODE_DRAINED = 1 << 0, /* tandem node drain: every VIP withdrawn */
};

/* node map (one entry): the controller's state that outlives it, for the
 * next tandem serve and for tandem down. The XDP program never reads it. */
struct tandem_node {
	__u32 flags;	      /* enum tandem_node_flags */
	__u32 announce_table; /* kernel routing table of the VIP routes; 0 none */
};

/*
 * Hashing shared by both sides: the XDP program picks ring slots with it,
 * the controller's model predicts the same choices. murmur3's finaliser
 * over 32-bit words: cheap, no tables, good avalanche.
 */
static inline __u32 tandem_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = (k << 15) | (k >> 17);
	k *= 0x1b873593u;
	h ^= k;
	h = (h << 13) | (h >> 19);
	return h * 5u + 0xe6546b64u;
}

static inline __u32 tandem_fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Word i of a 16-byte address, as a little-endian load would read it. The
 * byte-wise form keeps the result the same on every host. */
static inline __u32 tandem_word(const __u8 *a, int i)
{
	return (__u32)a[4 * i] | (__u32)a[4 * i + 1] << 8 | (__u32)a[4 * i + 2] << 16 |
	       (__u32)a[4 * i + 3] << 24;
}

/*
 * Hash of a masked client, for maglev with persistence: the same for every
 * port of a group and on every node. It reads the client and family of `k`
 * and `seed` (the service's hash_seed), never k->group: a group id is
 * allocated by each node from its own reload history.
 */
static inline __u32 tandem_hash_client(__u32 seed, const struct tandem_persist_key *k)
{
	__u32 h = 0x74616e64u; /* "tand" */
	h = tandem_mix(h, seed);
	h = tandem_mix(h, tandem_word(k->client, 0));
	h = tandem_mix(h, tandem_word(k->client, 1));
	h = tandem_mix(h, tandem_word(k->client, 2));
	h = tandem_mix(h, tandem_word(k->client, 3));
	h = tandem_mix(h, k->af);
	return tandem_fmix(h);
}

/* Hash of a 5-tuple, for services without persistence. Only packet fields:
 * the same on every node. */
static inline __u32 tandem_hash_flow(const struct tandem_flow_key *k)
{
	__u32 h = 0x74616e64u;
	h = tandem_mix(h, tandem_word(k->src, 0));
	h = tandem_mix(h, tandem_word(k->src, 1));
	h = tandem_mix(h, tandem_word(k->src, 2));
	h = tandem_mix(h, tandem_word(k->src, 3));
	h = tandem_mix(h, tandem_word(k->dst, 0));
	h = tandem_mix(h, tandem_word(k->dst, 1));
	h = tandem_mix(h, tandem_word(k->dst, 2));
	h = tandem_mix(h, tandem_word(k->dst, 3));
	h = tandem_mix(h, ((__u32)k->sport << 16) | k->dport);
	h = tandem_mix(h, ((__u32)k->proto << 8) | k->af);
	return tandem_fmix(h);
}

#endif /* TANDEM_ABI_H */
