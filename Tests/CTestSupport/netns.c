#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include "test_support.h"

int tandem_test_enter_netns(const char *path)
{
	int old = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (old < 0 || fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		int err = errno;

		if (old >= 0)
			close(old);
		if (fd >= 0)
			close(fd);
		return -err;
	}
	close(fd);
	return old;
}

int tandem_test_leave_netns(int fd)
{
	int rc = setns(fd, CLONE_NEWNET) ? -errno : 0;

	close(fd);
	return rc;
}
