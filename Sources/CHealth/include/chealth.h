/* What the health checker needs from the system that Swift's Glibc module
 * does not offer: epoll(7) and eventfd(2), for the loop that drives the
 * checks' non-blocking sockets. */
#ifndef TANDEM_CHEALTH_H
#define TANDEM_CHEALTH_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* An epoll_event's fields without its packed union, which Swift imports
 * awkwardly. */
static inline struct epoll_event tandem_epoll_event(uint32_t events, uint64_t data)
{
	struct epoll_event e;
	e.events = events;
	e.data.u64 = data;
	return e;
}

static inline uint64_t tandem_epoll_data(const struct epoll_event *e)
{
	return e->data.u64;
}

#endif
