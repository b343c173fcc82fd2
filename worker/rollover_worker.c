/*
 * rollover_worker.c - the worker side of the rollover protocol.
 *
 * The contracts are in rollover_worker.h.  Every function reports failure
 * as -errno and leaves logging and exiting to its caller.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rollover_worker.h"

/* A decimal integer in [min, max] and nothing else; -EINVAL otherwise. */
static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int listen_fds_take(void)
{
	long pid, n;
	int r;

	if (getenv("LISTEN_PID") == NULL)
		return 0;
	r = parse_long(getenv("LISTEN_PID"), 1, INT_MAX, &pid);
	if (r < 0)
		return r;
	if ((pid_t)pid != getpid())
		return 0;
	if (getenv("LISTEN_FDS") == NULL)
		return 0;
	r = parse_long(getenv("LISTEN_FDS"), 0, INT_MAX - RW_LISTEN_FDS_START,
		       &n);
	if (r < 0)
		return r;
	for (int fd = RW_LISTEN_FDS_START; fd < RW_LISTEN_FDS_START + n; fd++) {
		int flags = fcntl(fd, F_GETFD);

		if (flags == -1)
			return -errno;
		if (!(flags & FD_CLOEXEC) &&
		    fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1)
			return -errno;
	}
	return (int)n;
}

int rw_listen_fds(void)
{
	int r = listen_fds_take();

	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

/* "unix:/path" or "unix:@abstract" into a sockaddr_un. */
static int parse_unix(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(sun->sun_path) ||
	    (path[0] != '/' && path[0] != '@'))
		return -EINVAL;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	if (path[0] == '@') {
		sun->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len =
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;
};

/* "HOST:PORT", "*:PORT" or "[V6]:PORT", numeric only. */
static int parse_inet(const char *addr, union sockaddr_any *u, socklen_t *len)
{
	struct sockaddr_in *sin = &u->sin;
	struct sockaddr_in6 *sin6 = &u->sin6;
	const char *colon = strrchr(addr, ':');
	char host[INET6_ADDRSTRLEN];
	size_t hlen;
	long port;

	if (colon == NULL || parse_long(colon + 1, 0, 65535, &port) < 0)
		return -EINVAL;
	hlen = (size_t)(colon - addr);
	memset(u, 0, sizeof(*u));
	if (addr[0] == '[') {
		if (hlen < 3 || addr[hlen - 1] != ']' ||
		    hlen - 2 >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr + 1, hlen - 2);
		host[hlen - 2] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (strcmp(host, "*") == 0)
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -EINVAL;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len = sizeof(*sin);
	return 0;
}

static int parse_addr(const char *addr, union sockaddr_any *u, socklen_t *len)
{
	if (addr == NULL)
		return -EINVAL;
	if (strncmp(addr, "unix:", 5) == 0)
		return parse_unix(addr + 5, &u->sun, len);
	return parse_inet(addr, u, len);
}

int rw_listen_fallback(const char *addr)
{
	union sockaddr_any u;
	socklen_t len;
	int fd, one = 1, r;

	r = parse_addr(addr, &u, &len);
	if (r < 0)
		return r;
	fd = socket(u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (u.sa.sa_family != AF_UNIX &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
	if (u.sa.sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, &u.sa, len) == -1)
		goto fail;
	if (listen(fd, SOMAXCONN) == -1)
		goto fail;
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

int rw_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	ssize_t n;
	int fd, r;

	if (path == NULL || path[0] == '\0')
		return 0;
	if (state == NULL)
		return -EINVAL;
	if (path[0] != '/' && path[0] != '@')
		return -EAFNOSUPPORT;
	r = parse_unix(path, &sun, &len);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	do
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			   (struct sockaddr *)&sun, len);
	while (n == -1 && errno == EINTR);
	r = n == -1 ? -errno : 1;
	close(fd);
	return r;
}

static int env_int(const char *name)
{
	long v;

	if (parse_long(getenv(name), 0, INT_MAX, &v) < 0)
		return -1;
	return (int)v;
}

int rw_slot(void)
{
	return env_int("ROLLOVER_SLOT");
}

int rw_generation(void)
{
	return env_int("ROLLOVER_GENERATION");
}

const char *rw_group(void)
{
	const char *g = getenv("ROLLOVER_GROUP");

	return g != NULL && g[0] != '\0' ? g : NULL;
}

int rw_stop_fd(int sig)
{
	sigset_t set, old;
	int fd;

	if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
		return -EINVAL;
	sigemptyset(&set);
	if (sigaddset(&set, sig) == -1)
		return -EINVAL;
	if (sigprocmask(SIG_BLOCK, &set, &old) == -1)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd == -1) {
		int r = -errno;

		sigprocmask(SIG_SETMASK, &old, NULL);
		return r;
	}
	return fd;
}

int rw_stop_read(int fd)
{
	struct signalfd_siginfo si;
	ssize_t n;

	do
		n = read(fd, &si, sizeof(si));
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EAGAIN ? 0 : -errno;
	if (n != (ssize_t)sizeof(si))
		return -EIO;
	return (int)si.ssi_signo;
}
