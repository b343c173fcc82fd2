/*
 * upgrade.c - replacing the supervisor's own binary in place (SIGUSR2).
 *
 * The supervisor re-execs the file at its own path and keeps its PID, so
 * systemd's MAINPID and every worker's parent stay what they were; the
 * workers never notice.  What the new program needs (state.c) goes to it
 * through a memfd, and the sockets and pinned binaries through fds that
 * the exec keeps open.  The steps, each of which can fail without harm
 * up to the exec:
 *
 *   1. the file at our path is checked like a worker binary (binary.c):
 *      complete, executable, no writer; and pinned by an open fd;
 *   2. the state is written to a memfd;
 *   3. that binary runs once on it in check mode (ROLLOVER_STATE_CHECK),
 *      reads it without adopting anything, and must exit 0 within
 *      UPGRADE_CHECK_MS: a binary that crashes, hangs, or reads another
 *      version of the state is refused here, and we carry on;
 *   4. we exec it with ROLLOVER_STATE_FD, and it adopts the state.
 *
 * Past the exec there is still a way back: an fd open on the old binary
 * (ROLLOVER_STATE_BACK).  If adopting fails anyway, the new program execs
 * the old one on the same state, as if the upgrade had never happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rollover.h"

#define UPGRADE_CHECK_MS 10000

extern char **environ;

static char *self_path; /* our binary, as it was when we started */
static char **self_argv;
static pid_t checker = -1;
static struct timer check_timer;
static struct binary next;
static struct state_out out;
static int state_fd = -1;

static void upgrade_reset(void)
{
	timer_cancel(&check_timer);
	binary_close(&next);
	if (state_fd != -1)
		close(state_fd);
	state_fd = -1;
	free(out.p);
	free(out.fds);
	memset(&out, 0, sizeof(out));
}

static void upgrade_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void upgrade_fail(const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_errorx("upgrade failed: %s; still running rollover %s", why,
		   ROLLOVER_VERSION);
	control_upgrade_done(why);
	upgrade_reset();
}

static void check_timeout(void *arg)
{
	(void)arg;
	log_warnx("upgrade: %s did not finish its check in %d ms; killing it",
		  self_path, UPGRADE_CHECK_MS);
	(void)kill(checker, SIGKILL); /* reaped as a failure */
}

void upgrade_init(char **argv)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	self_argv = argv;
	timer_init(&check_timer, check_timeout, NULL);
	binary_init(&next);
	if (n <= 0) {
		log_warn("/proc/self/exe: SIGUSR2 will not upgrade");
		return;
	}
	buf[n] = '\0';
	self_path = xstrdup(buf);
}

/* The environment of the next program: ours, plus the state's fds. */
static char **upgrade_env(const char *check, int back)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 4, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "ROLLOVER_STATE_", 15) != 0)
			env[k++] = xstrdup(environ[i]);
	env[k++] = xasprintf("ROLLOVER_STATE_FD=%d", check ? 3 : state_fd);
	env[k++] = check ? xasprintf("ROLLOVER_STATE_CHECK=1")
			 : xasprintf("ROLLOVER_STATE_BACK=%d", back);
	return env;
}

/*
 * The state as it is now, into the memfd (made on first use).  Written
 * once for the check run and again just before the exec: while the
 * check ran, workers may have come and gone.
 */
static int state_write(void)
{
	size_t off = 0;

	free(out.p);
	free(out.fds);
	memset(&out, 0, sizeof(out));
	state_save(&out, supervisor_config());
	if (state_fd == -1)
		state_fd = memfd_create("rollover-state", MFD_CLOEXEC);
	if (state_fd == -1 || ftruncate(state_fd, 0) == -1 ||
	    lseek(state_fd, 0, SEEK_SET) == -1)
		return -1;
	while (off < out.len) {
		ssize_t n = write(state_fd, out.p + off, out.len - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

int upgrade_start(char *err, size_t errlen)
{
	char *argv[] = {self_path, NULL};
	struct spawn sp = {0};
	const char *why, *what;
	char **env;
	int e;

	if (checker != -1 || state_fd != -1) {
		snprintf(err, errlen, "an upgrade is in progress");
		return -1;
	}
	if (stopping || self_path == NULL) {
		snprintf(err, errlen, "%s",
			 stopping ? "rollover is stopping"
				  : "the path of our binary is unknown");
		return -1;
	}
	log_info("upgrade: checking %s", self_path);
	if (binary_open(&next, self_path, &why) == -1) {
		snprintf(err, errlen, "%s: %s", self_path, why);
		log_errorx("upgrade failed: %s", err);
		return -1;
	}
	if (state_write() == -1) {
		snprintf(err, errlen, "cannot write the state: %s",
			 strerror(errno));
		log_errorx("upgrade failed: %s", err);
		upgrade_reset();
		return -1;
	}
	env = upgrade_env("check", -1);
	sp.path = self_path;
	sp.exec_fd = next.script ? -1 : next.fd;
	sp.argv = argv;
	sp.envp = env;
	sp.fds = &state_fd;
	sp.nfds = 1;
	sp.devnull = devnull_fd;
	checker = spawn_process(&sp, &what, &e);
	strv_free(env);
	if (checker == -1) {
		snprintf(err, errlen, "%s: %s: %s", self_path, what,
			 strerror(e));
		log_errorx("upgrade failed: %s", err);
		upgrade_reset();
		return -1;
	}
	timer_set(&check_timer, UPGRADE_CHECK_MS);
	return 0;
}

static void set_cloexec(const int *fds, size_t n, int on)
{
	for (size_t i = 0; i < n; i++) {
		int flags = fcntl(fds[i], F_GETFD);

		if (flags != -1)
			(void)fcntl(fds[i], F_SETFD,
				    on ? flags | FD_CLOEXEC
				       : flags & ~FD_CLOEXEC);
	}
}

/* Step 4.  Returns only if the exec failed. */
static void upgrade_exec(void)
{
	int back = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	int keep[] = {state_fd, back};
	char **env;
	int e;

	control_upgrading();
	if (state_write() == -1 || lseek(state_fd, 0, SEEK_SET) == -1) {
		upgrade_fail("cannot write the state: %s", strerror(errno));
		if (back != -1)
			close(back);
		return;
	}
	env = upgrade_env(NULL, back);
	set_cloexec(out.fds, out.nfds, 0);
	set_cloexec(keep, back != -1 ? 2 : 1, 0);
	log_info("upgrade: executing %s", self_path);
	if (next.script)
		execve(self_path, self_argv, env);
	else
		execveat(next.fd, "", self_argv, env, AT_EMPTY_PATH);
	e = errno;
	set_cloexec(out.fds, out.nfds, 1);
	set_cloexec(keep, 1, 1);
	if (back != -1)
		close(back);
	strv_free(env);
	upgrade_fail("exec %s: %s", self_path, strerror(e));
}

int upgrade_reaped(pid_t pid, int status)
{
	if (pid != checker || checker == -1)
		return 0;
	checker = -1;
	timer_cancel(&check_timer);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		upgrade_exec();
	} else {
		char how[96];

		upgrade_fail("%s %s while checking the state", self_path,
			     wait_status_str(status, how, sizeof(how)));
	}
	return 1;
}

void upgrade_stop(void)
{
	if (checker != -1)
		(void)kill(checker, SIGKILL);
}

/* ---- the new program's side ---------------------------------------------- */

int upgrade_check(int fd)
{
	const char *err;

	(void)state_load(fd, 0, &err);
	if (err != NULL) {
		fprintf(stderr, "rollover %s: cannot take over: %s\n",
			ROLLOVER_VERSION, err);
		return 1;
	}
	return 0;
}

/*
 * Adopt the state, or go back to the binary that wrote it; that one
 * understands it.  Returns the running config.
 */
struct config *upgrade_resume(int fd, char **argv)
{
	const char *back = getenv("ROLLOVER_STATE_BACK");
	int back_fd = back != NULL ? atoi(back) : -1;
	struct config *c;
	const char *err;

	c = state_load(fd, 1, &err);
	unsetenv("ROLLOVER_STATE_FD");
	unsetenv("ROLLOVER_STATE_BACK");
	if (c != NULL) {
		close(fd);
		if (back_fd > 2)
			close(back_fd);
		return c;
	}
	if (back_fd < 0)
		fatalx(1, "upgrade: cannot take over: %s", err);
	log_errorx("upgrade: cannot take over: %s; going back to the previous "
		   "binary",
		   err);
	if (lseek(fd, 0, SEEK_SET) == -1)
		fatal(1, "upgrade: state");
	{
		char var[32];

		snprintf(var, sizeof(var), "%d", fd);
		setenv("ROLLOVER_STATE_FD", var, 1);
		(void)fcntl(back_fd, F_SETFD, FD_CLOEXEC);
		execveat(back_fd, "", argv, environ, AT_EMPTY_PATH);
	}
	fatal(1, "upgrade: going back");
}
