#ifndef TANDEM_CLIBBPF_SHIM_H
#define TANDEM_CLIBBPF_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <errno.h>

/* The interface an XDP link is attached to: 0 once its netdev is gone,
 * -errno when the link cannot be read. */
static inline long long tandem_xdp_link_ifindex(int fd)
{
	struct bpf_link_info info = {0};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	return info.xdp.ifindex;
}
/* Moves the calling thread into the network namespace open at fd. */
static inline int tandem_enter_net_namespace(int fd)
{
	return setns(fd, CLONE_NEWNET) ? -errno : 0;
}

/* Pins thread tid (0: the caller) to one CPU, or to all when cpu < 0. */
static inline int tandem_pin_thread(int tid, int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu >= 0) {
		CPU_SET(cpu, &set);
	} else {
		for (int i = 0; i < CPU_SETSIZE; i++)
			CPU_SET(i, &set);
	}
	return sched_setaffinity(tid, sizeof(set), &set) ? -errno : 0;
}
#endif
