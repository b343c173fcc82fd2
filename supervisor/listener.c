/*
 * listener.c - the listening sockets, opened once and held for life.
 *
 * Workers come and go; the sockets stay open in the supervisor, so that
 * connections queued on them while no worker is accepting are not lost.
 * Every TCP socket has SO_REUSEPORT (several per address in per-worker
 * mode, and so that workers written for it work unchanged).  Since that
 * would also let a second supervisor silently share the port, the first
 * socket for an address is preceded by a probe bind without it: if anyone
 * else listens there, the probe fails with "Address already in use".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rollover.h"

static struct listener *listeners;

static int is_unix_path(const struct addr *a)
{
	const struct sockaddr_un *sa = (const struct sockaddr_un *)&a->ss;

	return a->ss.ss_family == AF_UNIX && sa->sun_path[0] != '\0';
}

static const char *unix_path(const struct addr *a)
{
	return ((const struct sockaddr_un *)&a->ss)->sun_path;
}

/*
 * A socket file left by a dead process refuses connections: remove it.
 * One that accepts belongs to a live process: leave it and fail.
 */
static int unix_clear_stale(const struct addr *a)
{
	struct stat st;
	int fd, r;

	if (lstat(unix_path(a), &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	r = connect(fd, (const struct sockaddr *)&a->ss, a->len);
	close(fd);
	if (r == 0) {
		errno = EADDRINUSE;
		return -1;
	}
	if (errno != ECONNREFUSED)
		return 0;
	return unlink(unix_path(a));
}

static int probe_tcp(const struct addr *a)
{
	int one = 1, fd, r;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				 sizeof(one));
	r = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	close(fd);
	return r;
}

static int open_socket(const struct addr *a, int backlog, int first)
{
	int one = 1, fd;

	if (a->ss.ss_family == AF_UNIX) {
		if (first && unix_clear_stale(a) == -1)
			return -1;
	} else if (first && probe_tcp(a) == -1) {
		return -1;
	}
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (a->ss.ss_family != AF_UNIX &&
	    (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	     (a->ss.ss_family == AF_INET6 &&
	      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))))
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1)
		goto fail;
	/* The kernel caps the backlog at net.core.somaxconn. */
	if (listen(fd, backlog > 0 ? backlog : INT_MAX) == -1)
		goto fail;
	return fd;
fail : {
	int saved = errno;

	close(fd);
	errno = saved;
}
	return -1;
}

struct listener *listener_get(const struct addr *a, int slot, int backlog)
{
	struct listener *l;
	int first = 1;

	for (l = listeners; l != NULL; l = l->next) {
		if (!addr_equal(&l->addr, a))
			continue;
		first = 0;
		if (l->slot == slot) {
			/* listen() again just sets a new backlog. */
			if (listen(l->fd, backlog > 0 ? backlog : INT_MAX) ==
			    -1)
				log_warn("%s: listen", a->text);
			l->refs++;
			return l;
		}
	}
	l = xcalloc(1, sizeof(*l));
	l->addr = *a;
	l->slot = slot;
	l->refs = 1;
	l->fd = open_socket(a, backlog, first);
	if (l->fd == -1) {
		log_errorx("%s: %s", a->text, strerror(errno));
		free(l);
		return NULL;
	}
	if (slot < 0)
		log_info("listening on %s", a->text);
	else
		log_info("listening on %s (slot %d)", a->text, slot);
	l->next = listeners;
	listeners = l;
	return l;
}

/*
 * With SO_REUSEPORT, closing one socket of an address resets what is
 * queued on it, unless this sysctl makes the kernel move it to the
 * address's other sockets.
 */
static int migrate_req(void)
{
	char c = '0';
	int fd =
	    open("/proc/sys/net/ipv4/tcp_migrate_req", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		(void)!read(fd, &c, 1);
		close(fd);
	}
	return c != '0';
}

/*
 * Close a socket no generation uses any more.  Workers that still drain
 * hold their own copy; a unix socket's file goes with the last socket of
 * its address.
 */
void listener_put(struct listener *l)
{
	struct listener **pp;
	int last = 1;

	if (--l->refs > 0)
		return;
	for (pp = &listeners; *pp != l; pp = &(*pp)->next)
		;
	*pp = l->next;
	for (struct listener *o = listeners; o != NULL; o = o->next)
		if (addr_equal(&o->addr, &l->addr))
			last = 0;
	if (last && is_unix_path(&l->addr))
		(void)unlink(unix_path(&l->addr));
	if (!stopping)
		log_info("closed %s%s", l->addr.text,
			 l->slot < 0 ? "" : " (one slot's socket)");
	if (!stopping && !last && !migrate_req())
		log_warnx("%s: connections queued on the closed socket are "
			  "reset; net.ipv4.tcp_migrate_req = 1 would move them "
			  "to the address's other sockets",
			  l->addr.text);
	close(l->fd);
	free(l);
}
