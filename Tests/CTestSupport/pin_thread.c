#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include "test_support.h"

int tandem_test_set_affinity(int tid, int cpu)
{
	cpu_set_t set;

	if (cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	if (cpu >= 0) {
		CPU_SET(cpu, &set);
	} else {
		for (int i = 0; i < CPU_SETSIZE; i++)
			CPU_SET(i, &set);
	}
	return sched_setaffinity(tid, sizeof(set), &set) ? -errno : 0;
}
