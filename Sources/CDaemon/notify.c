#include "cdaemon.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int tandem_sd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len;
	int fd, rc;

	if (!path || !path[0])
		return 0;
	len = strlen(path);
	if (len >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, len);
	/* "@name" is a socket in the abstract namespace: a leading NUL. */
	if (addr.sun_path[0] == '@')
		addr.sun_path[0] = 0;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
		    offsetof(struct sockaddr_un, sun_path) + len);
	rc = rc < 0 ? -errno : 1;
	close(fd);
	return rc;
}
