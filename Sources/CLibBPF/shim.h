#ifndef TANDEM_CLIBBPF_SHIM_H
#define TANDEM_CLIBBPF_SHIM_H
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <errno.h>

/* Errors: libbpf 1.x returns -errno from calls that return int, and the
 * shim's own functions do the same, reading errno in C right after the
 * failing call, before any Swift code runs. */

/* bpf_object__open_mem, with libbpf's error (errno, as it returns NULL)
 * stored in *err before anything can overwrite it. */
static inline struct bpf_object *tandem_object_open_mem(const void *bytes, size_t size,
							const struct bpf_object_open_opts *opts,
							int *err)
{
	struct bpf_object *obj = bpf_object__open_mem(bytes, size, opts);

	*err = obj ? 0 : errno ? errno : EINVAL;
	return obj;
}

/* The interface an XDP link is attached to: 0 once its netdev is gone,
 * -errno when the link cannot be read. */
static inline long long tandem_xdp_link_ifindex(int fd)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	int rc = bpf_obj_get_info_by_fd(fd, &info, &len);

	if (rc < 0)
		return rc;
	return info.xdp.ifindex;
}
/* Moves the calling thread into the network namespace open at fd.
 * (Raw syscalls: _GNU_SOURCE here would clash with Swift's Glibc module.) */
static inline int tandem_enter_net_namespace(int fd)
{
	return syscall(SYS_setns, fd, 0x40000000 /* CLONE_NEWNET */) ? -errno : 0;
}

/* Pins thread tid (0: the caller) to one CPU (< 1024), or to all when cpu < 0. */
static inline int tandem_pin_thread(int tid, int cpu)
{
	const unsigned int word_bits = 8 * sizeof(unsigned long);
	unsigned long mask[1024 / (8 * sizeof(unsigned long))];

	for (unsigned int i = 0; i < sizeof(mask) / sizeof(mask[0]); i++)
		mask[i] = cpu < 0 ? ~0UL : 0;
	if (cpu >= 1024)
		return -EINVAL;
	if (cpu >= 0)
		mask[cpu / word_bits] = 1UL << (cpu % word_bits);
	return syscall(SYS_sched_setaffinity, tid, sizeof(mask), mask) ? -errno : 0;
}
#endif
