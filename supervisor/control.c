/*
 * control.c - the control socket that rolloverctl(8) talks to.
 *
 * A Unix stream socket, mode 0600 (or control_mode, group control_group),
 * and every peer is checked again with SO_PEERCRED: root, our own uid, or
 * a member of control_group.  The protocol is one request line of at most
 * CONTROL_LINE_MAX bytes, answered by data lines and one final line, "ok"
 * or "error: why", after which the daemon closes the connection; it is
 * documented in rolloverctl(8).  A client that sends too much, too slowly
 * or garbage gets an error and is dropped; nothing it does reaches the
 * rest of the daemon beyond the command it asked for.
 *
 * `reload` answers only when the rollovers it started have ended: each
 * client keeps the (group, generation) pairs it waits for, and
 * control_rollover_done() is told whenever a group's rollover ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rollover.h"

#define CONTROL_LINE_MAX    1024
#define CONTROL_CLIENTS_MAX 64
#define CONTROL_TIMEOUT_MS  5000      /* to send a whole request */
#define CONTROL_OUT_MAX	    (4 << 20) /* a client that does not read */

struct wait {
	struct wgroup *g;
	unsigned generation;
	int done;
};

struct client {
	struct client *next;
	int fd;
	char in[CONTROL_LINE_MAX];
	size_t inlen;
	int have_request;
	char *out;
	size_t outlen, outsent;
	int final;     /* the final line is queued: close once sent */
	int rd_closed; /* the client shut down its side */
	struct timer timeout;
	struct wait *waits;
	size_t nwaits;
	unsigned failed;
};

static int control_fd = -1;
static char *control_path;
static dev_t control_dev;
static ino_t control_ino;
static mode_t control_mode;
static gid_t control_gid;
static struct client *clients;
static unsigned nclients;
static uint64_t started_ms;
static struct timespec started_at; /* the wall clock, for status */
static struct client *upgrader;	   /* waits for the upgrade it asked for */
static char *upgraded_from;	   /* the version before the last upgrade */

static void client_free(struct client *c);

/* ---- output ------------------------------------------------------------ */

static void client_flush(struct client *c)
{
	while (c->outsent < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outsent,
				 c->outlen - c->outsent, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			loop_mod(c->fd,
				 c->rd_closed ? EPOLLOUT : EPOLLIN | EPOLLOUT);
			return;
		}
		if (n == -1) {
			client_free(c); /* the client went away */
			return;
		}
		c->outsent += (size_t)n;
	}
	c->outsent = c->outlen = 0;
	if (c->final)
		client_free(c);
	else
		loop_mod(c->fd, c->rd_closed ? 0 : EPOLLIN);
}

static void client_vsend(struct client *c, const char *fmt, va_list ap)
{
	char *line;
	int n = vasprintf(&line, fmt, ap);

	if (n < 0)
		fatalx(1, "out of memory");
	if (c->outlen + (size_t)n + 1 > CONTROL_OUT_MAX) {
		free(line);
		c->final = 1; /* it does not read: give up on it */
		return;
	}
	c->out = xrealloc(c->out, c->outlen + (size_t)n + 1);
	memcpy(c->out + c->outlen, line, (size_t)n);
	c->out[c->outlen + (size_t)n] = '\n';
	c->outlen += (size_t)n + 1;
	free(line);
}

/* A data line. */
static void client_line(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_line(struct client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	client_vsend(c, fmt, ap);
	va_end(ap);
}

/* The final line: "ok", or "error: ..." ; the connection then closes. */
static void client_end(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_end(struct client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	client_vsend(c, fmt, ap);
	va_end(ap);
	c->final = 1;
	client_flush(c);
}

/* ---- status as JSON ---------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_add(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			fatalx(1, "vsnprintf");
		if ((size_t)n < b->cap - b->len)
			break;
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	b->len += (size_t)n;
}

static void buf_json_string(struct buf *b, const char *s)
{
	buf_add(b, "\"");
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			buf_add(b, "\\%c", ch);
		else if (ch < 0x20)
			buf_add(b, "\\u%04x", ch);
		else
			buf_add(b, "%c", ch);
	}
	buf_add(b, "\"");
}

static void json_worker(struct buf *b, const struct worker *w, int first)
{
	const struct slot *s = w->gen->slots[w->slot];

	buf_add(b,
		"%s{\"pid\":%d,\"slot\":%u,\"generation\":%u,\"state\":\"%s\","
		"\"restarts\":%u,\"uptime_ms\":%llu}",
		first ? "" : ",", (int)w->pid, w->slot, w->gen->number,
		worker_state_name(w->state), s->restarts,
		(unsigned long long)(now_ms() - w->started_ms));
}

static void json_group(struct buf *b, const struct wgroup *g)
{
	const struct rollover_record *r = &g->last;
	int first = 1;

	buf_add(b, "{\"name\":");
	buf_json_string(b, g->name);
	buf_add(b, ",\"generation\":%u,\"workers_wanted\":%u,\"workers\":[",
		g->current != NULL ? g->current->number : 0, g->workers);
	for (const struct worker *w = worker_first(); w != NULL; w = w->next) {
		if (w->gen->group != g)
			continue;
		json_worker(b, w, first);
		first = 0;
	}
	buf_add(b,
		"],\"last_rollover\":{\"generation\":%u,\"trigger\":\"%s\","
		"\"result\":\"%s\",\"reason\":",
		r->generation, trigger_name(r->trigger),
		r->result != NULL ? r->result : "running");
	buf_json_string(b, r->reason);
	buf_add(b, ",\"duration_ms\":%llu}}",
		(unsigned long long)r->duration_ms);
}

static char *status_json(void)
{
	struct buf b = {xmalloc(1024), 0, 1024};
	int first = 1;

	buf_add(&b,
		"{\"pid\":%d,\"version\":\"%s\",\"uptime_ms\":%llu,"
		"\"started\":%lld.%03ld,\"upgraded_from\":",
		(int)getpid(), ROLLOVER_VERSION,
		(unsigned long long)(now_ms() - started_ms),
		(long long)started_at.tv_sec, started_at.tv_nsec / 1000000);
	if (upgraded_from != NULL)
		buf_json_string(&b, upgraded_from);
	else
		buf_add(&b, "null");
	buf_add(&b, ",\"groups\":[");
	for (const struct wgroup *g = groups; g != NULL; g = g->next) {
		if (g->removed)
			continue;
		buf_add(&b, "%s", first ? "" : ",");
		json_group(&b, g);
		first = 0;
	}
	buf_add(&b, "]}");
	return b.p;
}

/* ---- reload and waiting ------------------------------------------------- */

static void wait_add(struct client *c, struct wgroup *g)
{
	c->waits = xrealloc(c->waits, (c->nwaits + 1) * sizeof(*c->waits));
	c->waits[c->nwaits].g = g;
	c->waits[c->nwaits].generation = g->last_gen;
	c->waits[c->nwaits].done = 0;
	c->nwaits++;
}

/* One line for the end of g's newest rollover, as the log has it. */
static int wait_report(struct client *c, struct wait *wt)
{
	const struct rollover_record *r = &wt->g->last;

	if (r->generation != wt->generation || r->result == NULL ||
	    strcmp(r->result, "running") == 0)
		return 0;
	wt->done = 1;
	if (strcmp(r->result, "ok") == 0) {
		client_line(c, "%s: generation %u serving after %llu ms",
			    wt->g->name, r->generation,
			    (unsigned long long)r->duration_ms);
	} else {
		client_line(c, "%s: generation %u aborted: %s", wt->g->name,
			    r->generation, r->reason);
		c->failed++;
	}
	return 1;
}

/* The client's answer, once every rollover it waits for has ended. */
static void wait_check(struct client *c)
{
	size_t pending = 0;

	for (size_t i = 0; i < c->nwaits; i++)
		if (!c->waits[i].done && !wait_report(c, &c->waits[i]))
			pending++;
	if (pending > 0) {
		client_flush(c);
		return;
	}
	if (c->failed > 0)
		client_end(c, "error: %u of %zu rollover%s aborted", c->failed,
			   c->nwaits, c->nwaits == 1 ? "" : "s");
	else
		client_end(c, "ok");
}

void control_rollover_done(const struct wgroup *g)
{
	struct client *c, *next;

	for (c = clients; c != NULL; c = next) {
		int waits = 0;

		next = c->next;
		for (size_t i = 0; i < c->nwaits; i++)
			waits |= c->waits[i].g == g && !c->waits[i].done;
		if (waits)
			wait_check(c);
	}
}

void control_stopping(void)
{
	struct client *c, *next;

	for (c = clients; c != NULL; c = next) {
		size_t pending = 0;

		next = c->next;
		for (size_t i = 0; i < c->nwaits; i++)
			pending += !c->waits[i].done;
		if (pending > 0)
			client_end(c, "error: rollover is stopping");
	}
}

void control_forget(const struct wgroup *g)
{
	struct client *c, *next;

	for (c = clients; c != NULL; c = next) {
		int waited = 0;

		next = c->next;
		for (size_t i = 0; i < c->nwaits; i++) {
			struct wait *wt = &c->waits[i];

			if (wt->g != g || wt->done)
				continue;
			wt->done = 1;
			c->failed++;
			client_line(c, "%s: the group was removed", g->name);
			waited = 1;
		}
		if (waited)
			wait_check(c);
	}
}

static void config_error_line(const char *line);
static struct client *reporting; /* the client a config error goes to */

static void config_error_line(const char *line)
{
	log_errorx("%s", line);
	if (reporting != NULL)
		client_line(reporting, "%s", line);
}

static void cmd_status(struct client *c, const struct request *r)
{
	char *json = status_json();

	(void)r;
	client_line(c, "%s", json);
	free(json);
	client_end(c, "ok");
}

static void cmd_reload(struct client *c, const struct request *r)
{
	const char *group = r->nargs == 1 ? r->args[0] : NULL;
	struct wgroup *g = NULL;

	if (group != NULL && (g = group_find(group)) == NULL) {
		client_end(c, "error: no group named '%s'", group);
		return;
	}
	if (stopping) {
		client_end(c, "error: rollover is stopping");
		return;
	}
	if (g != NULL) {
		group_rollover(g, TRIGGER_CONTROL, NULL);
		wait_add(c, g);
	} else {
		reporting = c;
		if (supervisor_reload(TRIGGER_CONTROL, config_error_line) ==
		    -1) {
			reporting = NULL;
			client_end(c, "error: %s: not reloaded",
				   supervisor_config_path());
			return;
		}
		reporting = NULL;
		for (struct wgroup *h = groups; h != NULL; h = h->next)
			if (!h->removed)
				wait_add(c, h);
	}
	if (r->nowait) {
		for (size_t i = 0; i < c->nwaits; i++)
			if (!wait_report(c, &c->waits[i]))
				client_line(c,
					    "%s: rollover to generation %u "
					    "begun",
					    c->waits[i].g->name,
					    c->waits[i].generation);
		if (c->failed > 0)
			client_end(c, "error: %u of %zu rollover%s aborted",
				   c->failed, c->nwaits,
				   c->nwaits == 1 ? "" : "s");
		else
			client_end(c, "ok");
		return;
	}
	wait_check(c);
}

static void cmd_scale(struct client *c, const struct request *r)
{
	const char *group = r->args[0], *count = r->args[1];
	struct wgroup *g = group_find(group);
	char err[256] = "";
	unsigned long n;
	unsigned old;
	char *end;

	if (g == NULL) {
		client_end(c, "error: no group named '%s'", group);
		return;
	}
	errno = 0;
	n = strtoul(count, &end, 10);
	if (*count == '\0' || *end != '\0' || errno != 0 || n > UINT_MAX) {
		client_end(c, "error: '%s' is not a number of workers", count);
		return;
	}
	old = g->workers;
	if (group_scale(g, (unsigned)n, err, sizeof(err)) == -1) {
		client_end(c, "error: %s", err);
		return;
	}
	client_line(c, "%s: %u -> %lu workers", g->name, old, n);
	client_end(c, "ok");
}

static void cmd_stop(struct client *c, const struct request *r)
{
	(void)r;
	client_end(c, "ok");
	supervisor_stop(0, "control");
}

/*
 * Answered by control_upgrade_done() if the upgrade fails before its
 * exec, and otherwise by the new program, which inherits this client.
 */
static void cmd_upgrade(struct client *c, const struct request *r)
{
	char err[512];

	(void)r;
	if (upgrader != NULL) {
		client_end(c, "error: an upgrade is in progress");
		return;
	}
	upgrader = c; /* before the state is written: it goes along */
	if (upgrade_start(err, sizeof(err)) == -1) {
		upgrader = NULL;
		client_end(c, "error: %s", err);
	}
}

void control_upgrade_done(const char *why)
{
	if (upgrader != NULL)
		client_end(upgrader, "error: %s", why);
	upgrader = NULL;
}

/* What carries out each verb of request.c's table. */
typedef void control_cmd(struct client *c, const struct request *r);

static control_cmd *const control_cmds[] = {
#define CONTROL_CMD(name, min, max, usage) [VERB_##name] = cmd_##name,
    REQUEST_VERBS(CONTROL_CMD)
#undef CONTROL_CMD
};

/* line is NULL if it held a NUL byte. */
static void client_request(struct client *c, char *line)
{
	struct request r;

	c->have_request = 1;
	timer_cancel(&c->timeout);
	if (line == NULL)
		client_end(c, "error: a NUL byte in the request");
	else if (request_parse(line, &r) == -1)
		client_end(c, "error: %s", r.error);
	else
		control_cmds[r.verb](c, &r);
}

/* ---- connections ------------------------------------------------------- */

static void client_free(struct client *c)
{
	if (c == upgrader)
		upgrader = NULL;
	struct client **pp;

	for (pp = &clients; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	nclients--;
	timer_cancel(&c->timeout);
	loop_del(c->fd);
	close(c->fd);
	free(c->out);
	free(c->waits);
	free(c);
}

static void client_timeout(void *arg)
{
	client_end(arg, "error: request timed out");
}

static void client_read(struct client *c)
{
	for (;;) {
		char *nl;
		ssize_t n;

		if (c->inlen == sizeof(c->in)) {
			client_end(c, "error: request too long");
			return;
		}
		n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n == 0 && c->have_request) {
			/*
			 * The client shut down its side after its request
			 * (socat does): the answer still goes out.  Stop
			 * watching for input, which would stay readable.
			 */
			c->rd_closed = 1;
			loop_mod(c->fd, c->outlen > 0 ? EPOLLOUT : 0);
			return;
		}
		if (n <= 0) {
			client_free(c); /* gone, or half-sent and closed */
			return;
		}
		if (c->have_request)
			continue; /* anything after the request is ignored */
		c->inlen += (size_t)n;
		nl = memchr(c->in, '\n', c->inlen);
		if (nl != NULL) {
			/* A NUL would cut the line short: "stop\0x" is no "stop". */
			int nul =
			    memchr(c->in, '\0', (size_t)(nl - c->in)) != NULL;

			*nl = '\0';
			if (nl > c->in && nl[-1] == '\r')
				nl[-1] = '\0';
			client_request(c, nul ? NULL : c->in);
			return;
		}
	}
}

static void client_event(int fd, uint32_t events, void *arg)
{
	struct client *c = arg;

	(void)fd;
	if (events & EPOLLERR) {
		client_free(c);
		return;
	}
	if (events & EPOLLOUT) {
		client_flush(c);
		return;
	}
	if (!c->rd_closed)
		client_read(c);
	else if (events & EPOLLHUP)
		client_free(c); /* closed altogether: nobody to answer */
}

/* Root, our own uid, or a member of control_group (any of its groups). */
static int peer_allowed(int fd)
{
	struct ucred cred;
	gid_t gids[256];
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return 0;
	if (cred.uid == 0 || cred.uid == geteuid())
		return 1;
	if (control_gid == (gid_t)-1)
		return 0;
	if (cred.gid == control_gid)
		return 1;
	len = sizeof(gids);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) == -1)
		return 0;
	for (size_t i = 0; i < len / sizeof(gids[0]); i++)
		if (gids[i] == control_gid)
			return 1;
	return 0;
}

static void control_accept(int fd, uint32_t events, void *arg)
{
	(void)events;
	(void)arg;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c;

		if (cfd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn("control: accept");
			return;
		}
		if (!peer_allowed(cfd) || nclients >= CONTROL_CLIENTS_MAX) {
			const char *e = nclients >= CONTROL_CLIENTS_MAX
					    ? "error: too many clients\n"
					    : "error: permission denied\n";

			(void)!send(cfd, e, strlen(e), MSG_NOSIGNAL);
			close(cfd);
			continue;
		}
		c = xcalloc(1, sizeof(*c));
		c->fd = cfd;
		timer_init(&c->timeout, client_timeout, c);
		timer_set(&c->timeout, CONTROL_TIMEOUT_MS);
		c->next = clients;
		clients = c;
		nclients++;
		loop_add(cfd, EPOLLIN, client_event, c);
	}
}

/* ---- the socket ---------------------------------------------------------- */

/*
 * A socket file that answers belongs to a live instance: refuse to start.
 * One that refuses connections was left by a dead one: replace it.
 */
static int control_clear(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode))
		fatalx(1, "%s: exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0)
		fatalx(1, "%s: another instance is running", path);
	return unlink(path);
}

/* The directory of the socket, if missing (/run/rollover, say). */
static void control_mkdir(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');

	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			fatal(1, "control: %s", dir);
	}
	free(dir);
}

void control_init(const struct config *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	struct stat st;
	int r;

	started_ms = now_ms();
	clock_gettime(CLOCK_REALTIME, &started_at);
	control_path = xstrdup(c->control);
	control_mode = c->control_mode;
	control_gid = c->control_gid;
	if (strlen(control_path) >= sizeof(sa.sun_path))
		fatalx(1, "%s: too long for a unix socket", control_path);
	strcpy(sa.sun_path, control_path);
	control_mkdir(control_path);
	if (control_clear(control_path, &sa) == -1)
		fatal(1, "control: %s", control_path);
	control_fd =
	    socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (control_fd == -1)
		fatal(1, "control: socket");
	/* Created 0600, then widened if asked: never more open than meant. */
	old = umask(0177);
	r = bind(control_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r == -1 && errno == EADDRINUSE)
		fatalx(1, "%s: another instance is running", control_path);
	if (r == -1)
		fatal(1, "control: %s", control_path);
	if (chmod(control_path, control_mode) == -1 ||
	    (control_gid != (gid_t)-1 &&
	     chown(control_path, (uid_t)-1, control_gid) == -1))
		fatal(1, "control: %s", control_path);
	if (listen(control_fd, 64) == -1 || stat(control_path, &st) == -1)
		fatal(1, "control: %s", control_path);
	control_dev = st.st_dev;
	control_ino = st.st_ino;
	loop_add(control_fd, EPOLLIN, control_accept, NULL);
	log_info("control socket %s", control_path);
}

/* Mode and group may change on reload; the path needs a restart. */
void control_reconfigure(const struct config *c)
{
	if (strcmp(c->control, control_path) != 0)
		log_warnx("control: a new path takes effect at the next start");
	control_mode = c->control_mode;
	control_gid = c->control_gid;
	if (chmod(control_path, control_mode) == -1 ||
	    (control_gid != (gid_t)-1 &&
	     chown(control_path, (uid_t)-1, control_gid) == -1))
		log_warn("control: %s", control_path);
}

void control_close(void)
{
	struct stat st;

	while (clients != NULL)
		client_free(clients);
	if (control_fd == -1)
		return;
	loop_del(control_fd);
	close(control_fd);
	control_fd = -1;
	if (stat(control_path, &st) == 0 && st.st_dev == control_dev &&
	    st.st_ino == control_ino)
		unlink(control_path);
	free(control_path);
	control_path = NULL;
	free(upgraded_from);
	upgraded_from = NULL;
}

/* ---- self-upgrade ---------------------------------------------------------- */

void control_save(struct state_out *o)
{
	state_put_fd(o, control_fd);
	state_put_str(o, control_path);
	state_put_u64(o, control_dev);
	state_put_u64(o, control_ino);
	state_put_u64(o, control_mode);
	state_put_u64(o, control_gid);
	state_put_fd(o, upgrader != NULL ? upgrader->fd : -1);
	state_put_str(o, ROLLOVER_VERSION);
	/* Clients that have sent nothing yet: their request is still in
	 * the socket, for the new program to read. */
	state_put_u64(o, nclients - (upgrader != NULL));
	for (struct client *c = clients; c != NULL; c = c->next)
		if (c != upgrader)
			state_put_fd(o, c->fd);
}

/*
 * Just before the exec: a client whose request was read, or half read,
 * cannot be carried over (its bytes are gone from the socket), so it is
 * told to ask again.  control_save() hands over the others.
 */
void control_upgrading(void)
{
	struct client *c, *next;

	for (c = clients; c != NULL; c = next) {
		next = c->next;
		if (c != upgrader && (c->have_request || c->inlen > 0))
			client_end(c, "error: rollover is upgrading itself; "
				      "ask again");
	}
	/* Those whose answer could not go out at once are dropped. */
	for (c = clients; c != NULL; c = next) {
		next = c->next;
		if (c != upgrader && (c->have_request || c->inlen > 0))
			client_free(c);
	}
}

/* A client handed over before it sent its request. */
static void control_adopt_idle(int fd)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	timer_init(&c->timeout, client_timeout, c);
	timer_set(&c->timeout, CONTROL_TIMEOUT_MS);
	c->next = clients;
	clients = c;
	nclients++;
	loop_add(fd, EPOLLIN, client_event, c);
}

static void control_adopt_client(int fd)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	c->have_request = 1;
	timer_init(&c->timeout, client_timeout, c);
	c->next = clients;
	clients = c;
	nclients++;
	loop_add(fd, EPOLLIN, client_event, c);
	client_line(c, "upgraded from rollover %s to %s", upgraded_from,
		    ROLLOVER_VERSION);
	client_end(c, "ok");
}

/* The socket stays the same: clients queued on it during the exec wait. */
void control_load(struct state_in *in)
{
	int fd = state_get_fd(in);
	char *path = state_get_str(in);
	dev_t dev = (dev_t)state_get_u64(in);
	ino_t ino = (ino_t)state_get_u64(in);
	mode_t mode = (mode_t)state_get_max(in, 07777);
	gid_t gid = (gid_t)state_get_max(in, UINT32_MAX);
	int client = state_get_fd(in);
	char *version = state_get_str(in);
	size_t nidle = state_get_max(in, CONTROL_CLIENTS_MAX);
	int idle[CONTROL_CLIENTS_MAX];

	for (size_t i = 0; i < nidle; i++)
		idle[i] = state_get_fd(in);

	if (!in->adopt || in->err != NULL || fd < 0 || path == NULL) {
		if (in->err == NULL && (fd < 0 || path == NULL))
			state_fail(in, "no control socket");
		free(path);
		free(version);
		return;
	}
	started_ms = now_ms();
	clock_gettime(CLOCK_REALTIME, &started_at);
	control_fd = fd;
	control_path = path;
	control_dev = dev;
	control_ino = ino;
	control_mode = mode;
	control_gid = gid;
	free(upgraded_from);
	upgraded_from = version != NULL ? version : xstrdup("?");
	loop_add(control_fd, EPOLLIN, control_accept, NULL);
	if (client >= 0)
		control_adopt_client(client);
	for (size_t i = 0; i < nidle; i++)
		if (idle[i] >= 0)
			control_adopt_idle(idle[i]);
}
