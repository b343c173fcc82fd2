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
static int activated[SPAWN_MAX_FDS]; /* listening sockets given to us */
static size_t nactivated;

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

/*
 * shutdown(2) on a listening socket, by any worker holding it, stops it
 * for every holder; listen() again would not revive it.  A TCP socket
 * can be replaced beside it (SO_REUSEPORT); a unix one cannot while its
 * path is taken, so it stays as it is.
 */
static int shut_down(const struct listener *l)
{
	int on = 1;
	socklen_t len = sizeof(on);

	return l->addr.ss.ss_family != AF_UNIX &&
	       getsockopt(l->fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 &&
	       !on;
}

struct listener *listener_get(const struct addr *a, int slot, int backlog)
{
	struct listener *l;
	int first = 1;

	for (l = listeners; l != NULL; l = l->next) {
		if (!addr_equal(&l->addr, a))
			continue;
		first = 0;
		if (l->slot == slot && shut_down(l)) {
			log_warnx("%s: a worker shut this socket down; opening "
				  "a new one",
				  a->text);
			continue; /* dropped as its generations go */
		}
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

/* ---- socket activation ----------------------------------------------------- */

/*
 * Sockets handed to us by a service manager (LISTEN_FDS, at 3, 4, ...):
 * made close-on-exec at once, and the variables unset, since they were
 * meant for us and not for the workers.
 */
void listener_take_activated(void)
{
	const char *pid = getenv("LISTEN_PID");
	const char *fds = getenv("LISTEN_FDS");

	int n = fds != NULL ? atoi(fds) : 0;

	if (pid == NULL || atol(pid) != (long)getpid() || n < 0)
		n = 0;
	if (n > SPAWN_MAX_FDS)
		n = SPAWN_MAX_FDS;
	for (int fd = 3; fd < 3 + n; fd++) {
		int type = 0, acc = 0;
		socklen_t len = sizeof(int);

		/* Only listening stream sockets; anything else is left be. */
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
		    type != SOCK_STREAM ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ==
			-1 ||
		    !acc || nactivated == ARRAY_LEN(activated)) {
			log_warnx("fd %d from the service manager is not a "
				  "listening stream socket; ignored",
				  fd);
			continue;
		}
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		activated[nactivated++] = fd;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

static int sockaddr_is(const struct sockaddr_storage *ss, socklen_t len,
		       const struct addr *a)
{
	if (ss->ss_family != a->ss.ss_family)
		return 0;
	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *x = (const struct sockaddr_in *)ss;
		const struct sockaddr_in *y =
		    (const struct sockaddr_in *)&a->ss;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)ss;
		const struct sockaddr_in6 *y =
		    (const struct sockaddr_in6 *)&a->ss;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr,
			      sizeof(x->sin6_addr)) == 0;
	}
	case AF_UNIX:
		return len == a->len && memcmp(ss, &a->ss, (size_t)len) == 0;
	}
	return 0;
}

struct listener *listener_first(void)
{
	return listeners;
}

/* A socket handed over by a self-upgrade, with the references it had. */
void listener_install(struct listener *l)
{
	l->next = listeners;
	listeners = l;
}

/* The configured address an activated socket is bound to, if any. */
static const struct addr *activated_match(int fd, const struct config *c,
					  int *slot)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return NULL;
	for (size_t i = 0; i < c->ngroups; i++) {
		const struct group_conf *gc = &c->groups[i];

		for (size_t j = 0; j < gc->nlisten; j++) {
			if (!sockaddr_is(&ss, len, &gc->listen[j]))
				continue;
			*slot = gc->listen_mode == LISTEN_PER_WORKER &&
					gc->listen[j].ss.ss_family != AF_UNIX
				    ? 0
				    : -1;
			return &gc->listen[j];
		}
	}
	return NULL;
}

/*
 * Use the activated sockets for the addresses they are bound to, instead
 * of binding our own; they are held for our whole life (an extra
 * reference never dropped).  One that matches no address is closed.
 */
void listener_adopt(const struct config *c)
{
	for (size_t i = 0; i < nactivated; i++) {
		int fd = activated[i];
		const struct addr *a;
		struct listener *l;
		int slot = -1;

		if ((a = activated_match(fd, c, &slot)) == NULL) {
			log_warnx("fd %d from the service manager matches no "
				  "listen address; closing it",
				  fd);
			close(fd);
			continue;
		}
		l = xcalloc(1, sizeof(*l));
		l->addr = *a;
		l->slot = slot;
		l->fd = fd;
		l->refs = 1;
		l->next = listeners;
		listeners = l;
		log_info("listening on %s (from the service manager)", a->text);
	}
	nactivated = 0;
}
