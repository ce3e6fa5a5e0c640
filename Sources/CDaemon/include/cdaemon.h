/* What the daemon needs from the system that Swift's Glibc module does not
 * offer: systemd's notification protocol (sd_notify(3)) without
 * libsystemd, a priority for one thread, host routes written over
 * rtnetlink (the announced VIPs), and the route and neighbour entry of a
 * real (its MAC address) read over rtnetlink. */
#ifndef TANDEM_CDAEMON_H
#define TANDEM_CDAEMON_H

/* Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 when sent, 0
 * when the variable is unset (not started by systemd), or -errno. */
int tandem_sd_notify(const char *state);

/* Sets the calling thread's nice value (not the whole process's). Returns
 * 0 or -errno. */
int tandem_set_thread_nice(int nice);

#include <stdint.h>

/* One route as the route functions read and write it: a unicast route
 * dst/prefix_len through interface `ifindex` in routing table `table`,
 * marked with `protocol` (rtm_protocol). */
struct tandem_route {
	uint32_t table;
	uint32_t ifindex;   /* 0 when the route has no single output device */
	uint8_t family;	    /* AF_INET or AF_INET6 */
	uint8_t prefix_len; /* 32 or 128 for a host route */
	uint8_t protocol;   /* who made it: 250 for Tandem's VIP routes */
	uint8_t type;	    /* RTN_UNICAST, ...; set on list only */
	uint8_t dst[16];    /* network order; IPv4 in bytes 0-3 */
};

/* Adds the unicast route `r`, failing with -EEXIST when `r->table` already
 * holds a route to that prefix (of any protocol: it is never replaced).
 * Scope as `ip route add` gives it: link for IPv4, universe for IPv6.
 * Returns 0 or -errno. */
int tandem_route_add(const struct tandem_route *r);

/* Deletes the route to r->dst/prefix_len in r->table of protocol
 * r->protocol only: a route of another protocol is left alone (-ESRCH).
 * Returns 0 or -errno. */
int tandem_route_delete(const struct tandem_route *r);

/* Lists the routes of table `table` (both families) into `out`, at most
 * `max`. Returns how many the table holds (more than `max`: call again
 * with room for them) or -errno; -EINTR when the table changed while it
 * was read (read it again). */
int tandem_route_list(uint32_t table, struct tandem_route *out, int max);

/* The route the kernel picks for one address, as `ip route get` shows it. */
struct tandem_route_hop {
	uint32_t ifindex;	/* output interface */
	uint8_t type;		/* RTN_UNICAST; RTN_LOCAL for an address of this host */
	uint8_t has_gateway;	/* 1: through a router, not on-link */
	uint8_t gateway_family; /* AF_INET or AF_INET6 */
	uint8_t gateway[16];	/* network order */
};

/* Looks up the route to `dst` (4 bytes for AF_INET, 16 for AF_INET6).
 * Returns 0, or -errno (-ENETUNREACH: no route). */
int tandem_route_get(uint8_t family, const uint8_t *dst, struct tandem_route_hop *out);

/* One entry of the neighbour table: an address and its link-layer
 * address, in the state the kernel keeps it. */
struct tandem_neighbour {
	uint32_t ifindex;
	uint16_t state;	    /* NUD_REACHABLE, NUD_STALE, NUD_FAILED, ... */
	uint8_t family;	    /* AF_INET or AF_INET6 */
	uint8_t lladdr_len; /* 0: no link-layer address (yet) */
	uint8_t dst[16];    /* network order; IPv4 in bytes 0-3 */
	uint8_t lladdr[16]; /* the MAC address in bytes 0-5 on Ethernet */
};

/* Lists the neighbour entries of interface `ifindex` (both families) into
 * `out`, at most `max`. Returns how many there are (more than `max`: call
 * again with room for them) or -errno; -EINTR when the table changed
 * while it was read (read it again). */
int tandem_neigh_list(uint32_t ifindex, struct tandem_neighbour *out, int max);

#endif
