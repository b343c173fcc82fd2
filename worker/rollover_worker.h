/*
 * rollover_worker.h - the worker side of the rollover protocol.
 *
 * A worker run by rollover(8) is a program written for systemd's socket
 * activation: its listening sockets start at fd 3 (LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES), it says READY=1 on $NOTIFY_SOCKET when it can serve,
 * and the stop signal (SIGTERM unless the config says otherwise) means
 * "stop accepting, finish what is in flight, exit 0".  See rollover-worker(7).
 *
 * This library is that protocol and nothing more, as small as systemd's
 * sd-daemon.  Every function returns a negative errno value on failure,
 * 0 for "not supervised" where that applies, and never logs, exits or
 * installs a signal handler on the caller's behalf.  None of them is
 * async-signal-safe.  Link it into any worker; nothing here allocates.
 */
#ifndef ROLLOVER_WORKER_H
#define ROLLOVER_WORKER_H

/* The first inherited listening socket; the others follow it. */
#define RW_LISTEN_FDS_START 3

/*
 * rw_listen_fds - take the listening sockets the supervisor passed.
 *
 * If LISTEN_PID names this process, returns LISTEN_FDS: the number n of
 * sockets, which are fds RW_LISTEN_FDS_START .. RW_LISTEN_FDS_START+n-1,
 * in the order of the group's `listen` list.  Sets FD_CLOEXEC on each, so
 * that they do not leak into programs the worker runs.
 *
 * Returns 0 when the process is not socket-activated (LISTEN_PID unset or
 * naming another process: the variables were inherited from a parent),
 * and -EINVAL when the variables are malformed, or -errno if an fd is not
 * open.  In every case it unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES,
 * so a second call returns 0 and children do not see them.
 *
 * The sockets are left as passed: blocking, and shared with the supervisor
 * and the other workers of the group (O_NONBLOCK set on one is set on all
 * of them, which is harmless when they all run the same program).
 */
int rw_listen_fds(void);

/*
 * rw_listen_fallback - bind a listening socket of one's own.
 *
 * For running a worker by hand, without a supervisor (`--listen ADDR`).
 * addr is written as in rollover.conf(5): "127.0.0.1:8080", "*:8080" (any
 * IPv4 address), "[::1]:8080", "[::]:8080" (IPv6 only), "unix:/path" or
 * "unix:@abstract".  Hosts are numeric; no name is resolved.  Port 0 asks
 * the kernel for a free one (see getsockname(2)).
 *
 * Creates the socket (SOCK_STREAM, SOCK_CLOEXEC, blocking), sets
 * SO_REUSEADDR on TCP, binds it and listens with a backlog of SOMAXCONN.  Returns the fd, -EINVAL if addr does not parse, or the
 * -errno of the failing call (-EADDRINUSE, -EACCES, ...).  A unix socket
 * path is neither removed before bind nor after close.
 */
int rw_listen_fallback(const char *addr);

/*
 * rw_notify - tell the supervisor about a change of state.
 *
 * Sends state, one or more newline-separated assignments, as one datagram
 * to $NOTIFY_SOCKET: "READY=1" once the worker serves, "STOPPING=1" when
 * it begins a graceful stop, "STATUS=free text" at any time.  NOTIFY_SOCKET
 * is a filesystem path, or "@name" for an abstract socket.
 *
 * Returns a positive value once the datagram is sent, 0 if NOTIFY_SOCKET
 * is unset (not supervised; rollover always sets it), -EINVAL if
 * state is NULL or the address is too long, -EAFNOSUPPORT if the address
 * is neither a path nor "@name", or the -errno of socket(2)/sendto(2).
 * NOTIFY_SOCKET is kept in the environment.
 */
int rw_notify(const char *state);

/*
 * rw_slot, rw_generation, rw_group - where this worker stands.
 *
 * rw_slot() is ROLLOVER_SLOT (0..N-1: which of the group's N workers this
 * is; a replacement keeps its predecessor's slot), rw_generation() is
 * ROLLOVER_GENERATION (counted per group from 1), rw_group() is
 * ROLLOVER_GROUP, the group's name.  They return -1, -1 and NULL when the
 * variable is unset or malformed, e.g. when run by hand.  The string
 * returned by rw_group() lives in the environment.
 */
int rw_slot(void);
int rw_generation(void);
const char *rw_group(void);

/*
 * rw_stop_fd - learn of the stop signal through a file descriptor.
 *
 * Blocks sig (SIGTERM is what the supervisor sends unless the group sets
 * stop_signal) in the calling thread's signal mask and returns a signalfd
 * (SFD_NONBLOCK | SFD_CLOEXEC) that becomes readable when sig arrives,
 * for the worker's poll or epoll set.  Call it early, before starting
 * threads (they inherit the mask) and before binding or saying READY=1, so
 * that a stop signal arriving during start-up waits in the fd rather than
 * killing the process.  It may be called once per signal of interest.
 *
 * The mask survives execve(2): unblock sig in any child before it execs.
 * Returns the fd, -EINVAL for an invalid sig, or -errno of signalfd(2); on
 * failure the signal mask is as it was.
 */
int rw_stop_fd(int sig);

/*
 * rw_stop_read - consume one pending signal from a rw_stop_fd() fd.
 *
 * Returns the signal number (> 0), 0 if none is pending (the fd was not
 * readable after all), or -errno.  A signal sent twice before it is read
 * is read once.
 */
int rw_stop_read(int fd);

#endif
