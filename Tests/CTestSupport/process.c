#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "test_support.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int tandem_test_pidfd_open(int pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : (int)fd;
}
