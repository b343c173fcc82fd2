/*
 * hello.c - rollover-hello, the example HTTP/1.1 worker.
 *
 * GET / answers a fixed message, GET /pid says which worker of which
 * generation answered, GET /sleep?ms=N answers after N ms.  It serves on
 * the sockets rollover passes (or on --listen addresses when run by hand)
 * from one single-threaded, level-triggered epoll loop.
 *
 * What matters here is the stop.  On the stop signal the worker closes its
 * listeners (the supervisor keeps its own copy of them, so nothing queued
 * is lost), lets every request in flight finish with "Connection: close",
 * gives each idle keep-alive connection a short grace in which its next
 * request is still answered (with "Connection: close"), and exits 0 once
 * no connection is left.  A connection is never closed while a request may
 * be sitting unread in its receive buffer: closing is a half-close
 * (shutdown SHUT_WR) followed by draining reads until the client's FIN,
 * so the kernel never answers a late request with a reset.  A client that
 * keeps sending on keep-alive connections thus sees no error.
 *
 * Timeouts: every connection is on at most one of a few lists, each with a
 * fixed duration, so that appending at the tail keeps a list sorted by
 * deadline and the loop only ever looks at the heads.  /sleep uses one
 * timerfd per sleeping connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "rollover_worker.h"

#define PROG "rollover-hello"

/* The tests build variants that answer differently. */
#ifndef HELLO_MESSAGE
#define HELLO_MESSAGE "hello from rollover\n"
#endif

#define IN_MAX		8192 /* read buffer = limit on request line + headers */
#define OUT_HIGH	65536 /* stop parsing pipelined requests above this */
#define HEADER_MS	10000 /* first byte of a request to its end */
#define IDLE_MS		60000 /* keep-alive idle; also no send progress */
#define GRACE_MS	200   /* idle connection's last chance when stopping */
#define LINGER_MS	2000  /* half-closed, waiting for the client's FIN */
#define SLEEP_MAX_MS	60000
#define ACCEPT_PAUSE_MS 100 /* after EMFILE and the like */
#define MAX_LISTENERS	64
#define MAX_EVENTS	256

#define container_of(p, type, member)                                          \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* What an epoll event points to: the function that handles it. */
struct handler {
	void (*fn)(struct handler *h, uint32_t events);
};

struct link {
	struct link *prev, *next;
};

/* Timeout lists; a connection's `tl` says which one it is on. */
enum tlist { T_NONE = -1, T_HEADER, T_IDLE, T_GRACE, T_LINGER, T_COUNT };
static const int64_t tlist_ms[T_COUNT] = {HEADER_MS, IDLE_MS, GRACE_MS,
					  LINGER_MS};

struct request {
	bool head; /* HEAD: the GET headers, no body */
	bool get;  /* GET or HEAD */
	bool keep; /* the client allows another request after this one */
	const char *target;
	size_t target_len;
	uint64_t content_length;
};

/*
 * A connection is a small set of facts rather than one state: whether a
 * /sleep is pending (tfd >= 0), output is pending, a request is partly read,
 * the client has half-closed (peer_eof), no further request will be served
 * (close_after), or we have half-closed and are draining (lingering).
 * conn_update() derives the epoll mask and the timeout from them.
 */
struct conn {
	struct handler sock;  /* events on fd */
	struct handler timer; /* the /sleep timerfd fired */
	int fd, tfd;
	uint32_t mask;	   /* epoll interest currently registered */
	struct link all;   /* on srv.conns, or srv.dead once closed */
	struct link tlink; /* on srv.timeouts[tl] */
	enum tlist tl;
	int64_t deadline;
	unsigned long served;
	bool peer_eof, close_after, lingering, dead;
	struct request sleeping; /* the pending /sleep request */
	long sleep_ms;
	uint64_t discard; /* request body bytes still to read and drop */
	char *out;
	size_t out_len, out_off, out_cap;
	size_t in_len;
	char in[IN_MAX];
};

struct listener {
	struct handler h;
	int fd;
	bool owned; /* bound by us (--listen), not inherited */
};

static struct {
	int ep;
	int64_t now;
	bool stopping;
	bool accept_paused;
	bool accept_warned; /* said so once for this shortage */
	int64_t accept_resume;
	struct listener listeners[MAX_LISTENERS];
	int nlisteners;
	struct link conns, dead;
	unsigned long nconns;
	struct link timeouts[T_COUNT];
	const char *message;
	char pid_json[96];
} srv;

static void conn_run(struct conn *c);
static void conn_update(struct conn *c);

/* ---- small things ----------------------------------------------------- */

/* One line on stderr, written at once. */
static void say(const char *what, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void say(const char *what, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, PROG ": %s%s\n", what, buf);
}

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say("", fmt, ap);
	va_end(ap);
	exit(1);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say("warning: ", fmt, ap);
	va_end(ap);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void link_init(struct link *l)
{
	l->prev = l->next = l;
}

static bool link_empty(const struct link *l)
{
	return l->next == l;
}

static void link_append(struct link *head, struct link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/*
 * The analyzer loses track of container_of() in reap_dead() and reports a
 * use after free here; the list is intact.
 */
static void link_remove(struct link *l)
{
	l->prev->next = l->next; // NOLINT(clang-analyzer-unix.Malloc)
	l->next->prev = l->prev;
	link_init(l);
}

/* ---- timeouts ----------------------------------------------------------- */

static void timer_clear(struct conn *c)
{
	if (c->tl != T_NONE)
		link_remove(&c->tlink);
	c->tl = T_NONE;
}

/* Put c on list tl; if it is on it already, its deadline stands. */
static void timer_set(struct conn *c, enum tlist tl)
{
	if (c->tl == tl)
		return;
	timer_clear(c);
	c->tl = tl;
	c->deadline = srv.now + tlist_ms[tl];
	link_append(&srv.timeouts[tl], &c->tlink);
}

/* Milliseconds epoll_wait may sleep: to the earliest deadline, or -1. */
static int next_timeout(void)
{
	int64_t d = INT64_MAX;

	for (int i = 0; i < T_COUNT; i++) {
		struct conn *c;

		if (link_empty(&srv.timeouts[i]))
			continue;
		c = container_of(srv.timeouts[i].next, struct conn, tlink);
		if (c->deadline < d)
			d = c->deadline;
	}
	if (srv.accept_paused && srv.accept_resume < d)
		d = srv.accept_resume;
	if (d == INT64_MAX)
		return -1;
	if (d <= srv.now)
		return 0;
	return d - srv.now > INT_MAX ? INT_MAX : (int)(d - srv.now);
}

/* ---- output ------------------------------------------------------------- */

static size_t out_pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}

static int out_append(struct conn *c, const void *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 1024;
		char *o;

		while (cap < c->out_len + n)
			cap *= 2;
		o = realloc(c->out, cap);
		if (o == NULL)
			return -1;
		c->out = o;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

/* The Date header's value, formatted once a second. */
static const char *http_date(void)
{
	static char buf[40];
	static time_t last = -1;
	time_t t = time(NULL);
	struct tm tm;

	if (t != last && gmtime_r(&t, &tm) != NULL) {
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		last = t;
	}
	return buf;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/*
 * Queue one response.  A response that does not keep the connection
 * (the client's wish, an error, or a stop under way) ends the requests
 * this connection will serve.
 */
static void respond(struct conn *c, int status, const char *type,
		    const char *body, size_t len, bool head, bool keep)
{
	char hdr[512];
	int n;

	keep = keep && !srv.stopping;
	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.1 %d %s\r\n"
		     "Server: " PROG "\r\n"
		     "Date: %s\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "Connection: %s\r\n"
		     "\r\n",
		     status, status_text(status), http_date(), type, len,
		     status == 405 ? "Allow: GET, HEAD\r\n" : "",
		     keep ? "keep-alive" : "close");
	c->served++;
	if (!keep)
		c->close_after = true;
	if (out_append(c, hdr, (size_t)n) < 0 ||
	    (!head && out_append(c, body, len) < 0)) {
		/* Out of memory: drop the partial response and the connection. */
		c->out_len = c->out_off;
		c->close_after = true;
	}
}

static void respond_text(struct conn *c, int status, const char *text,
			 bool head, bool keep)
{
	respond(c, status, "text/plain; charset=utf-8", text, strlen(text),
		head, keep);
}

static void respond_error(struct conn *c, int status)
{
	char body[64];

	snprintf(body, sizeof(body), "%s\n", status_text(status));
	respond_text(c, status, body, false, false);
}

/* 0 when all is sent or the socket is full, -1 if the connection is gone. */
static int conn_flush(struct conn *c)
{
	while (out_pending(c) > 0) {
		ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c),
				 MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		c->out_off += (size_t)n;
		if (c->tl == T_IDLE)
			timer_clear(c); /* progress restarts the send timeout */
	}
	if (out_pending(c) == 0)
		c->out_off = c->out_len = 0;
	return 0;
}

/* ---- parsing ------------------------------------------------------------ */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Does the comma-separated list [p, end) hold token tok? */
static bool list_has(const char *p, const char *end, const char *tok)
{
	size_t tl = strlen(tok);

	while (p < end) {
		const char *q = p, *e;

		while (q < end && *q != ',')
			q++;
		e = q;
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == tl && strncasecmp(p, tok, tl) == 0)
			return true;
		p = q + 1;
	}
	return false;
}

/* "METHOD SP TARGET SP HTTP/1.x"; 0 or the status to answer. */
static int parse_request_line(const char *p, const char *end,
			      struct request *rq, int *minor)
{
	const char *m = p, *t;

	while (p < end && is_tchar((unsigned char)*p))
		p++;
	if (p == m || p == end || *p != ' ')
		return 400;
	rq->head = p - m == 4 && memcmp(m, "HEAD", 4) == 0;
	rq->get = rq->head || (p - m == 3 && memcmp(m, "GET", 3) == 0);
	t = ++p;
	while (p < end && (unsigned char)*p > ' ' && *p != 0x7f)
		p++;
	if (p == t || p == end || *p != ' ')
		return 400;
	rq->target = t;
	rq->target_len = (size_t)(p - t);
	p++;
	if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
	    p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
		return 400;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return 505;
	*minor = p[7] - '0';
	return 0;
}

struct headers {
	bool conn_close, conn_keep, te, has_cl;
	uint64_t cl;
};

/* One "Name: value" line; 0 or the status to answer. */
static int parse_header(const char *p, const char *end, struct headers *h)
{
	const char *name = p, *v, *ve;
	size_t nl;

	while (p < end && is_tchar((unsigned char)*p))
		p++;
	if (p == name || p == end || *p != ':')
		return 400; /* also obs-fold and space before the colon */
	nl = (size_t)(p - name);
	for (v = p + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	for (ve = end; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
		;
	for (const char *q = v; q < ve; q++)
		if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f)
			return 400;
	if (nl == 10 && strncasecmp(name, "connection", nl) == 0) {
		h->conn_close |= list_has(v, ve, "close");
		h->conn_keep |= list_has(v, ve, "keep-alive");
	} else if (nl == 17 &&
		   strncasecmp(name, "transfer-encoding", nl) == 0) {
		h->te = true;
	} else if (nl == 14 && strncasecmp(name, "content-length", nl) == 0) {
		uint64_t cl = 0;

		if (v == ve || ve - v > 18)
			return 400;
		for (const char *q = v; q < ve; q++) {
			if (*q < '0' || *q > '9')
				return 400;
			cl = cl * 10 + (uint64_t)(*q - '0');
		}
		if (h->has_cl && h->cl != cl)
			return 400;
		h->has_cl = true;
		h->cl = cl;
	}
	return 0;
}

/*
 * Parse one request head at the start of buf.  Returns its length, 0 if
 * it is not complete yet, or minus the status to answer before closing.
 * Lines may end in CRLF or a bare LF; empty lines before the request line
 * are skipped.
 */
static long parse_request(const char *buf, size_t len, struct request *rq)
{
	const char *p = buf, *end = buf + len;
	struct headers h = {0};
	bool first = true;
	int minor = 1, r;

	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	for (;;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le;

		if (eol == NULL)
			return 0;
		le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		if (memchr(p, '\r', (size_t)(le - p)) != NULL)
			return -400;
		if (first)
			r = parse_request_line(p, le, rq, &minor);
		else if (le == p)
			r = -1; /* the empty line: end of the head */
		else
			r = parse_header(p, le, &h);
		p = eol + 1;
		if (r == -1)
			break;
		if (r != 0)
			return -r;
		first = false;
	}
	if (h.te)
		return h.has_cl ? -400 : -501;
	rq->content_length = h.cl;
	rq->keep = minor == 1 ? !h.conn_close : h.conn_keep && !h.conn_close;
	return (long)(p - buf);
}

/* ---- routes ------------------------------------------------------------- */

/* memmem for [p, end) that does not cross a '/' before the needle. */
static const char *strstr_n(const char *p, const char *end, const char *needle)
{
	const char *f = memmem(p, (size_t)(end - p), needle, strlen(needle));
	const char *slash = memchr(p, '/', (size_t)(end - p));

	return f != NULL && (slash == NULL || slash > f) ? f : NULL;
}

static bool path_is(const char *path, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(path, want, len) == 0;
}

/* The value of ?ms=N as 0..SLEEP_MAX_MS, or -1. */
static long query_ms(const char *q, const char *end)
{
	while (q < end) {
		const char *e = memchr(q, '&', (size_t)(end - q));

		if (e == NULL)
			e = end;
		if (e - q > 3 && memcmp(q, "ms=", 3) == 0 && e - q <= 8) {
			const char *d;
			long v = 0;

			for (d = q + 3; d < e && *d >= '0' && *d <= '9'; d++)
				v = v * 10 + (*d - '0');
			return d == e && v <= SLEEP_MAX_MS ? v : -1;
		}
		q = e + 1;
	}
	return -1;
}

static void sleep_done(struct conn *c)
{
	char body[64];

	snprintf(body, sizeof(body), "slept %ld ms\n", c->sleep_ms);
	respond_text(c, 200, body, c->sleeping.head, c->sleeping.keep);
}

static void conn_timer_event(struct handler *h, uint32_t events);

static void route_sleep(struct conn *c, const struct request *rq, long ms)
{
	struct itimerspec its = {0};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->timer};
	int fd;

	c->sleeping = *rq;
	c->sleep_ms = ms;
	if (ms == 0) {
		sleep_done(c);
		return;
	}
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd == -1) {
		respond_text(c, 500, "no timer\n", rq->head, rq->keep);
		return;
	}
	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (ms % 1000) * 1000000;
	if (timerfd_settime(fd, 0, &its, NULL) == -1 ||
	    epoll_ctl(srv.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		close(fd);
		respond_text(c, 500, "no timer\n", rq->head, rq->keep);
		return;
	}
	c->tfd = fd;
	c->sleeping.target = NULL; /* points into c->in, which moves */
}

static void route(struct conn *c, const struct request *rq)
{
	const char *path = rq->target, *end = rq->target + rq->target_len;
	const char *q;
	size_t plen;

	/* absolute-form, "http://host/path": keep the path. */
	if (path[0] != '/' && (q = strstr_n(path, end, "://")) != NULL) {
		path = memchr(q + 3, '/', (size_t)(end - q - 3));
		if (path == NULL) {
			path = "/";
			end = path + 1;
		}
	}
	q = memchr(path, '?', (size_t)(end - path));
	plen = (size_t)((q ? q : end) - path);

	if (path_is(path, plen, "/")) {
		if (!rq->get)
			respond_text(c, 405, "method not allowed\n", false,
				     rq->keep);
		else
			respond_text(c, 200, srv.message, rq->head, rq->keep);
	} else if (path_is(path, plen, "/pid")) {
		if (!rq->get)
			respond_text(c, 405, "method not allowed\n", false,
				     rq->keep);
		else
			respond(c, 200, "application/json", srv.pid_json,
				strlen(srv.pid_json), rq->head, rq->keep);
	} else if (path_is(path, plen, "/sleep")) {
		long ms = q ? query_ms(q + 1, end) : -1;

		if (!rq->get)
			respond_text(c, 405, "method not allowed\n", false,
				     rq->keep);
		else if (ms < 0)
			respond_text(c, 400,
				     "want /sleep?ms=N with N in 0..60000\n",
				     rq->head, rq->keep);
		else
			route_sleep(c, rq, ms);
	} else {
		respond_text(c, 404, "not found\n", rq->head, rq->keep);
	}
}

/* ---- connections -------------------------------------------------------- */

static void set_mask(struct conn *c, uint32_t mask)
{
	struct epoll_event ev = {.events = mask, .data.ptr = &c->sock};

	if (mask != c->mask &&
	    epoll_ctl(srv.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->mask = mask;
}

/* Abortive end: only when the receive side is empty or the peer is gone. */
static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	timer_clear(c);
	if (c->tfd >= 0)
		close(c->tfd);
	close(c->fd);
	free(c->out);
	c->out = NULL;
	c->dead = true;
	link_remove(&c->all);
	link_append(&srv.dead, &c->all);
	srv.nconns--;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Read and drop whatever arrived; -1 once the client closed or failed. */
static int drain(struct conn *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

/*
 * Graceful end: send our FIN after the last response, then read until the
 * client's FIN (or LINGER_MS), so that a request the client sent before
 * seeing our FIN is absorbed instead of drawing a reset.
 */
static void conn_linger(struct conn *c)
{
	c->lingering = true;
	c->in_len = 0;
	c->discard = 0;
	if (shutdown(c->fd, SHUT_WR) == -1 || drain(c) < 0) {
		conn_close(c);
		return;
	}
	timer_clear(c);
	timer_set(c, T_LINGER);
	set_mask(c, EPOLLIN);
}

/* One read into the buffer: 1 data, 0 nothing yet, -1 gone (closed). */
static int conn_read(struct conn *c)
{
	ssize_t n;

	do
		n = recv(c->fd, c->in + c->in_len, IN_MAX - c->in_len, 0);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		c->in_len += (size_t)n;
		return 1;
	}
	if (n == 0) {
		c->peer_eof = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	conn_close(c);
	return -1;
}

/*
 * Answer the requests buffered, in order, until one must wait (a /sleep),
 * ends the connection, is incomplete, or output backs up.  Returns true
 * if it stopped only because output backed up.
 */
static bool conn_process(struct conn *c)
{
	while (c->tfd < 0 && !c->close_after && !c->dead) {
		struct request rq;
		long r;

		if (c->discard > 0) {
			size_t n =
			    c->discard < c->in_len ? c->discard : c->in_len;

			if (n == 0)
				break;
			consume(c, n);
			c->discard -= n;
			if (c->tl == T_HEADER)
				timer_clear(c); /* body progress */
			continue;
		}
		if (c->in_len == 0)
			break;
		if (out_pending(c) >= OUT_HIGH)
			return true;
		r = parse_request(c->in, c->in_len, &rq);
		if (r == 0) {
			if (c->in_len == IN_MAX)
				respond_error(c, 431);
			break;
		}
		if (r < 0) {
			respond_error(c, (int)-r);
			break;
		}
		timer_clear(c); /* a request is complete: its timeout is over */
		route(c, &rq);
		consume(c, (size_t)r);
		c->discard = rq.content_length;
	}
	return false;
}

/* Derive epoll interest and timeout from the connection's facts. */
static void conn_update(struct conn *c)
{
	bool sleeping = c->tfd >= 0, writing = out_pending(c) > 0;
	uint32_t mask = 0;

	if (c->dead || c->lingering)
		return;
	if (!sleeping && !writing) {
		if (c->close_after) {
			conn_linger(c);
			return;
		}
		if (c->peer_eof) {
			conn_close(c); /* nothing left to answer */
			return;
		}
	}
	if (writing)
		mask |= EPOLLOUT;
	if (!sleeping && !c->close_after && !c->peer_eof &&
	    c->in_len < IN_MAX && out_pending(c) < OUT_HIGH)
		mask |= EPOLLIN;
	set_mask(c, mask);

	if (sleeping)
		timer_clear(c);
	else if (writing)
		timer_set(c, T_IDLE);
	else if (c->in_len > 0 || c->discard > 0)
		timer_set(c, T_HEADER);
	else if (srv.stopping)
		timer_set(c, T_GRACE);
	else
		timer_set(c, c->served == 0 ? T_HEADER : T_IDLE);
}

static void conn_run(struct conn *c)
{
	for (;;) {
		bool backed_up = conn_process(c);

		if (c->dead)
			return;
		if (conn_flush(c) < 0) {
			conn_close(c);
			return;
		}
		if (!backed_up || out_pending(c) > 0)
			break;
	}
	conn_update(c);
}

static void conn_sock_event(struct handler *h, uint32_t events)
{
	struct conn *c = container_of(h, struct conn, sock);

	if (c->dead)
		return;
	if (c->lingering) {
		if ((events & (EPOLLERR | EPOLLHUP)) || drain(c) < 0)
			conn_close(c);
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(
		    c); /* reset, or both directions shut: no one to answer */
		return;
	}
	if ((events & EPOLLIN) && (c->mask & EPOLLIN) && conn_read(c) < 0)
		return;
	conn_run(c);
}

static void conn_timer_event(struct handler *h, uint32_t events)
{
	struct conn *c = container_of(h, struct conn, timer);
	uint64_t ticks;

	(void)events;
	if (c->dead || c->tfd < 0)
		return;
	if (read(c->tfd, &ticks, sizeof(ticks)) != (ssize_t)sizeof(ticks))
		return; /* not yet */
	close(c->tfd);
	c->tfd = -1;
	sleep_done(c);
	conn_run(c);
}

static void conn_timeout(struct conn *c, enum tlist tl)
{
	switch (tl) {
	case T_GRACE:
		/* Only now, having seen nothing arrive, end it gracefully. */
		if (conn_read(c) < 0)
			return;
		if (c->in_len > 0 || c->peer_eof)
			conn_run(c);
		else
			conn_linger(c);
		break;
	case T_IDLE:
		if (out_pending(c) > 0)
			conn_close(c); /* the client stopped reading */
		else
			conn_linger(c);
		break;
	case T_HEADER:
		conn_linger(c); /* too slow: close without a response */
		break;
	case T_LINGER:
	default:
		drain(c);
		conn_close(c);
		break;
	}
}

static void run_timeouts(void)
{
	for (int i = 0; i < T_COUNT; i++) {
		while (!link_empty(&srv.timeouts[i])) {
			struct conn *c = container_of(srv.timeouts[i].next,
						      struct conn, tlink);

			if (c->deadline > srv.now)
				break;
			timer_clear(c);
			conn_timeout(c, (enum tlist)i);
		}
	}
}

static void conn_new(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct conn *c = malloc(sizeof(*c));
	int one = 1;

	if (c == NULL) {
		close(fd);
		return;
	}
	memset(c, 0, offsetof(struct conn, in));
	c->sock.fn = conn_sock_event;
	c->timer.fn = conn_timer_event;
	c->fd = fd;
	c->tfd = -1;
	c->tl = T_NONE;
	c->mask = EPOLLIN;
	link_init(&c->tlink);
	ev.data.ptr = &c->sock;
	if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		close(fd);
		free(c);
		return;
	}
	/* Fails harmlessly on unix sockets. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	link_append(&srv.conns, &c->all);
	srv.nconns++;
	conn_update(c);
}

static void reap_dead(void)
{
	while (!link_empty(&srv.dead)) {
		struct conn *c = container_of(srv.dead.next, struct conn, all);

		link_remove(&c->all);
		free(c);
	}
}

/* ---- listeners and the stop --------------------------------------------- */

static int listener_watch(struct listener *l)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
				 .data.ptr = &l->h};

	if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, l->fd, &ev) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	ev.events = EPOLLIN; /* a kernel without EPOLLEXCLUSIVE */
	return epoll_ctl(srv.ep, EPOLL_CTL_ADD, l->fd, &ev);
}

static void accept_pause(void)
{
	for (int i = 0; i < srv.nlisteners; i++)
		if (srv.listeners[i].fd >= 0)
			epoll_ctl(srv.ep, EPOLL_CTL_DEL, srv.listeners[i].fd,
				  NULL);
	srv.accept_paused = true;
	srv.accept_resume = srv.now + ACCEPT_PAUSE_MS;
}

static void accept_resume(void)
{
	srv.accept_paused = false;
	for (int i = 0; i < srv.nlisteners; i++)
		if (srv.listeners[i].fd >= 0)
			listener_watch(&srv.listeners[i]);
}

static void accept_all(struct listener *l)
{
	for (;;) {
		int fd =
		    accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			srv.accept_warned = false;
			conn_new(fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			if (!srv.accept_warned)
				warn("accept: %s; retrying every %d ms",
				     strerror(errno), ACCEPT_PAUSE_MS);
			srv.accept_warned = true;
			accept_pause();
			return;
		default:
			/* EINTR, ECONNABORTED and pending network errors. */
			continue;
		}
	}
}

static void listener_event(struct handler *h, uint32_t events)
{
	struct listener *l = container_of(h, struct listener, h);

	(void)events;
	if (l->fd >= 0 && !srv.accept_paused)
		accept_all(l);
}

/*
 * Stop: no new connections; every connection ends after what it has in
 * flight, or after one more request within GRACE_MS if it is idle.
 * Closing an inherited listener loses nothing, the supervisor holds it;
 * one we bound ourselves is emptied first.
 */
static void server_stop(void)
{
	struct link *l, *next;

	if (srv.stopping)
		return;
	srv.stopping = true;
	rw_notify("STOPPING=1");
	for (int i = 0; i < srv.nlisteners; i++) {
		struct listener *ls = &srv.listeners[i];

		if (ls->fd < 0)
			continue;
		if (ls->owned && !srv.accept_paused)
			accept_all(ls);
		close(ls->fd); /* also leaves the epoll set */
		ls->fd = -1;
	}
	srv.accept_paused = false;
	for (l = srv.conns.next; l != &srv.conns; l = next) {
		next = l->next;
		conn_update(container_of(l, struct conn, all));
	}
}

static struct handler stop_handler;
static int stop_fds[2] = {-1, -1};

static void stop_event(struct handler *h, uint32_t events)
{
	(void)h;
	(void)events;
	for (int i = 0; i < 2; i++)
		if (stop_fds[i] >= 0 && rw_stop_read(stop_fds[i]) > 0)
			server_stop();
}

/* ---- setup -------------------------------------------------------------- */

static void add_listener(int fd, bool owned, const char *what)
{
	struct listener *l;
	int on = 0, flags;
	socklen_t len = sizeof(on);

	if (srv.nlisteners == MAX_LISTENERS)
		die("too many listening sockets (at most %d)", MAX_LISTENERS);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1)
		die("%s: %s", what, strerror(errno));
	if (!on)
		die("%s is not a listening socket", what);
	flags = fcntl(fd, F_GETFL);
	if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		die("%s: set O_NONBLOCK: %s", what, strerror(errno));
	l = &srv.listeners[srv.nlisteners++];
	l->h.fn = listener_event;
	l->fd = fd;
	l->owned = owned;
	if (listener_watch(l) == -1)
		die("%s: epoll: %s", what, strerror(errno));
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " PROG " [--listen ADDR]... [--message TEXT]\n"
	    "\n"
	    "An HTTP/1.1 example worker for rollover(8).\n"
	    "  GET /            the message (default \"hello from "
	    "rollover\\n\")\n"
	    "  GET /pid         {\"pid\":N,\"slot\":N,\"generation\":N}\n"
	    "  GET /sleep?ms=N  answers after N ms (0..60000)\n"
	    "\n"
	    "  -l, --listen ADDR   listen on ADDR when not given sockets by\n"
	    "                      LISTEN_FDS: 127.0.0.1:8080, *:8080, "
	    "[::1]:8080,\n"
	    "                      unix:/path; may be repeated\n"
	    "  -m, --message TEXT  the body of GET /\n"
	    "  -h, --help          this help\n"
	    "\n"
	    "SIGTERM or SIGINT: stop gracefully, exit 0.  Exit 1 if start-up\n"
	    "fails, 2 on bad usage.\n");
}

static int parse_args(int argc, char **argv, const char **addrs)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"message", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int n = 0, ch;

	while ((ch = getopt_long(argc, argv, "l:m:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (n == MAX_LISTENERS)
				die("too many --listen (at most %d)",
				    MAX_LISTENERS);
			addrs[n++] = optarg;
			break;
		case 'm':
			srv.message = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument: %s\n",
			argv[optind]);
		usage(stderr);
		exit(2);
	}
	return n;
}

static void setup_listeners(const char **addrs, int naddrs)
{
	char what[64];
	int n = rw_listen_fds();

	if (n < 0)
		die("LISTEN_FDS: %s", strerror(-n));
	for (int i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "fd %d from LISTEN_FDS",
			 RW_LISTEN_FDS_START + i);
		add_listener(RW_LISTEN_FDS_START + i, false, what);
	}
	if (n > 0)
		return;
	if (naddrs == 0)
		die("no listening socket: not socket-activated and no "
		    "--listen");
	for (int i = 0; i < naddrs; i++) {
		int fd = rw_listen_fallback(addrs[i]);

		if (fd == -EINVAL)
			die("listen %s: not an address (HOST:PORT, [V6]:PORT, "
			    "unix:PATH)",
			    addrs[i]);
		if (fd < 0)
			die("listen %s: %s", addrs[i], strerror(-fd));
		add_listener(fd, true, addrs[i]);
	}
}

static void setup_stop(void)
{
	static const int sigs[2] = {SIGTERM, SIGINT};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stop_handler};

	stop_handler.fn = stop_event;
	for (int i = 0; i < 2; i++) {
		stop_fds[i] = rw_stop_fd(sigs[i]);
		if (stop_fds[i] < 0)
			die("signalfd: %s", strerror(-stop_fds[i]));
		if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, stop_fds[i], &ev) == -1)
			die("epoll: %s", strerror(errno));
	}
}

int main(int argc, char **argv)
{
	const char *addrs[MAX_LISTENERS];
	struct epoll_event evs[MAX_EVENTS];
	int naddrs, r;

	srv.message = HELLO_MESSAGE;
	naddrs = parse_args(argc, argv, addrs);
	signal(SIGPIPE, SIG_IGN);
	link_init(&srv.conns);
	link_init(&srv.dead);
	for (int i = 0; i < T_COUNT; i++)
		link_init(&srv.timeouts[i]);
	srv.now = now_ms();
	srv.ep = epoll_create1(EPOLL_CLOEXEC);
	if (srv.ep == -1)
		die("epoll_create1: %s", strerror(errno));
	setup_stop(); /* first, so that a stop signal during start-up waits */
	setup_listeners(addrs, naddrs);
	snprintf(srv.pid_json, sizeof(srv.pid_json),
		 "{\"pid\":%d,\"slot\":%d,\"generation\":%d}\n", (int)getpid(),
		 rw_slot(), rw_generation());
	r = rw_notify("READY=1");
	if (r < 0)
		warn("READY=1 to NOTIFY_SOCKET: %s", strerror(-r));

	while (!srv.stopping || srv.nconns > 0) {
		int n;

		srv.now = now_ms();
		n = epoll_wait(srv.ep, evs, MAX_EVENTS, next_timeout());
		if (n == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		srv.now = now_ms();
		for (int i = 0; i < n; i++) {
			struct handler *h = evs[i].data.ptr;

			h->fn(h, evs[i].events);
		}
		run_timeouts();
		reap_dead();
		if (srv.accept_paused && srv.now >= srv.accept_resume)
			accept_resume();
	}
	return 0;
}
