/*
 * reactor.c - an epoll reactor for rollover workers; see reactor.h.
 *
 * A connection's life (c->state):
 *
 *	OPEN	reading, on_data(), writing
 *	CLOSING	ended by the application (or an error): sending what is left
 *	LINGER	after reactor_shutdown(): our FIN sent, reading to the peer's
 *	DEAD	closed; the memory stays until the end of the round, so that
 *		an event already fetched for it is recognised and dropped
 *
 * Callbacks and events only change a connection's facts (input, output,
 * state, busy, the peer's end of file) and queue it on r->touched;
 * conn_settle() then derives what follows (deliver input, send, close,
 * the epoll interest) once the callback has returned.  So on_close() is
 * never called from inside another callback on the same connection, and
 * the epoll interest is computed in one place.  r->in_callback counts
 * the application's callbacks under way: nothing is settled, and a stop
 * asked for is not carried out, until they have all returned, so a
 * callback may call any function here without being re-entered.
 *
 * Timers live in one binary min-heap ordered by key.  A pending timer
 * pushed later only records its new deadline (when); when its key comes
 * up it is put back at that deadline.  The heap's capacity is kept at
 * least the number of the reactor's own timers (two per connection
 * allocated, and one) plus the caller's pending ones, so that arming a
 * connection's timer never allocates.  Deadlines are in nanoseconds, so
 * that a timer never fires before its time through rounding.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "reactor.h"
#include "rollover_worker.h"

#define DEFAULT_IN_MAX	  8192
#define DEFAULT_OUT_HIGH  65536
#define DEFAULT_OUT_MAX	  ((size_t)1 << 20)
#define DEFAULT_GRACE_MS  1000
#define DEFAULT_LINGER_MS 2000
#define FD_HEADROOM	  16 /* descriptors kept out of max_conns' default */
#define MAX_LISTENERS	  64
#define ACCEPT_BATCH	  16  /* accepts per wake-up, then the others' turn */
#define ACCEPT_PAUSE_MS	  100 /* after EMFILE and the like */
#define DRAIN_READS	  16  /* reads per event of a lingering connection */
#define MAX_EVENTS	  256
#define OUT_MIN_CAP	  4096
#define OUT_KEEP_CAP	  65536 /* a larger output buffer goes once drained */
#define CONN_CACHE	  64	/* closed connections kept for reuse */
#define NS_PER_MS	  1000000LL

#define container_of(p, type, member)                                          \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* What an epoll event points to. */
enum src_kind { SRC_LISTENER, SRC_CONN, SRC_SIGNAL };

struct source {
	enum src_kind kind;
};

struct link {
	struct link *prev, *next;
};

enum conn_state { C_OPEN, C_CLOSING, C_LINGER, C_DEAD };
enum conn_end { END_CLOSE, END_SHUTDOWN, END_ABORT };

struct reactor_conn {
	struct source src;
	struct reactor *r;
	int fd;
	uint32_t mask;	 /* the interest registered, if registered */
	bool registered; /* in the epoll set */
	bool greeted;	 /* on_connect() kept it: on_close() is due */
	bool busy, peer_eof;
	bool congested; /* output reached out_high, not yet down to half */
	bool stalled;	/* on_data() used nothing of the input as it is */
	bool touched;	/* on r->touched */
	enum conn_state state;
	enum conn_end end;
	struct link all;   /* r->conns; r->dead once closed; r->cache */
	struct link touch; /* r->touched */
	struct reactor_timer timer; /* the application's (on_timer) */
	struct reactor_timer sys;   /* the stop's grace; the end's deadline */
	char *out;
	size_t out_off, out_len, out_cap;
	size_t in_len;
	char *in;   /* in_max bytes, after data */
	void *data; /* conn_size bytes, after this struct */
};

struct listener {
	struct source src;
	int fd;	      /* -1 once closed */
	bool owned;   /* bound here: empty its queue before closing it */
	bool defer;   /* TCP_DEFER_ACCEPT is on: read right after accept */
	bool watched; /* in the epoll set */
};

struct reactor {
	struct reactor_config cfg;
	int ep;
	int sigfd[2];
	struct source sigsrc;
	int64_t now; /* ns */
	bool ready;  /* READY=1 said */
	bool stopping;
	bool stop_todo;	    /* reactor_stop() from a callback: not done yet */
	int in_callback;    /* the application's callbacks under way */
	bool exclusive;	    /* EPOLLEXCLUSIVE works here */
	bool accept_paused; /* out of descriptors a moment ago */
	struct listener ls[MAX_LISTENERS];
	int nls;
	struct link conns, dead, cache, touched;
	unsigned nconns, ncache;
	size_t conn_bytes; /* a connection, its data and its input buffer */
	struct reactor_timer **heap;
	size_t nheap, heapcap;
	size_t internal; /* the reactor's own timers: 2 per connection, 1 */
	struct reactor_timer resume; /* the end of an accept pause */
};

static void conn_settle(struct reactor_conn *c);
static void settle_touched(struct reactor *r);
static void stop_now(struct reactor *r);

/* ---- small things ------------------------------------------------------- */

static int64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
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
 * The analyzer loses track of container_of() in reap() and reports a use
 * after free here; the list is intact.
 */
static void link_remove(struct link *l)
{
	l->prev->next = l->next; // NOLINT(clang-analyzer-unix.Malloc)
	l->next->prev = l->prev;
	link_init(l);
}

static size_t round16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* ---- timers ------------------------------------------------------------- */

static int heap_reserve(struct reactor *r, size_t n)
{
	struct reactor_timer **h;
	size_t cap = r->heapcap ? r->heapcap : 64;

	if (n <= r->heapcap)
		return 0;
	while (cap < n)
		cap *= 2;
	/* An array of pointers, as meant. */
	h = realloc(r->heap,
		    cap * sizeof(*h)); // NOLINT(bugprone-sizeof-expression)
	if (h == NULL)
		return -ENOMEM;
	r->heap = h;
	r->heapcap = cap;
	return 0;
}

static void heap_place(struct reactor *r, size_t i, struct reactor_timer *t)
{
	r->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct reactor *r, size_t i)
{
	struct reactor_timer *t = r->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (r->heap[p]->key <= t->key)
			break;
		heap_place(r, i, r->heap[p]);
		i = p;
	}
	heap_place(r, i, t);
}

static void heap_down(struct reactor *r, size_t i)
{
	struct reactor_timer *t = r->heap[i];

	for (;;) {
		size_t k = 2 * i + 1;

		if (k >= r->nheap)
			break;
		if (k + 1 < r->nheap && r->heap[k + 1]->key < r->heap[k]->key)
			k++;
		if (t->key <= r->heap[k]->key)
			break;
		heap_place(r, i, r->heap[k]);
		i = k;
	}
	heap_place(r, i, t);
}

static void heap_remove(struct reactor *r, struct reactor_timer *t)
{
	size_t i = t->slot - 1;
	struct reactor_timer *last = r->heap[--r->nheap];

	t->slot = 0;
	if (last == t)
		return;
	heap_place(r, i, last);
	if (i > 0 && r->heap[(i - 1) / 2]->key > last->key)
		heap_up(r, i);
	else
		heap_down(r, i);
}

/* Arm t, whose heap slot is reserved, to fire ms from now. */
static void timer_arm(struct reactor *r, struct reactor_timer *t, int64_t ms)
{
	int64_t when = r->now + (ms > 0 ? ms : 0) * NS_PER_MS;

	t->when = when;
	if (t->slot != 0) {
		if (when >= t->key)
			return; /* put back at its deadline when the key is due */
		t->key = when;
		heap_up(r, t->slot - 1);
		return;
	}
	t->key = when;
	heap_place(r, r->nheap++, t);
	heap_up(r, r->nheap - 1);
}

static void timer_disarm(struct reactor *r, struct reactor_timer *t)
{
	if (t->slot != 0)
		heap_remove(r, t);
}

void reactor_timer_init(struct reactor_timer *t,
			void (*fn)(struct reactor_timer *t))
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
}

int reactor_timer_set(struct reactor *r, struct reactor_timer *t, int64_t ms)
{
	if (t->slot == 0) {
		/* nheap counts the caller's pending timers, and more. */
		int e = heap_reserve(r, r->internal + r->nheap + 1);

		if (e < 0)
			return e;
	}
	timer_arm(r, t, ms);
	return 0;
}

void reactor_timer_cancel(struct reactor *r, struct reactor_timer *t)
{
	timer_disarm(r, t);
}

bool reactor_timer_pending(const struct reactor_timer *t)
{
	return t->slot != 0;
}

/*
 * Fire what is due, in deadline order: a timer pushed later is first put
 * back at its deadline, even if that is due too.  The loop is bounded (a
 * timer is looked at at most twice), so a timer that re-arms itself at
 * 0 ms runs in the next round rather than spinning here.
 */
static void run_timers(struct reactor *r)
{
	for (size_t n = 2 * r->nheap; n > 0 && r->nheap > 0; n--) {
		struct reactor_timer *t = r->heap[0];

		if (t->key > r->now)
			break;
		if (t->when != t->key) {
			t->key = t->when; /* pushed later meanwhile */
			heap_down(r, 0);
			continue;
		}
		heap_remove(r, t);
		r->in_callback++;
		t->fn(t);
		r->in_callback--;
		settle_touched(r);
	}
}

/* epoll_wait's timeout: timeout_ms or the first deadline, rounded up. */
static int wait_ms(const struct reactor *r, int timeout_ms)
{
	int64_t d;

	if (r->nheap == 0)
		return timeout_ms;
	d = r->heap[0]->key - r->now;
	d = d <= 0 ? 0 : (d + NS_PER_MS - 1) / NS_PER_MS;
	if (d > INT_MAX)
		d = INT_MAX;
	return timeout_ms >= 0 && timeout_ms < d ? timeout_ms : (int)d;
}

/* ---- connections: state ------------------------------------------------- */

static void touch(struct reactor_conn *c)
{
	c->stalled = false;
	if (!c->touched) {
		c->touched = true;
		link_append(&c->r->touched, &c->touch);
	}
}

/*
 * Settle every connection touched, including those touched meanwhile;
 * and carry out a stop asked for from a callback.  Only once no callback
 * is under way: this is where the loop comes back from the application.
 */
static void settle_touched(struct reactor *r)
{
	if (r->in_callback > 0)
		return;
	for (;;) {
		struct reactor_conn *c;

		if (r->stop_todo) {
			r->stop_todo = false;
			stop_now(r);
		}
		if (link_empty(&r->touched))
			return;
		c = container_of(r->touched.next, struct reactor_conn, touch);
		link_remove(&c->touch);
		c->touched = false;
		conn_settle(c);
	}
}

static size_t out_pending(const struct reactor_conn *c)
{
	return c->out_len - c->out_off;
}

static bool accepting(const struct reactor *r)
{
	return !r->stopping && !r->accept_paused &&
	       r->nconns < r->cfg.max_conns;
}

static void listeners_update(struct reactor *r);

/* The end: on_close(), close(2), and onto r->dead. */
static void conn_kill(struct reactor_conn *c)
{
	struct reactor *r = c->r;
	bool was_full = r->nconns >= r->cfg.max_conns;

	if (c->state == C_DEAD)
		return;
	timer_disarm(r, &c->timer);
	timer_disarm(r, &c->sys);
	if (c->greeted && r->cfg.on_close != NULL) {
		r->in_callback++;
		r->cfg.on_close(c);
		r->in_callback--;
	}
	close(c->fd);
	c->fd = -1;
	c->state = C_DEAD;
	if (c->touched) {
		link_remove(&c->touch);
		c->touched = false;
	}
	link_remove(&c->all);
	link_append(&r->dead, &c->all);
	r->nconns--;
	if (was_full)
		listeners_update(r);
}

/* Begin the end; an abort overrides a gentler end already begun. */
static void conn_end(struct reactor_conn *c, enum conn_end end)
{
	struct reactor *r = c->r;

	if (c->state == C_DEAD)
		return;
	if (c->state == C_OPEN) {
		c->state = C_CLOSING;
		c->end = end;
		timer_disarm(r, &c->timer);
		timer_disarm(r, &c->sys);
		timer_arm(r, &c->sys, r->cfg.linger_ms);
	} else if (end == END_ABORT) {
		c->state = C_CLOSING;
		c->end = END_ABORT;
	}
	touch(c);
}

/* ---- connections: input and output -------------------------------------- */

/* One read into the input buffer; the end of file and errors are noted. */
static void conn_read(struct reactor_conn *c)
{
	size_t room = c->r->cfg.in_max - c->in_len;
	ssize_t n;

	if (room == 0 || c->peer_eof)
		return;
	n = recv(c->fd, c->in + c->in_len, room, 0);
	if (n > 0)
		c->in_len += (size_t)n;
	else if (n == 0)
		c->peer_eof = true;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		conn_end(c, END_ABORT);
}

/* Read and drop: 1 at the peer's end of file or an error, else 0. */
static int conn_drain(struct reactor_conn *c)
{
	for (int i = 0; i < DRAIN_READS; i++) {
		ssize_t n = recv(c->fd, c->in, c->r->cfg.in_max, 0);

		if (n > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return 1;
	}
	return 0;
}

/*
 * One send(2) of the pending output: a short count means the socket is
 * full, and another call would only say EAGAIN.  Returns -1 if that
 * killed the connection.
 */
static int conn_flush(struct reactor_conn *c)
{
	size_t n = out_pending(c);
	ssize_t w;

	if (n == 0)
		return 0;
	w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		conn_kill(c);
		return -1;
	}
	c->out_off += (size_t)w;
	if (c->out_off < c->out_len)
		return 0;
	c->out_off = c->out_len = 0;
	if (c->out_cap > OUT_KEEP_CAP) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return 0;
}

/* Out of congestion once the output is down to half of out_high. */
static bool conn_relieved(struct reactor_conn *c)
{
	if (!c->congested || out_pending(c) > c->r->cfg.out_high / 2)
		return false;
	c->congested = false;
	return true;
}

/* Offer the input to on_data() until it uses none or may not be called. */
static void conn_deliver(struct reactor_conn *c)
{
	struct reactor *r = c->r;

	while (c->in_len > 0 && c->state == C_OPEN && !c->congested) {
		size_t n = c->in_len;

		if (r->cfg.on_data != NULL) {
			r->in_callback++;
			n = r->cfg.on_data(c, c->in, c->in_len);
			r->in_callback--;
		}
		if (n == 0) {
			c->stalled = true;
			return;
		}
		if (n >= c->in_len) {
			c->in_len = 0;
			return;
		}
		memmove(c->in, c->in + n, c->in_len - n);
		c->in_len -= n;
	}
}

static void conn_set_mask(struct reactor_conn *c, uint32_t mask)
{
	struct epoll_event ev = {.events = mask, .data.ptr = &c->src};
	int op = c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (c->registered ? mask == c->mask : mask == 0)
		return;
	if (epoll_ctl(c->r->ep, op, c->fd, &ev) == -1) {
		conn_kill(c);
		return;
	}
	c->registered = true;
	c->mask = mask;
}

static void conn_settle_open(struct reactor_conn *c)
{
	const struct reactor_config *cfg = &c->r->cfg;
	uint32_t mask = 0;

	do {
		if (!c->stalled)
			conn_deliver(c);
		if (c->state != C_OPEN)
			return; /* ended by the application: touched again */
		if (conn_flush(c) < 0)
			return;
	} while (conn_relieved(c));

	if (!c->busy && out_pending(c) == 0 && (c->in_len == 0 || c->stalled)) {
		if (c->peer_eof) {
			conn_kill(c); /* the peer is done, and so are we */
			return;
		}
		if (c->in_len == cfg->in_max) {
			conn_end(c, END_SHUTDOWN); /* input limit reached */
			return;
		}
	}
	if (!c->peer_eof && c->in_len < cfg->in_max && !c->congested)
		mask |= EPOLLIN;
	if (out_pending(c) > 0)
		mask |= EPOLLOUT;
	conn_set_mask(c, mask);
}

/* Send the rest, then close, or half-close and linger. */
static void conn_settle_closing(struct reactor_conn *c)
{
	if (c->end == END_ABORT) {
		conn_kill(c);
		return;
	}
	if (conn_flush(c) < 0)
		return;
	if (out_pending(c) > 0) {
		conn_set_mask(c, EPOLLOUT);
		return;
	}
	if (c->end == END_CLOSE || c->peer_eof) {
		conn_kill(c);
		return;
	}
	if (shutdown(c->fd, SHUT_WR) == -1 || conn_drain(c) != 0) {
		conn_kill(c);
		return;
	}
	c->state = C_LINGER;
	conn_set_mask(c, EPOLLIN);
}

static void conn_settle(struct reactor_conn *c)
{
	if (c->state == C_OPEN)
		conn_settle_open(c);
	else if (c->state == C_CLOSING)
		conn_settle_closing(c);
}

static void conn_event(struct reactor_conn *c, uint32_t events)
{
	switch (c->state) {
	case C_OPEN:
		if (events & (EPOLLERR | EPOLLHUP)) {
			conn_end(c, END_ABORT); /* reset: no one to answer */
			return;
		}
		if (events & EPOLLIN)
			conn_read(c);
		touch(c);
		break;
	case C_CLOSING:
		if (events & (EPOLLERR | EPOLLHUP))
			conn_end(c, END_ABORT);
		else
			touch(c);
		break;
	case C_LINGER:
		if ((events & (EPOLLERR | EPOLLHUP)) || conn_drain(c) != 0)
			conn_kill(c);
		break;
	case C_DEAD:
	default:
		break;
	}
}

/* The application's timer. */
static void conn_timer_fired(struct reactor_timer *t)
{
	struct reactor_conn *c = container_of(t, struct reactor_conn, timer);

	if (c->state == C_OPEN && c->r->cfg.on_timer != NULL) {
		c->r->in_callback++;
		c->r->cfg.on_timer(c);
		c->r->in_callback--;
	}
	touch(c);
}

/*
 * The graceful stop's grace (OPEN), or the end's deadline (otherwise).
 * At the end of the grace, input that arrived meanwhile is still read
 * and delivered: only a connection that had nothing to say is ended.
 */
static void conn_sys_fired(struct reactor_timer *t)
{
	struct reactor_conn *c = container_of(t, struct reactor_conn, sys);
	struct reactor *r = c->r;

	if (c->state != C_OPEN) {
		conn_kill(c);
		return;
	}
	if (!c->busy) {
		conn_read(c);
		c->stalled = false;
		conn_deliver(c);
	}
	if (c->state == C_OPEN && c->busy)
		timer_arm(r, &c->sys, r->cfg.grace_ms);
	else
		conn_end(c, END_SHUTDOWN);
	touch(c);
}

/* ---- connections: birth and reuse --------------------------------------- */

static struct reactor_conn *conn_alloc(struct reactor *r)
{
	struct reactor_conn *c;
	size_t head = round16(sizeof(*c));

	if (!link_empty(&r->cache)) {
		c = container_of(r->cache.next, struct reactor_conn, all);
		link_remove(&c->all);
		r->ncache--;
	} else {
		if (heap_reserve(r, r->internal + 2 + r->nheap) < 0)
			return NULL;
		c = malloc(r->conn_bytes);
		if (c == NULL)
			return NULL;
		r->internal += 2;
		c->out = NULL;
		c->out_cap = 0;
		link_init(&c->all);
	}
	c->src.kind = SRC_CONN;
	c->r = r;
	c->fd = -1;
	c->mask = 0;
	c->registered = c->greeted = c->busy = c->peer_eof = false;
	c->congested = c->stalled = c->touched = false;
	c->state = C_OPEN;
	c->end = END_CLOSE;
	link_init(&c->touch);
	reactor_timer_init(&c->timer, conn_timer_fired);
	reactor_timer_init(&c->sys, conn_sys_fired);
	c->out_off = c->out_len = 0;
	c->in_len = 0;
	c->data = (char *)c + head;
	c->in = (char *)c->data + round16(r->cfg.conn_size);
	memset(c->data, 0, r->cfg.conn_size);
	return c;
}

/* Closed connections: a few kept for the next ones, the rest freed. */
static void reap(struct reactor *r)
{
	while (!link_empty(&r->dead)) {
		struct reactor_conn *c =
		    container_of(r->dead.next, struct reactor_conn, all);

		link_remove(&c->all);
		if (r->ncache < CONN_CACHE) {
			link_append(&r->cache, &c->all);
			r->ncache++;
			continue;
		}
		free(c->out);
		free(c);
		r->internal -= 2;
	}
}

/*
 * A new connection on fd.  With read_now (TCP_DEFER_ACCEPT: its first
 * bytes are there) it is read at once; it joins the epoll set only if it
 * is still open once settled.  Returns NULL if it could not be
 * allocated (fd left open) or on_connect() refused it (fd closed).
 */
static struct reactor_conn *conn_open(struct reactor *r, int fd, bool read_now,
				      int *err)
{
	struct reactor_conn *c = conn_alloc(r);
	bool refused = false;

	if (c == NULL) {
		*err = -ENOMEM;
		return NULL;
	}
	c->fd = fd;
	link_append(&r->conns, &c->all);
	r->nconns++;
	if (r->cfg.on_connect != NULL) {
		r->in_callback++;
		refused = r->cfg.on_connect(c) < 0;
		r->in_callback--;
	}
	if (refused) {
		close(fd);
		c->fd = -1;
		c->state = C_DEAD;
		link_remove(&c->all);
		link_append(&r->dead, &c->all);
		r->nconns--;
		*err = -ECANCELED;
		return NULL;
	}
	c->greeted = true;
	if (r->stopping)
		timer_arm(r, &c->sys, r->cfg.grace_ms);
	if (r->nconns >= r->cfg.max_conns)
		listeners_update(r);
	if (read_now)
		conn_read(c);
	touch(c);
	return c;
}

int reactor_adopt(struct reactor *r, int fd)
{
	int flags = fcntl(fd, F_GETFL), err = 0;

	if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		return -errno;
	if (conn_open(r, fd, false, &err) == NULL)
		return err;
	settle_touched(r);
	return 0;
}

/* ---- listeners ---------------------------------------------------------- */

static int listener_watch(struct reactor *r, struct listener *l, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->src};

	if (l->fd < 0 || on == l->watched)
		return 0;
	if (!on) {
		epoll_ctl(r->ep, EPOLL_CTL_DEL, l->fd, NULL);
		l->watched = false;
		return 0;
	}
	if (r->exclusive) {
		ev.events |= EPOLLEXCLUSIVE;
		if (epoll_ctl(r->ep, EPOLL_CTL_ADD, l->fd, &ev) == 0) {
			l->watched = true;
			return 0;
		}
		if (errno != EINVAL)
			return -errno;
		r->exclusive = false; /* a kernel before 4.5 */
		ev.events = EPOLLIN;
	}
	if (epoll_ctl(r->ep, EPOLL_CTL_ADD, l->fd, &ev) == -1)
		return -errno;
	l->watched = true;
	return 0;
}

static void listeners_update(struct reactor *r)
{
	bool on = accepting(r);

	for (int i = 0; i < r->nls; i++)
		listener_watch(r, &r->ls[i], on);
}

/*
 * To the back of the socket's wait queue: EPOLLEXCLUSIVE wakes the first
 * waiter in it, so the next connection goes to another worker.
 */
static void listener_rotate(struct reactor *r, struct listener *l)
{
	if (!r->exclusive || !l->watched)
		return;
	listener_watch(r, l, false);
	listener_watch(r, l, true);
}

static void resume_fired(struct reactor_timer *t)
{
	struct reactor *r = container_of(t, struct reactor, resume);

	r->accept_paused = false;
	listeners_update(r);
}

static void accept_pause(struct reactor *r)
{
	r->accept_paused = true;
	listeners_update(r);
	timer_arm(r, &r->resume, ACCEPT_PAUSE_MS);
}

/* 1 accepted, 0 nothing queued (or paused), -1 try again. */
static int listener_accept_one(struct reactor *r, struct listener *l,
			       bool *kept)
{
	int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct reactor_conn *c;
	int err;

	if (fd == -1) {
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return 0;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			accept_pause(r);
			return 0;
		default:
			return -1; /* ECONNABORTED, EINTR, a network error */
		}
	}
	c = conn_open(r, fd, l->defer, &err);
	if (c == NULL) {
		if (err == -ENOMEM) {
			close(fd);
			accept_pause(r);
			return 0;
		}
		return 1;
	}
	settle_touched(r);
	*kept = c->state != C_DEAD;
	return 1;
}

/*
 * Accept a few.  A connection still open after its first read rotates
 * the listener and ends the batch (see reactor.h, Accepting); one already
 * answered and closed does neither.
 */
static void listener_accept(struct reactor *r, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		bool kept = false;
		int n;

		if (l->fd < 0 || !accepting(r))
			return;
		n = listener_accept_one(r, l, &kept);
		if (n == 0)
			return;
		if (kept) {
			listener_rotate(r, l);
			return;
		}
	}
}

int reactor_add_listener(struct reactor *r, int fd, bool owned)
{
	struct listener *l = &r->ls[r->nls];
	int on = 0, family = 0, one = 1, defer, flags, e;
	socklen_t len = sizeof(on);

	if (r->nls == MAX_LISTENERS)
		return -ENOSPC;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1)
		return -errno;
	if (!on)
		return -EINVAL;
	len = sizeof(family);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) == -1)
		return -errno;
	flags = fcntl(fd, F_GETFL);
	if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		return -errno;
	l->src.kind = SRC_LISTENER;
	l->fd = fd;
	l->owned = owned;
	l->defer = false;
	l->watched = false;
	if (family == AF_INET || family == AF_INET6) {
		/* Set either way: the socket may come from another program. */
		defer = r->cfg.defer_accept ? 1 : 0;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		l->defer = setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer,
				      sizeof(defer)) == 0 &&
			   defer;
	}
	e = listener_watch(r, l, accepting(r));
	if (e < 0)
		return e;
	r->nls++;
	return 0;
}

int reactor_inherit(struct reactor *r)
{
	int n = rw_listen_fds();

	for (int i = 0; i < n; i++) {
		int e = reactor_add_listener(r, RW_LISTEN_FDS_START + i, false);

		if (e < 0)
			return e;
	}
	return n;
}

int reactor_listen(struct reactor *r, const char *addr)
{
	int fd = rw_listen_fallback(addr), e;

	if (fd < 0)
		return fd;
	e = reactor_add_listener(r, fd, true);
	if (e < 0) {
		close(fd);
		return e;
	}
	return fd;
}

/* ---- the stop ----------------------------------------------------------- */

/* A socket only we hold: what is queued on it is ours to serve. */
static void listener_empty(struct reactor *r, struct listener *l)
{
	bool kept;

	while (r->nconns < r->cfg.max_conns) {
		int n = listener_accept_one(r, l, &kept);

		if (n == 0)
			break;
	}
}

void reactor_stop(struct reactor *r)
{
	if (r->stopping)
		return;
	r->stopping = true;
	if (r->in_callback > 0)
		r->stop_todo = true; /* when the callback has returned */
	else
		stop_now(r);
}

static void stop_now(struct reactor *r)
{
	struct link *l;

	for (int i = 0; i < r->nls; i++) {
		struct listener *ls = &r->ls[i];

		if (ls->fd < 0)
			continue;
		if (ls->owned)
			listener_empty(r, ls);
		/*
		 * Out of the epoll set first: closing our descriptor alone
		 * would leave it there while others hold the socket, and it
		 * would keep taking exclusive wake-ups from them.
		 */
		listener_watch(r, ls, false);
		close(ls->fd);
		ls->fd = -1;
	}
	rw_notify("STOPPING=1");
	for (l = r->conns.next; l != &r->conns; l = l->next) {
		struct reactor_conn *c =
		    container_of(l, struct reactor_conn, all);

		if (c->state == C_OPEN)
			timer_arm(r, &c->sys, r->cfg.grace_ms);
	}
}

bool reactor_stopping(const struct reactor *r)
{
	return r->stopping;
}

static void signal_event(struct reactor *r)
{
	for (int i = 0; i < 2; i++)
		if (r->sigfd[i] >= 0 && rw_stop_read(r->sigfd[i]) > 0)
			reactor_stop(r);
}

/* ---- the loop ----------------------------------------------------------- */

static void dispatch(struct reactor *r, const struct epoll_event *ev)
{
	struct source *s = ev->data.ptr;

	switch (s->kind) {
	case SRC_LISTENER: {
		struct listener *l = container_of(s, struct listener, src);

		if (l->watched)
			listener_accept(r, l);
		break;
	}
	case SRC_CONN:
		conn_event(container_of(s, struct reactor_conn, src),
			   ev->events);
		break;
	case SRC_SIGNAL:
	default:
		signal_event(r);
		break;
	}
	settle_touched(r);
}

int reactor_step(struct reactor *r, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n;

	r->now = clock_ns();
	n = epoll_wait(r->ep, evs, MAX_EVENTS, wait_ms(r, timeout_ms));
	if (n == -1 && errno != EINTR)
		return -errno;
	r->now = clock_ns();
	for (int i = 0; i < n; i++)
		dispatch(r, &evs[i]);
	run_timers(r);
	reap(r);
	return 0;
}

int reactor_ready(struct reactor *r)
{
	if (r->ready)
		return 0;
	r->ready = true;
	return rw_notify("READY=1");
}

int reactor_run(struct reactor *r)
{
	reactor_ready(r);
	while (!r->stopping || r->nconns > 0) {
		int e = reactor_step(r, -1);

		if (e < 0)
			return e;
	}
	return 0;
}

/* ---- making and freeing ------------------------------------------------- */

static void config_defaults(struct reactor_config *cfg)
{
	struct rlimit rl;

	if (cfg->max_conns == 0) {
		cfg->max_conns = 1024 - FD_HEADROOM;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur > (rlim_t)FD_HEADROOM * 2)
			cfg->max_conns =
			    rl.rlim_cur > UINT_MAX
				? UINT_MAX - FD_HEADROOM
				: (unsigned)rl.rlim_cur - FD_HEADROOM;
	}
	if (cfg->in_max == 0)
		cfg->in_max = DEFAULT_IN_MAX;
	if (cfg->out_high == 0)
		cfg->out_high = DEFAULT_OUT_HIGH;
	if (cfg->out_max == 0)
		cfg->out_max = DEFAULT_OUT_MAX;
	if (cfg->out_max < cfg->out_high)
		cfg->out_max = cfg->out_high;
	if (cfg->grace_ms <= 0)
		cfg->grace_ms = DEFAULT_GRACE_MS;
	if (cfg->linger_ms <= 0)
		cfg->linger_ms = DEFAULT_LINGER_MS;
}

/*
 * A throughput server's policy; see sched_batch in reactor.h.  Measured
 * on 2 CPUs with wrk on the same machine: a woken worker that preempts
 * wrk answers one request per wake-up; one that waits answers a round
 * of them, with about a tenth of the context switches.
 */
static void sched_batch(void)
{
	struct sched_param sp = {.sched_priority = 0};

	if (sched_getscheduler(0) == SCHED_OTHER)
		(void)sched_setscheduler(0, SCHED_BATCH, &sp);
}

static int watch_signals(struct reactor *r)
{
	static const int sigs[2] = {SIGTERM, SIGINT};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &r->sigsrc};

	r->sigsrc.kind = SRC_SIGNAL;
	for (int i = 0; i < 2; i++) {
		r->sigfd[i] = rw_stop_fd(sigs[i]);
		if (r->sigfd[i] < 0)
			return r->sigfd[i];
		if (epoll_ctl(r->ep, EPOLL_CTL_ADD, r->sigfd[i], &ev) == -1)
			return -errno;
	}
	return 0;
}

int reactor_new(struct reactor **rp, const struct reactor_config *cfg)
{
	struct reactor *r = calloc(1, sizeof(*r));
	int e;

	if (r == NULL)
		return -ENOMEM;
	r->cfg = *cfg;
	config_defaults(&r->cfg);
	if (r->cfg.sched_batch)
		sched_batch();
	r->sigfd[0] = r->sigfd[1] = -1;
	r->exclusive = true;
	link_init(&r->conns);
	link_init(&r->dead);
	link_init(&r->cache);
	link_init(&r->touched);
	reactor_timer_init(&r->resume, resume_fired);
	r->conn_bytes = round16(sizeof(struct reactor_conn)) +
			round16(r->cfg.conn_size) + r->cfg.in_max;
	r->now = clock_ns();
	r->ep = epoll_create1(EPOLL_CLOEXEC);
	if (r->ep == -1) {
		e = -errno;
		free(r);
		return e;
	}
	e = heap_reserve(r, 1);
	if (e == 0)
		e = watch_signals(r);
	if (e < 0) {
		reactor_free(r);
		return e;
	}
	r->internal = 1; /* the accept pause's timer */
	*rp = r;
	return 0;
}

static void free_conns(struct link *list)
{
	while (!link_empty(list)) {
		struct reactor_conn *c =
		    container_of(list->next, struct reactor_conn, all);

		link_remove(&c->all);
		free(c->out);
		free(c);
	}
}

void reactor_free(struct reactor *r)
{
	if (r == NULL)
		return;
	while (!link_empty(&r->conns))
		conn_kill(
		    container_of(r->conns.next, struct reactor_conn, all));
	for (int i = 0; i < r->nls; i++)
		if (r->ls[i].fd >= 0)
			close(r->ls[i].fd);
	for (int i = 0; i < 2; i++)
		if (r->sigfd[i] >= 0)
			close(r->sigfd[i]);
	close(r->ep);
	free_conns(&r->dead);
	free_conns(&r->cache);
	free(r->heap);
	free(r);
}

/* ---- small accessors ---------------------------------------------------- */

unsigned reactor_conns(const struct reactor *r)
{
	return r->nconns;
}

int64_t reactor_now(const struct reactor *r)
{
	return r->now / NS_PER_MS;
}

void *reactor_data(struct reactor_conn *c)
{
	return c->data;
}

struct reactor *reactor_of(const struct reactor_conn *c)
{
	return c->r;
}

int reactor_fd(const struct reactor_conn *c)
{
	return c->fd;
}

size_t reactor_pending(const struct reactor_conn *c)
{
	return out_pending(c);
}

bool reactor_congested(const struct reactor_conn *c)
{
	return c->congested;
}

bool reactor_peer_closed(const struct reactor_conn *c)
{
	return c->peer_eof;
}

/* ---- connections: the application's side ------------------------------- */

static int out_room(struct reactor_conn *c, size_t n)
{
	size_t pending = out_pending(c), cap;
	char *o;

	if (c->out_len + n <= c->out_cap)
		return 0;
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, pending);
		c->out_off = 0;
		c->out_len = pending;
		if (pending + n <= c->out_cap)
			return 0;
	}
	cap = c->out_cap ? c->out_cap : OUT_MIN_CAP;
	while (cap < pending + n)
		cap *= 2;
	o = realloc(c->out, cap);
	if (o == NULL)
		return -ENOMEM;
	c->out = o;
	c->out_cap = cap;
	return 0;
}

int reactor_write(struct reactor_conn *c, const void *p, size_t n)
{
	const struct reactor_config *cfg = &c->r->cfg;
	int e;

	if (c->state != C_OPEN)
		return -EPIPE;
	if (n > cfg->out_max - out_pending(c))
		return -ENOBUFS;
	e = out_room(c, n);
	if (e < 0)
		return e;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	if (out_pending(c) >= cfg->out_high)
		c->congested = true;
	touch(c);
	return 0;
}

void reactor_busy(struct reactor_conn *c, bool busy)
{
	if (c->busy == busy)
		return;
	c->busy = busy;
	touch(c);
}

void reactor_timeout(struct reactor_conn *c, int64_t ms)
{
	if (c->state != C_OPEN)
		return;
	if (ms < 0)
		timer_disarm(c->r, &c->timer);
	else
		timer_arm(c->r, &c->timer, ms);
}

void reactor_close(struct reactor_conn *c)
{
	conn_end(c, END_CLOSE);
}

void reactor_shutdown(struct reactor_conn *c)
{
	conn_end(c, END_SHUTDOWN);
}

void reactor_abort(struct reactor_conn *c)
{
	conn_end(c, END_ABORT);
}
