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

/* ring_buffer__new, with libbpf's error (errno, as it returns NULL) stored
 * in *err before anything can overwrite it. */
static inline struct ring_buffer *tandem_ring_buffer_new(int map_fd, ring_buffer_sample_fn sample,
							 void *ctx, int *err)
{
	struct ring_buffer *rb = ring_buffer__new(map_fd, sample, ctx, NULL);

	*err = rb ? 0 : errno ? errno : EINVAL;
	return rb;
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
#endif
