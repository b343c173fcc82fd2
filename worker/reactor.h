/*
 * reactor.h - an epoll reactor for rollover workers.
 *
 * A single-threaded event loop that serves stream connections on the
 * listening sockets rollover(8) passes (LISTEN_FDS), or on sockets it
 * binds itself when run by hand, and calls the application back:
 *
 *	on_connect(c)		a connection was accepted
 *	on_data(c, data, len)	input arrived; return how much was used
 *	on_timer(c)		the connection's timer fired
 *	on_close(c)		the connection is gone
 *
 * The application answers by writing to the connection handle; output is
 * buffered and sent without blocking.  The reactor also takes care of the
 * rest of rollover-worker(7): READY=1 once serving, and on SIGTERM or
 * SIGINT a graceful stop (no new connections, in-flight work finishes,
 * idle connections end after a short grace, then reactor_run() returns).
 *
 * It is a separate header from rollover_worker.h on purpose: that one is
 * the protocol alone, allocation-free and usable from any event loop;
 * this one is a loop, which allocates and owns its descriptors.  It uses
 * rollover_worker.h and links with it.
 *
 * Conventions: functions that can fail return a negative errno value;
 * nothing here logs, exits, or installs a signal handler.  Times are in
 * milliseconds.  A struct reactor_conn pointer is valid from on_connect()
 * until on_close() returns, and only then freed.  A callback may call any
 * function here but reactor_run(), reactor_step() and reactor_free(); what
 * it changes takes effect once it returns, never by calling back into it.
 * Not thread-safe: use one reactor per process (the stop signals are per
 * process).
 *
 * Level-triggered epoll throughout, which a request-response server pays
 * nothing for: a connection's interest changes only when its output backs
 * up or its input buffer fills, never per request, and a read that does
 * not empty the socket needs no second read to find EAGAIN (the next
 * epoll_wait says so).  Edge-triggered would add that EAGAIN read to
 * every request, and lose events a paused connection must not lose.
 *
 * Accepting.  Each listening socket is watched with EPOLLEXCLUSIVE, so a
 * connection wakes one worker, not all of them (no thundering herd).  But
 * the kernel wakes the first waiting worker in the socket's wait queue,
 * so on a socket shared by several workers the first to register would
 * take most long-lived connections.  Each time a worker accepts a
 * connection that outlives its first read, it removes the socket from its
 * epoll set and adds it again, which moves it to the back of the queue:
 * the next connection goes to another worker.  Short connections (read,
 * answered and closed at once) do not move it, so they cost no extra
 * system call.  With defer_accept, a TCP socket gets TCP_DEFER_ACCEPT, so
 * a connection is accepted once its first bytes are there, and is read
 * right after accept(2), before going back to epoll.  Accepted TCP
 * connections have TCP_NODELAY, which they inherit from the listener.
 */
#ifndef ROLLOVER_REACTOR_H
#define ROLLOVER_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reactor;
struct reactor_conn;

/*
 * A timer, embedded in the caller's own structure.  Initialise it once
 * with reactor_timer_init(); the fields are the reactor's.
 */
struct reactor_timer {
	void (*fn)(struct reactor_timer *t);
	int64_t when; /* the deadline */
	int64_t key;  /* where the heap has it: a deadline <= when */
	size_t slot;  /* 1 + its index in the heap; 0 when not pending */
};

/*
 * What a reactor calls, and its limits.  Zero fields take the default
 * given; callbacks may be NULL.
 */
struct reactor_config {
	/*
	 * A connection was accepted (or adopted).  Return 0 to keep it, or
	 * -1 to have it closed at once, without on_close().
	 */
	int (*on_connect)(struct reactor_conn *c);
	/*
	 * data[0, len) is the connection's unread input, all of it; return
	 * how many bytes from its start were used (0 to len).  What is left
	 * is offered again, with whatever arrives next, at the next read,
	 * or sooner if the connection's state changes (a write, a timer).
	 * When the input buffer is full (in_max bytes) and on_data() uses
	 * none of it, the reactor ends the connection with
	 * reactor_shutdown(), unless it is busy.  Not called while the
	 * connection's output is congested (reactor_congested()), nor after
	 * one of the reactor_close() family.
	 */
	size_t (*on_data)(struct reactor_conn *c, const char *data, size_t len);
	/* The timer of reactor_timeout() fired. */
	void (*on_timer)(struct reactor_conn *c);
	/*
	 * The connection is closed, for whatever reason: its descriptor is
	 * still open during the call, and closed right after.  Not called
	 * from within another callback on the same connection.
	 */
	void (*on_close)(struct reactor_conn *c);

	/* Bytes of per-connection application state (reactor_data()). */
	size_t conn_size;
	/*
	 * At most this many connections: at the limit the worker stops
	 * accepting, and connections stay queued in the listening socket
	 * (for another worker, or until one closes here) rather than being
	 * refused.  Default: the soft RLIMIT_NOFILE less 16.  Running out of
	 * descriptors anyway (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses
	 * accepting for 100 ms.
	 */
	unsigned max_conns;
	/* Input buffer per connection; see on_data().  Default 8192. */
	size_t in_max;
	/*
	 * Backpressure: once a connection's unsent output reaches out_high
	 * it is congested: the reactor stops reading it and calling
	 * on_data() until the output is down to half of that.  Default 64 KiB.
	 */
	size_t out_high;
	/*
	 * Hard limit on a connection's unsent output: reactor_write() of
	 * more fails with -ENOBUFS and writes nothing.  Default 1 MiB.
	 */
	size_t out_max;
	/*
	 * Graceful stop: how long a connection that is not busy has to say
	 * something more before it is ended.  Long enough for a client in
	 * the middle of a request-response exchange on a busy machine to
	 * send its next request.  Default 1000.
	 */
	int grace_ms;
	/*
	 * The end of a connection: at most this long to send its last
	 * output and then, after reactor_shutdown(), to see the peer's end
	 * of file, before it is closed regardless.  Default 2000.
	 */
	int linger_ms;
	/* TCP_DEFER_ACCEPT, and a read right after accept (see above). */
	bool defer_accept;
	/*
	 * Run as SCHED_BATCH (sched(7)) if the process runs as SCHED_OTHER:
	 * a worker woken by a request does not preempt the client that sent
	 * it, so it runs a little later and finds more requests to answer
	 * in one round, with fewer context switches.  The price: under CPU
	 * contention an answer may wait up to a scheduler tick.  A policy
	 * chosen elsewhere (chrt(1), systemd's CPUSchedulingPolicy=) is
	 * kept, and so is the nice value.  Best effort: a process that may
	 * not change its policy keeps it.
	 */
	bool sched_batch;
};

/*
 * reactor_new - make a reactor.
 *
 * Blocks SIGTERM and SIGINT and watches them through signalfd(2) (see
 * rw_stop_fd()): call it first, before taking the listening sockets and
 * before starting threads, so that a stop signal arriving during start-up
 * waits for the loop.  Returns 0 and sets *rp, or -errno.
 */
int reactor_new(struct reactor **rp, const struct reactor_config *cfg);

/*
 * reactor_free - close every connection (calling on_close()), every
 * listening socket and the reactor's own descriptors, and free it.  The
 * signals stay blocked.
 */
void reactor_free(struct reactor *r);

/*
 * reactor_inherit - serve on the sockets rollover passed (LISTEN_FDS).
 *
 * Returns how many (0 when not socket-activated; see rw_listen_fds()),
 * or -errno if one is not a listening socket or cannot be watched.  Each
 * is made non-blocking, which changes it for every process holding it:
 * harmless, since they all run the same program.
 */
int reactor_inherit(struct reactor *r);

/*
 * reactor_listen - bind addr and serve on it, for running by hand.
 *
 * addr as for rw_listen_fallback().  Returns the socket, or -errno
 * (-EINVAL if addr does not parse).
 */
int reactor_listen(struct reactor *r, const char *addr);

/*
 * reactor_add_listener - serve on fd, a listening stream socket.  If
 * owned, connections still queued on it when the stop begins are
 * accepted and served before it is closed (a socket no other process
 * holds would reset them).  Returns 0 or -errno (-ENOTSOCK, -EINVAL if
 * not listening).
 */
int reactor_add_listener(struct reactor *r, int fd, bool owned);

/*
 * reactor_adopt - serve fd, a connected stream socket, as if accepted
 * (on_connect() is called).  Made non-blocking.  Not subject to
 * max_conns, but counted.  Returns 0, -ECANCELED if on_connect() refused
 * it (fd is closed then), or -errno (fd is then left open).
 */
int reactor_adopt(struct reactor *r, int fd);

/*
 * reactor_ready - send READY=1 (rw_notify()) if not sent yet, and return
 * what rw_notify() returned (0 when not supervised).  Call it once the
 * worker has its sockets and whatever else it needs, to report a failure;
 * reactor_run() calls it otherwise.
 */
int reactor_ready(struct reactor *r);

/*
 * reactor_run - say READY=1 if not said yet (see reactor_ready(); a
 * failure to is not reported here), then serve until stopped and every
 * connection is closed.  Returns 0 then, or the -errno of epoll_wait(2).
 */
int reactor_run(struct reactor *r);

/*
 * reactor_step - one round of the loop: wait for events up to timeout_ms
 * (-1: until one, or a timer, is due; 0: poll), handle them and every
 * timer due.  For tests and for callers with loops of their own.
 * Returns 0 or -errno.
 */
int reactor_step(struct reactor *r, int timeout_ms);

/*
 * reactor_stop - begin the graceful stop, as SIGTERM or SIGINT do:
 *
 *  - stop accepting: each listening socket is removed from the epoll set
 *    and closed (an inherited one stays open in rollover, and what is
 *    queued on it goes to the other workers; see reactor_add_listener()
 *    for an owned one); STOPPING=1 is sent;
 *  - every connection gets grace_ms; a connection that is busy
 *    (reactor_busy()) when that ends gets another, and so on; one that
 *    is not is read once more (input that arrived meanwhile still goes
 *    to on_data()) and then ended with reactor_shutdown();
 *  - the application sees reactor_stopping() and should end each
 *    connection as soon as its work is done (for HTTP: answer the next
 *    request with "Connection: close");
 *  - once no connection is left, reactor_run() returns 0.
 *
 * Called from a callback, it is carried out once the callback returns;
 * reactor_stopping() is true at once.  Calling it again does nothing.
 */
void reactor_stop(struct reactor *r);

bool reactor_stopping(const struct reactor *r);

/* Open connections, those being closed included. */
unsigned reactor_conns(const struct reactor *r);

/* The monotonic clock in ms, as read once per round of the loop. */
int64_t reactor_now(const struct reactor *r);

/*
 * Timers.  reactor_timer_set() (re)arms t to call its fn once, ms (>= 0)
 * after reactor_now() (the start of the current round; so a reply
 * delayed by ms leaves no earlier than ms after its request was read).
 * Pushing a pending timer later is O(1), which makes it
 * cheap to restart an idle timeout on every request.  It returns 0, or
 * -ENOMEM if a timer that was not pending could not be added.  A timer
 * may be set or cancelled from any callback, its own included; one set
 * to 0 ms from a timer callback runs in the next round.
 */
void reactor_timer_init(struct reactor_timer *t,
			void (*fn)(struct reactor_timer *t));
int reactor_timer_set(struct reactor *r, struct reactor_timer *t, int64_t ms);
void reactor_timer_cancel(struct reactor *r, struct reactor_timer *t);
bool reactor_timer_pending(const struct reactor_timer *t);

/* ---- connections ------------------------------------------------------ */

/* The connection's conn_size bytes of application state, zeroed first. */
void *reactor_data(struct reactor_conn *c);
struct reactor *reactor_of(const struct reactor_conn *c);
int reactor_fd(const struct reactor_conn *c);

/*
 * reactor_write - queue n bytes to send.  Output is sent when the
 * current callback returns, in as few send(2) calls as the socket
 * allows, so several writes in one callback (pipelined answers) leave in
 * one segment.  Returns 0, -ENOBUFS if the unsent output would exceed
 * out_max (nothing is queued), -EPIPE once the connection is being
 * closed, or -ENOMEM.
 */
int reactor_write(struct reactor_conn *c, const void *p, size_t n);

/* Bytes queued and not yet sent. */
size_t reactor_pending(const struct reactor_conn *c);

/* Output reached out_high and has not drained to half of it since. */
bool reactor_congested(const struct reactor_conn *c);

/* The peer has sent its end of file (all its input may still be unread). */
bool reactor_peer_closed(const struct reactor_conn *c);

/*
 * reactor_busy - say whether the connection has work in flight that is
 * not visible as buffered input or output (a reply waiting on a timer, a
 * request half received).  A busy connection is not ended by the
 * graceful stop's grace, nor when the peer closes, nor when its input
 * buffer is full.
 */
void reactor_busy(struct reactor_conn *c, bool busy);

/*
 * reactor_timeout - call on_timer(c) in ms (>= 0), replacing any earlier
 * setting; a negative ms cancels it.  One timer per connection, cancelled
 * when it closes.
 */
void reactor_timeout(struct reactor_conn *c, int64_t ms);

/*
 * The end of a connection, once the current callback returns; no
 * on_data() after that, and reactor_write() fails.
 *
 * reactor_close: send what is queued, then close(2).  For when the peer
 * sends nothing more (it said so, or it closed its side): input that
 * still arrives draws a reset from the kernel.
 *
 * reactor_shutdown: send what is queued, then shut down the sending side
 * (the peer reads end of file), read and discard input until the peer's
 * end of file, and close.  For when the peer may still be sending, as
 * with an idle HTTP keep-alive connection: its late request is absorbed
 * instead of drawing a reset, so it sees a clean close.
 *
 * Both take at most linger_ms from the call; then the connection is
 * closed regardless.  reactor_abort closes at once and drops what is
 * queued.  Calling one of them after another keeps the first, except
 * that reactor_abort always wins.
 */
void reactor_close(struct reactor_conn *c);
void reactor_shutdown(struct reactor_conn *c);
void reactor_abort(struct reactor_conn *c);

#endif
