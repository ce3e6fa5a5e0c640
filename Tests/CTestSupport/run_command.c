#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include "test_support.h"

int tandem_test_pin_thread(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

int tandem_test_unpin_thread(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

#include <fcntl.h>
#include <unistd.h>

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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int tandem_test_run(const char *command, char *out, size_t size)
{
	char *wrapped;
	size_t len = strlen(command) + 16;
	FILE *pipe;
	size_t used = 0, n;
	int status;

	wrapped = malloc(len);
	if (!wrapped)
		return -1;
	snprintf(wrapped, len, "(%s) 2>&1", command);
	pipe = popen(wrapped, "r");
	free(wrapped);
	if (!pipe)
		return -1;
	while (size > 1 && (n = fread(out + used, 1, size - 1 - used, pipe)) > 0)
		used += n;
	if (size)
		out[used] = 0;
	status = pclose(pipe);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
