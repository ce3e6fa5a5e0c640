#define _GNU_SOURCE
#include "cdaemon.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int tandem_set_thread_nice(int nice)
{
	/* On Linux a thread id names one thread for setpriority(2). */
	pid_t tid = (pid_t)syscall(SYS_gettid);

	return setpriority(PRIO_PROCESS, (id_t)tid, nice) == 0 ? 0 : -errno;
}
