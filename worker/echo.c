/*
 * echo.c - rollover-echo, the example TCP echo worker.
 *
 * Sends back every byte it receives, on connections that last as long as
 * the client keeps them (or until --idle-timeout, if given).  It shows
 * the reactor with long-lived connections: backpressure (a client that
 * sends without reading is no longer read once its echo backs up) and
 * the graceful stop, which for a stream with no request boundaries is:
 * stop accepting; keep echoing every connection for the grace
 * (--grace MS); then echo what has arrived, send end of file, read and
 * drop whatever the client still sends until it closes (at most 2 s),
 * and close.  A client that reads until end of file thus gets back
 * everything it sent before the end of the grace.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reactor.h"

#define PROG	   "rollover-echo"
#define MAX_LISTEN 64
#define GRACE_MS   1000

static struct {
	long idle_ms; /* 0: no idle timeout */
	long grace_ms;
	unsigned max_conns;
	struct reactor *r;
} echo;

static void die(const char *what, int err)
{
	fprintf(stderr, PROG ": %s: %s\n", what, strerror(err));
	exit(1);
}

static size_t on_data(struct reactor_conn *c, const char *data, size_t len)
{
	/* Delivery stops while congested, so this stays within out_max. */
	if (reactor_write(c, data, len) < 0) {
		reactor_abort(c);
		return len;
	}
	if (echo.idle_ms > 0)
		reactor_timeout(c, echo.idle_ms);
	return len;
}

static int on_connect(struct reactor_conn *c)
{
	if (echo.idle_ms > 0)
		reactor_timeout(c, echo.idle_ms);
	return 0;
}

static void on_timer(struct reactor_conn *c)
{
	reactor_shutdown(c);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " PROG " [--listen ADDR]... [--grace MS] "
	    "[--idle-timeout MS]\n"
	    "                     [--max-connections N]\n"
	    "\n"
	    "A TCP echo example worker for rollover(8).\n"
	    "  -l, --listen ADDR     listen on ADDR when not given sockets "
	    "by\n"
	    "                        LISTEN_FDS; may be repeated\n"
	    "  --grace MS            on stop, keep echoing for MS, then end "
	    "each\n"
	    "                        connection (default %d)\n"
	    "  --idle-timeout MS     end a connection idle for MS (default: "
	    "never)\n"
	    "  --max-connections N   at most N connections at a time\n"
	    "  -h, --help            this help\n",
	    GRACE_MS);
}

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
	enum { OPT_GRACE = 256, OPT_IDLE, OPT_MAX };
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"grace", required_argument, NULL, OPT_GRACE},
	    {"idle-timeout", required_argument, NULL, OPT_IDLE},
	    {"max-connections", required_argument, NULL, OPT_MAX},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int n = 0, ch;

	while ((ch = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (n == MAX_LISTEN) {
				fprintf(stderr, PROG ": too many --listen\n");
				exit(2);
			}
			addrs[n++] = optarg;
			break;
		case OPT_GRACE:
			echo.grace_ms =
			    number_arg("--grace", optarg, 1, 3600000);
			break;
		case OPT_IDLE:
			echo.idle_ms =
			    number_arg("--idle-timeout", optarg, 1, 86400000);
			break;
		case OPT_MAX:
			echo.max_conns = (unsigned)number_arg(
			    "--max-connections", optarg, 1, 1000000);
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
		exit(2);
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *addrs[MAX_LISTEN];
	struct reactor_config cfg = {
	    .on_connect = on_connect,
	    .on_data = on_data,
	    .on_timer = on_timer,
	};
	int naddrs, n, e;

	echo.grace_ms = GRACE_MS;
	naddrs = parse_args(argc, argv, addrs);
	cfg.grace_ms = (int)echo.grace_ms;
	cfg.max_conns = echo.max_conns;
	e = reactor_new(&echo.r, &cfg);
	if (e < 0)
		die("reactor", -e);
	n = reactor_inherit(echo.r);
	if (n < 0)
		die("LISTEN_FDS", -n);
	if (n == 0 && naddrs == 0) {
		fprintf(stderr, PROG ": no listening socket: not "
				     "socket-activated and no --listen\n");
		exit(1);
	}
	for (int i = 0; n == 0 && i < naddrs; i++) {
		e = reactor_listen(echo.r, addrs[i]);
		if (e < 0)
			die(addrs[i], -e);
	}
	e = reactor_ready(echo.r);
	if (e < 0)
		fprintf(stderr, PROG ": warning: READY=1: %s\n", strerror(-e));
	e = reactor_run(echo.r);
	if (e < 0)
		die("epoll_wait", -e);
	reactor_free(echo.r);
	return 0;
}
