/*
 * hostile.c - workers that attack the supervisor, or their neighbours,
 * in one chosen way, for tests/system/test_hostile.py.  Built once per
 * mode (-DHOSTILE_MODE='"close"'), without the sanitizers; every mode is
 * compiled each time, so that the analysers see all of them.
 *
 *   close        hostile-close COMMAND [ARG]...
 *                slot 0 closes its inherited listeners, says READY=1 and
 *                idles; every other slot execs COMMAND, a real server.
 *   daemon       hostile-daemon PIDFILE exit|stay [ignore-term]
 *                on SIGUSR1, leaves a daemon behind (fork, setsid, fork:
 *                out of its process group and session), its pid in
 *                PIDFILE, then exits or says READY=1 and stays; once
 *                PIDFILE exists a restarted worker only says READY=1.
 *   notify       hostile-notify STORM_SECONDS
 *                on SIGUSR1, sends NOTIFY_SOCKET garbage, file
 *                descriptors, READY=1 from a child and READY=1 with the
 *                credentials of its siblings and of the supervisor, all
 *                in order, then READY=1 for itself, then a storm of
 *                garbage for STORM_SECONDS.  What each send returned goes
 *                to stderr, as "hostile-notify: forged PID ERRNO" and
 *                the like.
 *                hostile-notify huge
 *                sends one datagram too big to be read whole, READY=1
 *                at its start, and nothing else.
 *   flood        hostile-flood
 *                says READY=1, then writes whole lines to stdout and
 *                stderr as fast as they are taken, forever.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rollover_worker.h"

#ifndef HOSTILE_MODE
#define HOSTILE_MODE "close" /* for the analysers: the Makefile sets it */
#endif

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, "hostile: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The stop signal kills us: nothing to finish. */
static void __attribute__((noreturn)) idle(void)
{
	for (;;)
		pause();
}

/* Until the test says go, once it has seen how things were before. */
static void wait_for_go(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigwait(&set, &sig);
}

/* ---- close --------------------------------------------------------- */

static int close_main(int argc, char **argv)
{
	int n;

	if (argc < 2)
		return 2;
	if (rw_slot() != 0) {
		execv(argv[1], argv + 1);
		die(argv[1]);
	}
	n = rw_listen_fds();
	for (int fd = RW_LISTEN_FDS_START; fd < RW_LISTEN_FDS_START + n; fd++)
		close(fd);
	rw_notify("READY=1");
	idle();
}

/* ---- daemon -------------------------------------------------------- */

static void write_pid(const char *path)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL)
		die(tmp);
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		die(path);
}

/* A daemon as the books make one: no group, no session, no terminal. */
static void daemonize(const char *pidfile, int ignore_term)
{
	pid_t pid = fork();
	int null;

	if (pid == -1)
		die("fork");
	if (pid > 0) {
		waitpid(pid, NULL, 0);
		return;
	}
	setsid();
	if ((pid = fork()) != 0)
		_exit(pid == -1);
	if (ignore_term)
		signal(SIGTERM, SIG_IGN);
	if (chdir("/") == -1 || (null = open("/dev/null", O_RDWR)) == -1)
		_exit(1);
	for (int fd = 0; fd < 3; fd++)
		dup2(null, fd);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	write_pid(pidfile);
	idle();
}

static int daemon_main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	if (access(argv[1], F_OK) == 0) {
		rw_notify("READY=1");
		idle();
	}
	wait_for_go();
	daemonize(argv[1], argc > 3 && strcmp(argv[3], "ignore-term") == 0);
	for (int i = 0; i < 1000 && access(argv[1], F_OK) == -1; i++)
		usleep(10 * 1000);
	if (strcmp(argv[2], "exit") == 0)
		return 0;
	rw_notify("READY=1");
	idle();
}

/* ---- notify -------------------------------------------------------- */

static struct sockaddr_un notify_sa;
static socklen_t notify_len;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, in one write: it shares the supervisor's log. */
static void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(2, line, (size_t)n);
}

static void notify_address(void)
{
	const char *p = getenv("NOTIFY_SOCKET");

	if (p == NULL || strlen(p) >= sizeof(notify_sa.sun_path))
		die("NOTIFY_SOCKET");
	notify_sa.sun_family = AF_UNIX;
	memcpy(notify_sa.sun_path, p, strlen(p));
	if (p[0] == '@')
		notify_sa.sun_path[0] = '\0';
	notify_len =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p));
}

static int notify_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd == -1 ||
	    connect(fd, (struct sockaddr *)&notify_sa, notify_len) == -1)
		die("notify socket");
	return fd;
}

/* One datagram, with control data if any; 0 or the errno. */
static int send_one(int fd, const void *data, size_t len, int type,
		    const void *cdata, size_t clen)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 253)];
	} cbuf;
	struct iovec iov = {(void *)data, len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (cdata != NULL) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(clen);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = type;
		c->cmsg_len = CMSG_LEN(clen);
		memcpy(CMSG_DATA(c), cdata, clen);
	}
	return sendmsg(fd, &msg, 0) == -1 ? errno : 0;
}

/* Bytes that cannot hold the line READY=1: no newline, no '='. */
static void garbage(char *buf, size_t len, unsigned *seed)
{
	for (size_t i = 0; i < len; i++) {
		char c = (char)(rand_r(seed) & 0xff);

		buf[i] = c == '\n' || c == '=' ? '?' : c;
	}
}

static void send_garbage(int fd)
{
	static const char near_misses[] =
	    "READY=0\nREADY=11\nREADY\n=1\nready=1\nREADY=1 \n READY=1";
	static char buf[4096];
	unsigned seed = 42;

	for (int i = 0; i < 200; i++) {
		size_t len = (size_t)(rand_r(&seed) % sizeof(buf));

		garbage(buf, len, &seed);
		send_one(fd, buf, len, 0, NULL, 0);
	}
	send_one(fd, "", 0, 0, NULL, 0);
	send_one(fd, near_misses, strlen(near_misses), 0, NULL, 0);
}

/* READY=1 first, but cut off: the supervisor must drop all of it. */
static void send_huge(int fd)
{
	size_t len = (size_t)100 * 1024;
	char *buf = malloc(len);
	unsigned seed = 7;

	if (buf == NULL)
		die("malloc");
	garbage(buf, len, &seed);
	memcpy(buf, "READY=1\n", 8); /* NOLINT: not a string */
	report("hostile-notify: huge %d", send_one(fd, buf, len, 0, NULL, 0));
	free(buf);
}

/* Descriptors it must close unread, past what it makes room for. */
static void send_fds(int fd)
{
	static const int counts[] = {1, 16, 253};
	int fds[253];

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		int n = counts[i];

		for (int j = 0; j < n; j++)
			if ((fds[j] =
				 open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
				die("/dev/null");
		report("hostile-notify: fds %d %d", n,
		       send_one(fd, "STATUS=fds", 10, SCM_RIGHTS, fds,
				sizeof(int) * (size_t)n));
		for (int j = 0; j < n; j++)
			close(fds[j]);
	}
}

/* The child is not a worker, whatever it says. */
static void send_from_child(void)
{
	pid_t pid = fork();

	if (pid == -1)
		die("fork");
	if (pid == 0)
		_exit(send_one(notify_socket(), "READY=1", 7, 0, NULL, 0));
	waitpid(pid, NULL, 0);
}

/* READY=1 in the name of pid: EPERM unless we may (CAP_SYS_ADMIN). */
static void send_forged(int fd, pid_t pid)
{
	struct ucred cred = {pid, getuid(), getgid()};

	report(
	    "hostile-notify: forged %d %d", (int)pid,
	    send_one(fd, "READY=1", 7, SCM_CREDENTIALS, &cred, sizeof(cred)));
}

/* Every other child of the supervisor, and the supervisor itself. */
static void send_forged_all(int fd)
{
	pid_t parent = getppid();
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (d == NULL)
		die("/proc");
	while ((e = readdir(d)) != NULL) {
		char path[64], line[512];
		int pid = atoi(e->d_name), ppid;
		FILE *f;
		char *p;

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		p = fgets(line, sizeof(line), f);
		fclose(f);
		if (p == NULL || (p = strrchr(line, ')')) == NULL ||
		    sscanf(p + 1, " %*c %d", &ppid) != 1 || ppid != parent)
			continue;
		send_forged(fd, pid);
	}
	closedir(d);
	send_forged(fd, parent);
}

static void storm(int fd, double seconds)
{
	struct timespec t0, t;
	char buf[512];
	unsigned seed = 1;
	long n = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 256; i++, n++) {
			garbage(buf, sizeof(buf), &seed);
			send_one(fd, buf, (size_t)(seed % sizeof(buf)), 0, NULL,
				 0);
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) +
		     (double)(t.tv_nsec - t0.tv_nsec) / 1e9 <
		 seconds);
	report("hostile-notify: storm done %ld", n);
}

static int notify_main(int argc, char **argv)
{
	int fd;

	if (argc < 2)
		return 2;
	notify_address();
	fd = notify_socket();
	if (strcmp(argv[1], "huge") == 0) {
		send_huge(fd);
		idle();
	}
	wait_for_go();
	send_garbage(fd);
	send_fds(fd);
	send_from_child();
	send_forged_all(fd);
	rw_notify("READY=1");
	storm(fd, atof(argv[1]));
	idle();
}

/* ---- flood --------------------------------------------------------- */

static void fill(char *buf, size_t len)
{
	static const char line[] = "hostile flood: all work and no play\n";
	size_t n = sizeof(line) - 1;

	for (size_t i = 0; i + n <= len; i += n)
		memcpy(buf + i, line, n);
}

static int flood_main(int argc, char **argv)
{
	/* Whole lines, and at most PIPE_BUF bytes: each write is atomic. */
	static char buf[4096 / 36 * 36];

	(void)argc;
	(void)argv;
	fill(buf, sizeof(buf));
	rw_notify("READY=1");
	for (;;) {
		if (write(1, buf, sizeof(buf)) == -1 && errno != EINTR)
			die("stdout");
		if (write(2, buf, sizeof(buf)) == -1 && errno != EINTR)
			die("stderr");
	}
}

/* ---- main ---------------------------------------------------------- */

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
} modes[] = {
    {"close", close_main},
    {"daemon", daemon_main},
    {"notify", notify_main},
    {"flood", flood_main},
};

int main(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(modes[i].name, HOSTILE_MODE) == 0)
			return modes[i].main(argc, argv);
	fprintf(stderr, "hostile: no mode %s\n", HOSTILE_MODE);
	return 2;
}
