#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "test_support.h"

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
