#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include "test_support.h"

int tandem_test_enter_netns(int fd)
{
	return setns(fd, CLONE_NEWNET) ? -errno : 0;
}
