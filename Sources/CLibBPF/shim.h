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
#endif
