/*
 * hello.c - rollover-hello, the example HTTP/1.1 worker.
 *
 * GET / answers a fixed message, GET /pid says which worker of which
 * generation answered, GET /sleep?ms=N answers after N ms.  It serves on
 * the sockets rollover passes (or on --listen addresses when run by hand)
 * on the reactor (reactor.h), which does the accepting, the buffering
 * and the graceful stop; this file is HTTP, on top of http.c's parser.
 *
 * Requests may be pipelined: on_data() answers every complete request it
 * is given, in order, until one must wait (a /sleep), ends the connection,
 * or the output backs up.  Every answer but /sleep's is prepared once at
 * start-up, its Date patched in place once a second, so that a request
 * costs a parse and a copy.
 *
 * The stop: once the reactor is stopping, every answer says "Connection:
 * close" and ends its connection.  A connection that is mid-request (a
 * /sleep, a head half received, a body being discarded) is busy, so the
 * reactor's grace does not cut it; an idle one has grace_ms for one more
 * request.  So a client that keeps sending on keep-alive connections
 * gets an answer to every request it sent, then a clean close.
 *
 * Timeouts, on the connection's one timer: a request head must be
 * complete within header_ms of its first byte (so a slowloris client
 * cannot hold a worker), and a connection may stay idle between requests
 * for idle_ms.  /sleep uses the same timer: nothing else runs meanwhile.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "reactor.h"
#include "rollover_worker.h"

#define PROG "rollover-hello"

/* The tests build variants that answer differently. */
#ifndef HELLO_MESSAGE
#define HELLO_MESSAGE "hello from rollover\n"
#endif

#define IN_MAX	     8192 /* request line + header fields, at most */
#define HEADER_MS    10000
#define IDLE_MS	     60000
#define MAX_REQUESTS 1000
#define SLEEP_MAX_MS 60000
#define MAX_LISTEN   64
#define DATE_LEN     29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define TEXT_PLAIN   "text/plain; charset=utf-8"

/* A whole response, made once; its Date is patched in place. */
struct canned {
	char *buf;
	size_t len;	 /* head and body */
	size_t head_len; /* the head alone, for HEAD */
	size_t date_at;	 /* where the Date value is */
};

/* The same response with "Connection: keep-alive" and "close". */
struct answer {
	struct canned keep, close;
};

struct hconn {
	uint64_t discard; /* body bytes still to read and drop */
	unsigned served;  /* requests answered */
	bool in_request;  /* a head has begun: the header timer runs */
	bool sleeping;	  /* a /sleep reply waits on the timer */
	bool sleep_head;  /* ... for a HEAD request */
	bool sleep_keep;  /* ... whose client allows another request */
	bool done;	  /* the last answer is queued */
	long sleep_ms;
};

static struct {
	const char *message;
	long header_ms, idle_ms, grace_ms;
	unsigned max_conns, max_requests;
	bool no_batch; /* --no-batch: keep the scheduling policy */
	struct reactor *r;
	struct answer root, pid, not_found, bad_method, bad_sleep;
	struct canned e400, e431, e501, e505;
	struct canned *all[16]; /* every canned response, for the Date */
	int nall;
	time_t date_sec;
	char date[DATE_LEN + 1];
} hello;

/* ---- small things ------------------------------------------------------- */

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", buf);
	exit(1);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": warning: %s\n", buf);
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
	case 501:
		return "Not Implemented";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Internal Server Error";
	}
}

/* The Date value, re-made when the second changes, and patched in. */
static void date_refresh(void)
{
	time_t t = time(NULL);
	struct tm tm;

	if (t == hello.date_sec || gmtime_r(&t, &tm) == NULL)
		return;
	hello.date_sec = t;
	strftime(hello.date, sizeof(hello.date), "%a, %d %b %Y %H:%M:%S GMT",
		 &tm);
	for (int i = 0; i < hello.nall; i++)
		memcpy(hello.all[i]->buf + hello.all[i]->date_at, hello.date,
		       DATE_LEN);
}

/* ---- responses ---------------------------------------------------------- */

/* The head of a response, into buf; returns its length (< size). */
static size_t head_format(char *buf, size_t size, int status, const char *type,
			  size_t body_len, const char *extra, bool keep,
			  size_t *date_at)
{
	int a = snprintf(buf, size,
			 "HTTP/1.1 %d %s\r\nServer: " PROG "\r\nDate: ", status,
			 status_text(status));
	int b = snprintf(buf + a, size - (size_t)a,
			 "%s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%sConnection: %s\r\n\r\n",
			 hello.date, type, body_len, extra,
			 keep ? "keep-alive" : "close");

	if (date_at != NULL)
		*date_at = (size_t)a;
	return (size_t)a + (size_t)b;
}

static void canned_make(struct canned *cn, int status, const char *type,
			const char *body, const char *extra, bool keep)
{
	size_t blen = strlen(body);
	char head[512];

	cn->head_len = head_format(head, sizeof(head), status, type, blen,
				   extra, keep, &cn->date_at);
	cn->len = cn->head_len + blen;
	cn->buf = malloc(cn->len);
	if (cn->buf == NULL)
		die("out of memory");
	memcpy(cn->buf, head, cn->head_len);
	memcpy(cn->buf + cn->head_len, body, blen);
	hello.all[hello.nall++] = cn;
}

static void answer_make(struct answer *a, int status, const char *type,
			const char *body, const char *extra)
{
	canned_make(&a->keep, status, type, body, extra, true);
	canned_make(&a->close, status, type, body, extra, false);
}

static void canned_setup(void)
{
	static char pid_json[96];
	static char bodies[4][64];
	static const int errors[4] = {400, 431, 501, 505};
	struct canned *ecn[4] = {&hello.e400, &hello.e431, &hello.e501,
				 &hello.e505};

	snprintf(pid_json, sizeof(pid_json),
		 "{\"pid\":%d,\"slot\":%d,\"generation\":%d}\n", (int)getpid(),
		 rw_slot(), rw_generation());
	memset(hello.date, ' ', DATE_LEN);
	answer_make(&hello.root, 200, TEXT_PLAIN, hello.message, "");
	answer_make(&hello.pid, 200, "application/json", pid_json, "");
	answer_make(&hello.not_found, 404, TEXT_PLAIN, "not found\n", "");
	answer_make(&hello.bad_method, 405, TEXT_PLAIN, "method not allowed\n",
		    "Allow: GET, HEAD\r\n");
	answer_make(&hello.bad_sleep, 400, TEXT_PLAIN,
		    "want /sleep?ms=N with N in 0..60000\n", "");
	for (int i = 0; i < 4; i++) {
		snprintf(bodies[i], sizeof(bodies[i]), "%s\n",
			 status_text(errors[i]));
		canned_make(ecn[i], errors[i], TEXT_PLAIN, bodies[i], "",
			    false);
	}
	date_refresh();
}

/*
 * Queue a response.  One that does not keep the connection ends it: by
 * close(2) when the client asked for that and has sent all it meant to;
 * otherwise by a half-close that absorbs a request already on its way.
 */
static void send_canned(struct reactor_conn *c, const struct canned *cn,
			bool head, bool keep, bool client_closes)
{
	struct hconn *h = reactor_data(c);

	if (reactor_write(c, cn->buf, head ? cn->head_len : cn->len) < 0) {
		reactor_abort(c);
		h->done = true;
		return;
	}
	if (keep)
		return;
	h->done = true;
	if (client_closes && h->discard == 0)
		reactor_close(c);
	else
		reactor_shutdown(c);
}

/*
 * Whether to keep the connection after this answer: not if the client
 * does not want to, nor once stopping, nor after max_requests answers.
 * The last is as nginx's keepalive_requests: a client that reconnects
 * lands on whichever worker accepts first, which is an idle one, so
 * long-lived connections do not stay where a burst put them.
 */
static bool keep_after(struct reactor_conn *c, bool client_keep)
{
	struct hconn *h = reactor_data(c);

	return client_keep && !reactor_stopping(hello.r) &&
	       ++h->served < hello.max_requests;
}

static void send_answer(struct reactor_conn *c, const struct answer *a,
			bool head, bool client_keep)
{
	bool keep = keep_after(c, client_keep);

	send_canned(c, keep ? &a->keep : &a->close, head, keep, !client_keep);
}

static void send_error(struct reactor_conn *c, int status)
{
	const struct canned *cn = status == 431	  ? &hello.e431
				  : status == 501 ? &hello.e501
				  : status == 505 ? &hello.e505
						  : &hello.e400;

	send_canned(c, cn, false, false, false);
}

static void sleep_reply(struct reactor_conn *c, struct hconn *h)
{
	bool keep = keep_after(c, h->sleep_keep);
	char body[64], buf[512];
	int blen = snprintf(body, sizeof(body), "slept %ld ms\n", h->sleep_ms);
	size_t hl;

	date_refresh();
	hl = head_format(buf, sizeof(buf), 200, TEXT_PLAIN, (size_t)blen, "",
			 keep, NULL);
	if (!h->sleep_head) {
		memcpy(buf + hl, body, (size_t)blen);
		hl += (size_t)blen;
	}
	h->sleeping = false;
	if (reactor_write(c, buf, hl) < 0) {
		reactor_abort(c);
		h->done = true;
	} else if (!keep) {
		h->done = true;
		if (h->sleep_keep || h->discard > 0)
			reactor_shutdown(c);
		else
			reactor_close(c);
	}
}

/* ---- routes ------------------------------------------------------------- */

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

static void route_sleep(struct reactor_conn *c, struct hconn *h,
			const struct http_request *rq, long ms)
{
	h->sleeping = true;
	h->sleep_head = rq->method == HTTP_HEAD;
	h->sleep_keep = rq->keep_alive;
	h->sleep_ms = ms;
	if (ms == 0)
		sleep_reply(c, h);
	else
		reactor_timeout(c, ms);
}

/* The path of an absolute-form target, "http://host/path?q". */
static const char *absolute_path(const char *t, const char *end)
{
	const char *s = memmem(t, (size_t)(end - t), "://", 3);
	const char *slash = memchr(t, '/', (size_t)(end - t));

	if (s == NULL || (slash != NULL && slash < s))
		return t;
	slash = memchr(s + 3, '/', (size_t)(end - s - 3));
	return slash != NULL ? slash : end;
}

static void route(struct reactor_conn *c, struct hconn *h,
		  const struct http_request *rq)
{
	const char *path = rq->target, *end = rq->target + rq->target_len;
	bool head = rq->method == HTTP_HEAD, get = rq->method != HTTP_OTHER;
	const char *q;
	size_t plen;

	if (path[0] != '/')
		path = absolute_path(path, end);
	q = memchr(path, '?', (size_t)(end - path));
	plen = (size_t)((q != NULL ? q : end) - path);
	if (plen == 0) {
		path = "/"; /* "http://host" */
		plen = 1;
	}

	if (path_is(path, plen, "/") || path_is(path, plen, "/pid")) {
		if (!get)
			send_answer(c, &hello.bad_method, false,
				    rq->keep_alive);
		else
			send_answer(c, plen == 1 ? &hello.root : &hello.pid,
				    head, rq->keep_alive);
	} else if (path_is(path, plen, "/sleep")) {
		long ms = q != NULL ? query_ms(q + 1, end) : -1;

		if (!get)
			send_answer(c, &hello.bad_method, false,
				    rq->keep_alive);
		else if (ms < 0)
			send_answer(c, &hello.bad_sleep, head, rq->keep_alive);
		else
			route_sleep(c, h, rq, ms);
	} else {
		send_answer(c, &hello.not_found, head, rq->keep_alive);
	}
}

/* ---- the reactor's callbacks -------------------------------------------- */

/*
 * After on_data(): the connection's timer and whether it is busy.  A
 * head begun but not complete runs the header timer from its first byte
 * (not restarted by later bytes); between requests, the idle timer.
 */
static void conn_timers(struct reactor_conn *c, struct hconn *h, bool partial)
{
	if (h->done || h->sleeping) {
		reactor_busy(c, !h->done);
		return;
	}
	if (partial && !reactor_peer_closed(c)) {
		if (!h->in_request)
			reactor_timeout(c, hello.header_ms);
		h->in_request = true;
		reactor_busy(c, true);
		return;
	}
	h->in_request = false;
	reactor_timeout(c, hello.idle_ms);
	reactor_busy(c, false);
}

static size_t on_data(struct reactor_conn *c, const char *data, size_t len)
{
	struct hconn *h = reactor_data(c);
	size_t used = 0;

	date_refresh();
	while (used < len && !h->sleeping && !h->done &&
	       !reactor_congested(c)) {
		struct http_request rq;
		long n;

		if (h->discard > 0) {
			size_t k = len - used;

			if (k > h->discard)
				k = (size_t)h->discard;
			used += k;
			h->discard -= k;
			continue;
		}
		n = http_parse(data + used, len - used, IN_MAX, &rq);
		if (n == 0)
			break;
		if (n < 0) {
			send_error(c, (int)-n);
			used = len;
			break;
		}
		used += (size_t)n;
		h->discard = rq.content_length;
		route(c, h, &rq);
	}
	conn_timers(c, h, used < len || h->discard > 0);
	return used;
}

static void on_timer(struct reactor_conn *c)
{
	struct hconn *h = reactor_data(c);

	if (h->sleeping) {
		sleep_reply(c, h);
		conn_timers(c, h, h->discard > 0);
	} else if (!h->in_request && reactor_pending(c) > 0) {
		reactor_abort(c); /* it stopped reading its answers */
	} else {
		reactor_shutdown(c); /* idle, or too slow with its request */
	}
}

/* ---- start-up ----------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " PROG " [--listen ADDR]... [--message TEXT]\n"
	    "                      [--max-connections N] [--header-timeout "
	    "MS]\n"
	    "                      [--idle-timeout MS] [--grace MS]\n"
	    "                      [--max-requests N]\n"
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
	    "  --max-connections N at most N connections at a time (default:\n"
	    "                      the descriptor limit less 16)\n"
	    "  --header-timeout MS a request head must arrive within MS of "
	    "its\n"
	    "                      first byte (default 10000)\n"
	    "  --idle-timeout MS   close a keep-alive connection idle for MS\n"
	    "                      (default 60000)\n"
	    "  --grace MS          on stop, how long an idle connection may\n"
	    "                      still send a request (default 1000)\n"
	    "  --max-requests N    close a connection after N requests\n"
	    "                      (default 1000)\n"
	    "  --no-batch          keep the scheduling policy (default: run\n"
	    "                      as SCHED_BATCH if it is SCHED_OTHER)\n"
	    "  -h, --help          this help\n"
	    "\n"
	    "SIGTERM or SIGINT: stop gracefully, exit 0.  Exit 1 if start-up\n"
	    "fails, 2 on bad usage.\n");
}

/* A decimal number in [min, max], or a usage error. */
static long number_arg(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, PROG ": %s: want a number from %ld to %ld\n",
			opt, min, max);
		exit(2);
	}
	return v;
}

static int parse_args(int argc, char **argv, const char **addrs)
{
	enum {
		OPT_MAX = 256,
		OPT_HEADER,
		OPT_IDLE,
		OPT_GRACE,
		OPT_REQUESTS,
		OPT_NO_BATCH
	};
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"message", required_argument, NULL, 'm'},
	    {"max-connections", required_argument, NULL, OPT_MAX},
	    {"header-timeout", required_argument, NULL, OPT_HEADER},
	    {"idle-timeout", required_argument, NULL, OPT_IDLE},
	    {"grace", required_argument, NULL, OPT_GRACE},
	    {"max-requests", required_argument, NULL, OPT_REQUESTS},
	    {"no-batch", no_argument, NULL, OPT_NO_BATCH},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int n = 0, ch;

	while ((ch = getopt_long(argc, argv, "l:m:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (n == MAX_LISTEN)
				die("too many --listen (at most %d)",
				    MAX_LISTEN);
			addrs[n++] = optarg;
			break;
		case 'm':
			hello.message = optarg;
			break;
		case OPT_MAX:
			hello.max_conns = (unsigned)number_arg(
			    "--max-connections", optarg, 1, 1000000);
			break;
		case OPT_HEADER:
			hello.header_ms =
			    number_arg("--header-timeout", optarg, 1, 3600000);
			break;
		case OPT_IDLE:
			hello.idle_ms =
			    number_arg("--idle-timeout", optarg, 1, 3600000);
			break;
		case OPT_GRACE:
			hello.grace_ms =
			    number_arg("--grace", optarg, 1, 600000);
			break;
		case OPT_REQUESTS:
			hello.max_requests = (unsigned)number_arg(
			    "--max-requests", optarg, 1, 1000000000);
			break;
		case OPT_NO_BATCH:
			hello.no_batch = true;
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
	int n = reactor_inherit(hello.r);

	if (n < 0)
		die("LISTEN_FDS: %s", strerror(-n));
	if (n > 0)
		return;
	if (naddrs == 0)
		die("no listening socket: not socket-activated and no "
		    "--listen");
	for (int i = 0; i < naddrs; i++) {
		int fd = reactor_listen(hello.r, addrs[i]);

		if (fd == -EINVAL)
			die("listen %s: not an address (HOST:PORT, [V6]:PORT, "
			    "unix:PATH)",
			    addrs[i]);
		if (fd < 0)
			die("listen %s: %s", addrs[i], strerror(-fd));
	}
}

int main(int argc, char **argv)
{
	const char *addrs[MAX_LISTEN];
	struct reactor_config cfg = {
	    .on_data = on_data,
	    .on_timer = on_timer,
	    .conn_size = sizeof(struct hconn),
	    .in_max = IN_MAX,
	    .defer_accept = true,
	};
	int naddrs, e;

	hello.message = HELLO_MESSAGE;
	hello.header_ms = HEADER_MS;
	hello.idle_ms = IDLE_MS;
	hello.max_requests = MAX_REQUESTS;
	naddrs = parse_args(argc, argv, addrs);
	cfg.max_conns = hello.max_conns;
	cfg.grace_ms = (int)hello.grace_ms;
	cfg.sched_batch = !hello.no_batch;
	/* First, so that a stop signal during start-up waits. */
	e = reactor_new(&hello.r, &cfg);
	if (e < 0)
		die("reactor: %s", strerror(-e));
	setup_listeners(addrs, naddrs);
	canned_setup();
	e = reactor_ready(hello.r);
	if (e < 0)
		warn("READY=1 to NOTIFY_SOCKET: %s", strerror(-e));
	e = reactor_run(hello.r);
	if (e < 0)
		die("epoll_wait: %s", strerror(-e));
	reactor_free(hello.r);
	return 0;
}
