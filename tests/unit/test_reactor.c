/*
 * test_reactor.c - the worker library's reactor (worker/reactor.c).
 *
 * Connections are one end of a socketpair(2) adopted by the reactor; the
 * test holds the other end, the "peer".  Loops are bounded in time; no
 * test asserts how fast anything happens, only that it happens, and
 * that timers never fire early.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "reactor.h"

#define WAIT_MS 3000 /* bound on any wait for something that must happen */

/* What the callbacks do, and what they saw. */
enum mode {
	M_ECHO,	       /* write back what arrives */
	M_LINES,       /* use complete lines only, echoing each */
	M_SWALLOW,     /* use nothing */
	M_FLOOD,       /* answer each byte with FLOOD bytes */
	M_CLOSE_AFTER, /* echo, then reactor_close() */
	M_SHUT_AFTER,  /* echo, then reactor_shutdown() */
	M_ABORT_AFTER, /* echo, then reactor_abort() */
	M_STOP,	       /* echo, reactor_stop(), and echo again */
};

#define FLOOD 8192

static struct {
	enum mode mode;
	int refuse; /* on_connect returns -1 */
	int connects, datas, timers, closes;
	size_t offered; /* len of the last on_data() */
	char seen[4096];
	size_t nseen;
	struct reactor_conn *last;
} t;

static int on_connect(struct reactor_conn *c)
{
	t.connects++;
	t.last = c;
	return t.refuse ? -1 : 0;
}

static size_t on_data(struct reactor_conn *c, const char *data, size_t len)
{
	static char flood[FLOOD];
	size_t used = len;

	t.datas++;
	t.offered = len;
	t.last = c;
	switch (t.mode) {
	case M_LINES: {
		const char *nl = memchr(data, '\n', len);

		if (nl == NULL)
			return 0;
		used = (size_t)(nl - data) + 1;
		break;
	}
	case M_SWALLOW:
		return 0;
	case M_FLOOD:
		for (size_t i = 0; i < len; i++)
			if (reactor_write(c, flood, sizeof(flood)) < 0)
				break;
		return len;
	default:
		break;
	}
	if (t.nseen + used <= sizeof(t.seen)) {
		memcpy(t.seen + t.nseen, data, used);
		t.nseen += used;
	}
	assert_int_equal(reactor_write(c, data, used), 0);
	if (t.mode == M_CLOSE_AFTER)
		reactor_close(c);
	else if (t.mode == M_SHUT_AFTER)
		reactor_shutdown(c);
	else if (t.mode == M_ABORT_AFTER)
		reactor_abort(c);
	if (t.mode == M_STOP) {
		reactor_stop(reactor_of(c));
		assert_true(reactor_stopping(reactor_of(c)));
		assert_int_equal(reactor_write(c, data, used), 0);
	}
	return used;
}

static void on_timer(struct reactor_conn *c)
{
	(void)c;
	t.timers++;
}

static void on_close(struct reactor_conn *c)
{
	(void)c;
	t.closes++;
}

static struct reactor_config base_config(void)
{
	struct reactor_config cfg = {
	    .on_connect = on_connect,
	    .on_data = on_data,
	    .on_timer = on_timer,
	    .on_close = on_close,
	    .grace_ms = 50,
	    .linger_ms = 300,
	};

	return cfg;
}

static struct reactor *new_reactor(const struct reactor_config *cfg)
{
	struct reactor *r = NULL;

	memset(&t, 0, sizeof(t));
	assert_int_equal(reactor_new(&r, cfg), 0);
	return r;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Step until cond() holds; false if it does not within WAIT_MS. */
static bool step_until(struct reactor *r, bool (*cond)(void))
{
	int64_t end = mono_ms() + WAIT_MS;

	while (!cond()) {
		if (mono_ms() > end)
			return false;
		assert_int_equal(reactor_step(r, 10), 0);
	}
	return true;
}

/* Step for about ms, whatever happens. */
static void step_for(struct reactor *r, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end)
		assert_int_equal(reactor_step(r, 5), 0);
}

/* A connection: the reactor adopts one end; returns the peer's. */
static int connect_pair(struct reactor *r)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	assert_int_equal(reactor_adopt(r, sv[0]), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	return sv[1];
}

static void put(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), strlen(s));
}

/* Read what the peer has now, up to n bytes; -1 EOF, -2 nothing yet. */
static ssize_t get(int fd, char *buf, size_t n)
{
	ssize_t k = recv(fd, buf, n, 0);

	if (k == 0)
		return -1;
	if (k < 0)
		return errno == EAGAIN ? -2 : -1;
	return k;
}

/* Step until the peer can read exactly want, then return. */
static void expect_bytes(struct reactor *r, int fd, const char *want)
{
	size_t n = strlen(want), got = 0;
	int64_t end = mono_ms() + WAIT_MS;
	char buf[256];

	assert_true(n <= sizeof(buf));
	while (got < n) {
		ssize_t k = get(fd, buf + got, n - got);

		assert_true(k != -1);
		if (k > 0)
			got += (size_t)k;
		else
			assert_int_equal(reactor_step(r, 10), 0);
		assert_true(mono_ms() < end);
	}
	assert_memory_equal(buf, want, n);
}

static int peer_fd;

static bool peer_at_eof(void)
{
	char buf[4096];
	ssize_t k;

	while ((k = get(peer_fd, buf, sizeof(buf))) > 0)
		;
	return k == -1;
}

static bool one_close(void)
{
	return t.closes == 1;
}

static bool two_datas(void)
{
	return t.datas >= 2;
}

static bool one_data(void)
{
	return t.datas >= 1;
}

/* ---- buffering ---------------------------------------------------------- */

static void test_echo(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r = new_reactor(&cfg);
	int fd = connect_pair(r);

	(void)state;
	assert_int_equal(t.connects, 1);
	assert_int_equal(reactor_conns(r), 1);
	put(fd, "hello");
	expect_bytes(r, fd, "hello");
	put(fd, "again");
	expect_bytes(r, fd, "again");
	close(fd);
	assert_true(step_until(r, one_close));
	assert_int_equal(reactor_conns(r), 0);
	reactor_free(r);
}

/* What on_data() leaves is offered again with what arrives next. */
static void test_partial_input_kept(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int fd;

	(void)state;
	r = new_reactor(&cfg);
	t.mode = M_LINES;
	fd = connect_pair(r);
	put(fd, "ab");
	assert_true(step_until(r, one_data));
	assert_int_equal(t.offered, 2);
	put(fd, "c\nde");
	expect_bytes(r, fd, "abc\n");
	assert_int_equal(t.offered, 2); /* "de", left after "abc\n" */
	put(fd, "f\ng\nh\n");
	expect_bytes(r, fd, "def\ng\nh\n");
	assert_memory_equal(t.seen, "abc\ndef\ng\nh\n", 12);
	close(fd);
	reactor_free(r);
	assert_int_equal(t.closes, 1); /* reactor_free() closes it */
}

/* Several writes in one callback leave as one stream, in order. */
static void test_writes_coalesce(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	char buf[64];
	int fd;

	(void)state;
	r = new_reactor(&cfg);
	t.mode = M_LINES;
	fd = connect_pair(r);
	put(fd, "1\n2\n3\n");
	peer_fd = fd;
	assert_true(step_until(r, one_data));
	/* One round answered all three lines, sent with one send(2). */
	assert_int_equal(get(fd, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "1\n2\n3\n", 6);
	close(fd);
	reactor_free(r);
}

static void test_write_limits(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	char big[1000] = {0};
	int fd;

	(void)state;
	cfg.out_high = 1000;
	cfg.out_max = 2500;
	r = new_reactor(&cfg);
	t.mode = M_SWALLOW;
	fd = connect_pair(r);
	put(fd, "x");
	assert_true(step_until(r, one_data));
	assert_false(reactor_congested(t.last));
	assert_int_equal(reactor_write(t.last, big, 999), 0);
	assert_false(reactor_congested(t.last));
	assert_int_equal(reactor_write(t.last, big, 1), 0);
	assert_true(reactor_congested(t.last));
	assert_int_equal(reactor_write(t.last, big, 1000), 0);
	assert_int_equal(reactor_pending(t.last), 2000);
	/* Past out_max: refused whole, nothing queued. */
	assert_int_equal(reactor_write(t.last, big, 501), -ENOBUFS);
	assert_int_equal(reactor_pending(t.last), 2000);
	assert_int_equal(reactor_write(t.last, big, 500), 0);
	reactor_close(t.last);
	assert_int_equal(reactor_write(t.last, big, 1), -EPIPE);
	close(fd);
	reactor_free(r);
}

/* ---- backpressure ------------------------------------------------------- */

static struct reactor_conn *flooded;

static bool is_congested(void)
{
	return flooded != NULL && reactor_congested(flooded);
}

static bool is_relieved(void)
{
	return !reactor_congested(flooded);
}

/*
 * A peer that sends but does not read: once its output reaches out_high
 * the connection is neither read nor offered to on_data(), so the
 * peer's sends back up in the kernel; once the peer reads, both resume.
 */
static void test_backpressure(void **state)
{
	struct reactor_config cfg = base_config();
	int sndbuf = 4096, datas, fd;
	struct reactor *r;
	size_t sent = 0;
	char buf[65536];

	(void)state;
	cfg.out_high = 4 * FLOOD;
	cfg.out_max = 64 * FLOOD;
	cfg.in_max = 1024;
	r = new_reactor(&cfg);
	t.mode = M_FLOOD;
	fd = connect_pair(r);
	setsockopt(reactor_fd(t.last), SOL_SOCKET, SO_SNDBUF, &sndbuf,
		   sizeof(sndbuf));
	flooded = t.last;
	put(fd, "abcdefgh");
	assert_true(step_until(r, is_congested));
	datas = t.datas;
	/* Input keeps coming; none of it is read or offered. */
	memset(buf, 'y', sizeof(buf));
	for (;;) {
		ssize_t k = send(fd, buf, 1024, MSG_NOSIGNAL);

		if (k <= 0)
			break; /* the socket pair is full: nobody reads */
		sent += (size_t)k;
		step_for(r, 1);
		assert_true(sent < 16 * 1024 * 1024);
	}
	assert_int_equal(errno, EAGAIN);
	step_for(r, 50);
	assert_int_equal(t.datas, datas);
	assert_true(reactor_congested(flooded));
	assert_true(reactor_pending(flooded) <= cfg.out_max);
	/* The peer reads: output drains below half, reading resumes. */
	peer_fd = fd;
	while (!is_relieved()) {
		while (get(fd, buf, sizeof(buf)) > 0)
			;
		assert_int_equal(reactor_step(r, 10), 0);
	}
	while (get(fd, buf, sizeof(buf)) > 0)
		;
	assert_true(step_until(r, two_datas));
	assert_true(t.datas > datas);
	close(fd);
	flooded = NULL;
	reactor_free(r);
}

/* A full input buffer that on_data() cannot use ends the connection. */
static void test_input_limit(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	char buf[64];

	(void)state;
	cfg.in_max = 64;
	r = new_reactor(&cfg);
	t.mode = M_SWALLOW;
	peer_fd = connect_pair(r);
	memset(buf, 'z', sizeof(buf));
	assert_int_equal(send(peer_fd, buf, 40, 0), 40);
	assert_true(step_until(r, one_data));
	step_for(r, 20);
	assert_int_equal(t.closes, 0); /* not full: waits for more */
	assert_int_equal(send(peer_fd, buf, 40, 0), 40);
	assert_true(step_until(r, peer_at_eof));
	assert_int_equal(t.offered, 64);
	close(peer_fd);
	assert_true(step_until(r, one_close));
	reactor_free(r);
}

/* ---- ends --------------------------------------------------------------- */

static void test_close_sends_then_closes(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;

	(void)state;
	r = new_reactor(&cfg);
	t.mode = M_CLOSE_AFTER;
	peer_fd = connect_pair(r);
	put(peer_fd, "bye");
	expect_bytes(r, peer_fd, "bye");
	assert_true(step_until(r, peer_at_eof));
	assert_int_equal(t.closes, 1);
	close(peer_fd);
	reactor_free(r);
}

static struct reactor *cur;

static bool no_conns(void)
{
	return reactor_conns(cur) == 0;
}

/*
 * shutdown: the peer reads the answer and end of file, may still send
 * (absorbed, no reset), and the connection is closed once the peer
 * closes its side.
 */
static void test_shutdown_lingers(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;

	(void)state;
	cfg.linger_ms = 5000;
	r = new_reactor(&cfg);
	cur = r;
	t.mode = M_SHUT_AFTER;
	peer_fd = connect_pair(r);
	put(peer_fd, "one");
	expect_bytes(r, peer_fd, "one");
	assert_true(step_until(r, peer_at_eof));
	put(peer_fd, "late"); /* absorbed */
	step_for(r, 20);
	assert_int_equal(t.closes, 0);
	assert_int_equal(t.datas, 1);
	shutdown(peer_fd, SHUT_WR);
	assert_true(step_until(r, no_conns));
	assert_int_equal(t.closes, 1);
	close(peer_fd);
	reactor_free(r);
}

/* A peer that never closes is closed after linger_ms. */
static void test_linger_bounded(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int64_t t0;

	(void)state;
	cfg.linger_ms = 100;
	r = new_reactor(&cfg);
	cur = r;
	t.mode = M_SHUT_AFTER;
	peer_fd = connect_pair(r);
	t0 = mono_ms();
	put(peer_fd, "x");
	assert_true(step_until(r, no_conns));
	assert_true(mono_ms() - t0 >= 100);
	close(peer_fd);
	reactor_free(r);
}

static void test_abort_drops_output(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	char buf[16];

	(void)state;
	r = new_reactor(&cfg);
	t.mode = M_ABORT_AFTER;
	peer_fd = connect_pair(r);
	put(peer_fd, "gone");
	assert_true(step_until(r, one_close));
	assert_int_equal(get(peer_fd, buf, sizeof(buf)), -1);
	close(peer_fd);
	reactor_free(r);
}

/* The peer's end of file: what it sent is answered, then closed. */
static void test_peer_eof(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;

	(void)state;
	r = new_reactor(&cfg);
	peer_fd = connect_pair(r);
	put(peer_fd, "last words");
	shutdown(peer_fd, SHUT_WR);
	expect_bytes(r, peer_fd, "last words");
	assert_true(step_until(r, peer_at_eof));
	assert_true(step_until(r, one_close));
	close(peer_fd);
	reactor_free(r);
}

static void test_connect_refused(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int sv[2];

	(void)state;
	r = new_reactor(&cfg);
	t.refuse = 1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(reactor_adopt(r, sv[0]), -ECANCELED);
	assert_int_equal(reactor_conns(r), 0);
	peer_fd = sv[1];
	assert_true(peer_at_eof());
	step_for(r, 10);
	assert_int_equal(t.closes, 0); /* never greeted, never closed */
	close(sv[1]);
	reactor_free(r);
}

/* ---- timers ------------------------------------------------------------- */

static int fired[8], nfired;
static int64_t fired_at[8];

static void timer_fn(struct reactor_timer *tm);

static struct reactor_timer timers[4];
static struct reactor *timer_r;

static void timer_fn(struct reactor_timer *tm)
{
	int i = (int)(tm - timers);

	fired[nfired] = i;
	fired_at[nfired] = mono_ms();
	nfired++;
	if (i == 3) /* cancels timer 2 from within a callback */
		reactor_timer_cancel(timer_r, &timers[2]);
}

static bool two_fired(void)
{
	return nfired >= 2;
}

static bool three_fired(void)
{
	return nfired >= 3;
}

static void timers_reset(struct reactor *r)
{
	timer_r = r;
	nfired = 0;
	for (int i = 0; i < 4; i++)
		reactor_timer_init(&timers[i], timer_fn);
}

/* In deadline order, never early, each once. */
static void test_timer_order(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int64_t t0;

	(void)state;
	t0 = mono_ms(); /* deadlines count from the reactor's clock, later */
	r = new_reactor(&cfg);
	timers_reset(r);
	assert_int_equal(reactor_timer_set(r, &timers[0], 60), 0);
	assert_int_equal(reactor_timer_set(r, &timers[1], 20), 0);
	assert_int_equal(reactor_timer_set(r, &timers[2], 40), 0);
	assert_true(reactor_timer_pending(&timers[0]));
	assert_true(step_until(r, three_fired));
	assert_int_equal(fired[0], 1);
	assert_int_equal(fired[1], 2);
	assert_int_equal(fired[2], 0);
	assert_true(fired_at[0] - t0 >= 20);
	assert_true(fired_at[1] - t0 >= 40);
	assert_true(fired_at[2] - t0 >= 60);
	assert_false(reactor_timer_pending(&timers[0]));
	step_for(r, 30);
	assert_int_equal(nfired, 3);
	reactor_free(r);
}

/* Pushed later: fires once, at the later time; pulled earlier: sooner. */
static void test_timer_reset(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int64_t t0;

	(void)state;
	t0 = mono_ms();
	r = new_reactor(&cfg);
	timers_reset(r);
	assert_int_equal(reactor_timer_set(r, &timers[0], 10), 0);
	assert_int_equal(reactor_timer_set(r, &timers[0], 80), 0);
	assert_int_equal(reactor_timer_set(r, &timers[1], 500), 0);
	assert_int_equal(reactor_timer_set(r, &timers[1], 30), 0);
	assert_true(step_until(r, two_fired));
	assert_int_equal(fired[0], 1);
	assert_int_equal(fired[1], 0);
	assert_true(fired_at[0] - t0 >= 30);
	assert_true(fired_at[1] - t0 >= 80);
	step_for(r, 20);
	assert_int_equal(nfired, 2);
	reactor_free(r);
}

static void test_timer_cancel(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;

	(void)state;
	r = new_reactor(&cfg);
	timers_reset(r);
	assert_int_equal(reactor_timer_set(r, &timers[0], 10), 0);
	assert_int_equal(reactor_timer_set(r, &timers[1], 20), 0);
	reactor_timer_cancel(r, &timers[0]);
	reactor_timer_cancel(r, &timers[0]); /* twice is harmless */
	/* Timer 3 fires first and cancels timer 2. */
	assert_int_equal(reactor_timer_set(r, &timers[3], 5), 0);
	assert_int_equal(reactor_timer_set(r, &timers[2], 30), 0);
	step_for(r, 60);
	assert_int_equal(nfired, 2);
	assert_int_equal(fired[0], 3);
	assert_int_equal(fired[1], 1);
	reactor_free(r);
}

enum { MANY = 200 };
static struct reactor_timer many[MANY];
static int many_ms[MANY], many_fired, many_last_ms;

/* Each fires no earlier than one set to fire before it. */
static void many_fn(struct reactor_timer *tm)
{
	int i = (int)(tm - many);

	assert_true(many_ms[i] >= many_last_ms);
	many_last_ms = many_ms[i];
	many_fired++;
}

static bool all_many_fired(void)
{
	return many_fired == MANY / 2;
}

/* Many timers set, reset and cancelled in random order (the heap). */
static void test_timer_many(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	unsigned seed = 7;

	(void)state;
	r = new_reactor(&cfg);
	many_fired = many_last_ms = 0;
	for (int i = 0; i < MANY; i++) {
		reactor_timer_init(&many[i], many_fn);
		many_ms[i] = (int)(rand_r(&seed) % 100);
		assert_int_equal(reactor_timer_set(r, &many[i], many_ms[i]), 0);
	}
	for (int i = 0; i < MANY; i += 2)
		reactor_timer_cancel(r, &many[i]);
	for (int i = 1; i < MANY; i += 4) {
		many_ms[i] = (int)(rand_r(&seed) % 100); /* earlier or later */
		assert_int_equal(reactor_timer_set(r, &many[i], many_ms[i]), 0);
	}
	for (int i = 1; i < MANY; i += 2)
		assert_true(reactor_timer_pending(&many[i]));
	assert_true(step_until(r, all_many_fired));
	for (int i = 0; i < MANY; i++)
		assert_false(reactor_timer_pending(&many[i]));
	/* Left pending at the end, a timer is simply forgotten. */
	assert_int_equal(reactor_timer_set(r, &many[0], 1000), 0);
	reactor_free(r);
}

static bool conn_timer_fired(void)
{
	return t.timers >= 1;
}

static void test_conn_timeout(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;
	int64_t t0;

	(void)state;
	t0 = mono_ms();
	r = new_reactor(&cfg);
	peer_fd = connect_pair(r);
	reactor_timeout(t.last, 30);
	assert_true(step_until(r, conn_timer_fired));
	assert_true(mono_ms() - t0 >= 30);
	reactor_timeout(t.last, 20);
	reactor_timeout(t.last, -1);
	step_for(r, 40);
	assert_int_equal(t.timers, 1);
	/* A pending timer goes with its connection. */
	reactor_timeout(t.last, 20);
	close(peer_fd);
	assert_true(step_until(r, one_close));
	step_for(r, 40);
	assert_int_equal(t.timers, 1);
	reactor_free(r);
}

/* ---- stop and limits ---------------------------------------------------- */

static int idle_fd, busy_fd;

static bool idle_closed(void)
{
	peer_fd = idle_fd;
	return peer_at_eof();
}

static bool busy_closed(void)
{
	peer_fd = busy_fd;
	return peer_at_eof();
}

/*
 * The graceful stop: an idle connection ends after the grace (input that
 * arrives within it still goes to on_data()); a busy one is left until
 * it is no longer busy.
 */
static void test_stop_idle_and_busy(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor_conn *busy;
	struct reactor *r;
	int fd3;

	(void)state;
	cfg.grace_ms = 100;
	cfg.linger_ms = 10000;
	r = new_reactor(&cfg);
	cur = r;
	idle_fd = connect_pair(r);
	busy_fd = connect_pair(r);
	busy = t.last;
	reactor_busy(busy, true);
	fd3 = connect_pair(r);
	assert_false(reactor_stopping(r));
	reactor_stop(r);
	reactor_stop(r); /* twice is harmless */
	assert_true(reactor_stopping(r));
	put(fd3, "still");
	expect_bytes(r, fd3, "still");
	assert_true(step_until(r, idle_closed));
	peer_fd = fd3;
	assert_true(step_until(r, peer_at_eof));
	close(idle_fd); /* ends their lingering */
	close(fd3);
	step_for(r, 250);
	assert_int_equal(reactor_conns(r), 1);
	assert_false(busy_closed());
	reactor_busy(busy, false);
	assert_true(step_until(r, busy_closed));
	close(busy_fd);
	assert_true(step_until(r, no_conns));
	assert_int_equal(t.closes, 3);
	reactor_free(r);
}

static int clients[3];

static bool two_conns(void)
{
	return reactor_conns(cur) == 2 && t.connects >= 2;
}

static bool three_connects(void)
{
	return t.connects == 3 && reactor_conns(cur) == 2;
}

/*
 * max_conns: at the limit nothing more is accepted, and the connection
 * waits in the listening socket's queue until one closes.
 */
static void test_max_conns(void **state)
{
	struct reactor_config cfg = base_config();
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct reactor *r;
	int lfd;

	(void)state;
	cfg.max_conns = 2;
	r = new_reactor(&cfg);
	cur = r;
	lfd = reactor_listen(r, "127.0.0.1:0");
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	for (int i = 0; i < 3; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(
		    connect(clients[i], (struct sockaddr *)&sin, sizeof(sin)),
		    0);
		put(clients[i], "hi");
	}
	assert_true(step_until(r, two_conns));
	step_for(r, 50);
	assert_int_equal(t.connects, 2);
	assert_int_equal(reactor_conns(r), 2);
	close(clients[0]);
	assert_true(step_until(r, three_connects));
	for (int i = 1; i < 3; i++) {
		fcntl(clients[i], F_SETFL, O_NONBLOCK);
		expect_bytes(r, clients[i], "hi");
		close(clients[i]);
	}
	reactor_free(r);
}

/* With defer_accept, a connection's first bytes go with its accept. */
static void test_defer_accept(void **state)
{
	struct reactor_config cfg = base_config();
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct reactor *r;
	int lfd, fd;

	(void)state;
	cfg.defer_accept = true;
	r = new_reactor(&cfg);
	t.mode = M_CLOSE_AFTER;
	lfd = reactor_listen(r, "127.0.0.1:0");
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	put(fd, "quick");
	assert_true(step_until(r, one_close));
	assert_int_equal(t.connects, 1);
	assert_int_equal(t.datas, 1);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	peer_fd = fd;
	expect_bytes(r, fd, "quick");
	assert_true(peer_at_eof());
	close(fd);
	reactor_free(r);
}

/*
 * A stop asked for from a callback takes effect once it has returned:
 * the callback goes on with the connection meanwhile.
 */
static void test_stop_from_callback(void **state)
{
	struct reactor_config cfg = base_config();
	struct reactor *r;

	(void)state;
	r = new_reactor(&cfg);
	cur = r;
	t.mode = M_STOP;
	peer_fd = connect_pair(r);
	put(peer_fd, "ab");
	expect_bytes(r, peer_fd, "abab");
	assert_true(reactor_stopping(r));
	assert_true(step_until(r, peer_at_eof)); /* after the grace */
	close(peer_fd);
	assert_true(step_until(r, no_conns));
	assert_int_equal(t.closes, 1);
	reactor_free(r);
}

/*
 * In a child, so that the test process keeps its policy: start as
 * policy `from`, make a reactor with sched_batch = batch, and exit with
 * the policy the reactor left.
 */
static int policy_after(int from, bool batch)
{
	struct reactor_config cfg = base_config();
	struct sched_param sp = {.sched_priority = 0};
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct reactor *r = NULL;

		cfg.sched_batch = batch;
		if (sched_setscheduler(0, from, &sp) == -1 ||
		    reactor_new(&r, &cfg) < 0)
			_exit(99);
		_exit(sched_getscheduler(0));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* sched_batch turns SCHED_OTHER into SCHED_BATCH, and nothing else. */
static void test_sched_batch(void **state)
{
	(void)state;
	assert_int_equal(policy_after(SCHED_OTHER, true), SCHED_BATCH);
	assert_int_equal(policy_after(SCHED_OTHER, false), SCHED_OTHER);
	assert_int_equal(policy_after(SCHED_IDLE, true), SCHED_IDLE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_echo),
	    cmocka_unit_test(test_partial_input_kept),
	    cmocka_unit_test(test_writes_coalesce),
	    cmocka_unit_test(test_write_limits),
	    cmocka_unit_test(test_backpressure),
	    cmocka_unit_test(test_input_limit),
	    cmocka_unit_test(test_close_sends_then_closes),
	    cmocka_unit_test(test_shutdown_lingers),
	    cmocka_unit_test(test_linger_bounded),
	    cmocka_unit_test(test_abort_drops_output),
	    cmocka_unit_test(test_peer_eof),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test(test_timer_order),
	    cmocka_unit_test(test_timer_reset),
	    cmocka_unit_test(test_timer_cancel),
	    cmocka_unit_test(test_timer_many),
	    cmocka_unit_test(test_conn_timeout),
	    cmocka_unit_test(test_stop_idle_and_busy),
	    cmocka_unit_test(test_stop_from_callback),
	    cmocka_unit_test(test_max_conns),
	    cmocka_unit_test(test_defer_accept),
	    cmocka_unit_test(test_sched_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
