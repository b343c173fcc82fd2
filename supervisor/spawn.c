/*
 * spawn.c - the one place where the supervisor forks and execs.
 *
 * Contract, as in skalibs' cspawn: signals are blocked around fork; the
 * child resets every signal disposition and its mask, then makes only
 * async-signal-safe system calls until exec; if a step fails it writes
 * which step and errno into a close-on-exec pipe and _exits.  The parent
 * reads that pipe to end of file, so when spawn_process() returns the
 * child has either exec'd or been reaped, and the failure is a precise,
 * synchronous error rather than a mysterious exit status 127.
 *
 * Nothing but the listeners (at 3, 4, ...) and stdin/stdout/stderr
 * survives into the worker: every other fd, including ones the supervisor
 * inherited from whoever started it, is marked close-on-exec in the child.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "rollover.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum step {
	STEP_SETSID = 1,
	STEP_RLIMIT,
	STEP_GROUPS,
	STEP_GID,
	STEP_UID,
	STEP_PDEATH,
	STEP_STDIN,
	STEP_FDS,
	STEP_CHDIR,
	STEP_NNP,
	STEP_EXEC
};

static const char *const step_names[] = {
    [STEP_SETSID] = "setsid",	 [STEP_GROUPS] = "setgroups",
    [STEP_GID] = "setgid",	 [STEP_UID] = "setuid",
    [STEP_PDEATH] = "prctl",	 [STEP_STDIN] = "stdin",
    [STEP_FDS] = "listeners",	 [STEP_CHDIR] = "chdir",
    [STEP_RLIMIT] = "setrlimit", [STEP_NNP] = "no_new_privs",
    [STEP_EXEC] = "exec",
};

struct failure {
	int step;
	int err;
	int limit; /* STEP_RLIMIT: which of sp->limits */
};

static void __attribute__((noreturn))
child_fail_at(int errfd, int step, int limit)
{
	struct failure f = {step, errno, limit};

	(void)!write(errfd, &f, sizeof(f));
	_exit(127);
}

static void __attribute__((noreturn)) child_fail(int errfd, int step)
{
	child_fail_at(errfd, step, -1);
}

/* Async-signal-safe: no stdio, no malloc. */
static void put_digits(char *p, long v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		*p++ = tmp[--n];
	*p = '\0';
}

/*
 * Reset every disposition to the default, since an ignored signal stays
 * ignored across exec.  This uses rt_sigaction directly: glibc's
 * sigaction refuses the two real-time signals it reserves (32 and 33),
 * and we may have inherited those ignored too.
 */
static void child_signals(void)
{
	/* The kernel's struct sigaction, which glibc does not export. */
	struct {
		/* cppcheck-suppress unusedStructMember */
		void (*handler)(int);
		/* cppcheck-suppress unusedStructMember */
		unsigned long flags;
		/* cppcheck-suppress unusedStructMember */
		void *restorer;
		uint64_t mask;
	} dfl = {SIG_DFL, 0, NULL, 0};
	sigset_t none;

	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			(void)syscall(SYS_rt_sigaction, s, &dfl, NULL,
				      sizeof(dfl.mask));
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static rlim_t child_rlim(uint64_t v)
{
	return v == LIMIT_INFINITY ? RLIM_INFINITY : (rlim_t)v;
}

static void child_limits(const struct spawn *sp, int errfd)
{
	for (size_t i = 0; i < sp->nlimits; i++) {
		const struct limit_conf *l = &sp->limits[i];
		struct rlimit rl = {child_rlim(l->soft), child_rlim(l->hard)};

		if (setrlimit(l->resource, &rl) == -1)
			child_fail_at(errfd, STEP_RLIMIT, (int)i);
	}
}

static void child_credentials(const struct spawn *sp, int errfd)
{
	if (!sp->drop_privileges)
		return;
	if (setgroups(sp->ngroups, sp->groups) == -1)
		child_fail(errfd, STEP_GROUPS);
	if (setgid(sp->gid) == -1)
		child_fail(errfd, STEP_GID);
	if (sp->uid != (uid_t)-1 && setuid(sp->uid) == -1)
		child_fail(errfd, STEP_UID);
}

/*
 * Put the listeners at 3, 4, ...  They are first copied above the target
 * range, so that moving one cannot clobber another that happens to sit
 * there already; dup2 then clears close-on-exec on the final copy.  (A
 * dup2 onto itself would keep the flag set, which the copy avoids.)
 */
static int child_fds(const struct spawn *sp, int *errfd)
{
	int high = 3 + (int)sp->nfds;
	int tmp[SPAWN_MAX_FDS];

	if (dup2(sp->devnull, STDIN_FILENO) == -1)
		child_fail(*errfd, STEP_STDIN);
	*errfd = fcntl(*errfd, F_DUPFD_CLOEXEC, high);
	if (*errfd == -1)
		_exit(127);
	for (size_t i = 0; i < sp->nfds; i++) {
		tmp[i] = fcntl(sp->fds[i], F_DUPFD_CLOEXEC, high);
		if (tmp[i] == -1)
			return -1;
	}
	for (size_t i = 0; i < sp->nfds; i++)
		if (dup2(tmp[i], 3 + (int)i) == -1)
			return -1;
	if (syscall(SYS_close_range, (unsigned)high, ~0U,
		    CLOSE_RANGE_CLOEXEC) == -1) {
		struct rlimit rl;
		int max = 65536;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur < (rlim_t)max)
			max = (int)rl.rlim_cur;
		for (int fd = high; fd < max; fd++)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	return 0;
}

static void __attribute__((noreturn))
child(const struct spawn *sp, int errfd, pid_t parent)
{
	child_signals();
	if (setsid() == -1)
		child_fail(errfd, STEP_SETSID);
	/*
	 * Before the limits: a low nofile would refuse the copies made
	 * there, and hide the fds above it from the loop that stands in
	 * for close_range.
	 */
	if (child_fds(sp, &errfd) == -1)
		child_fail(errfd, STEP_FDS);
	/* Before the drop, which takes CAP_SYS_RESOURCE away. */
	child_limits(sp, errfd);
	child_credentials(sp, errfd);
	/* After the credential change, which would clear it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		child_fail(errfd, STEP_PDEATH);
	if (getppid() != parent)
		_exit(127); /* the supervisor died before prctl */
	if (sp->umask_set)
		umask(sp->umask);
	if (sp->directory != NULL && chdir(sp->directory) == -1)
		child_fail(errfd, STEP_CHDIR);
	if (sp->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		child_fail(errfd, STEP_NNP);
	if (sp->pid_digits != NULL)
		put_digits(sp->pid_digits, (long)getpid());
	if (sp->exec_fd >= 0)
		execveat(sp->exec_fd, "", sp->argv, sp->envp, AT_EMPTY_PATH);
	else
		execve(sp->path, sp->argv, sp->envp);
	child_fail(errfd, STEP_EXEC);
}

/* What failed, for the log: the step, and which limit for setrlimit. */
static const char *spawn_step_name(const struct spawn *sp,
				   const struct failure *f)
{
	if (f->step == STEP_RLIMIT && f->limit >= 0 &&
	    (size_t)f->limit < sp->nlimits) {
		static char buf[48];

		snprintf(buf, sizeof(buf), "setrlimit %s",
			 config_limit_name(sp->limits[f->limit].resource));
		return buf;
	}
	if (f->step > 0 && f->step < (int)ARRAY_LEN(step_names))
		return step_names[f->step];
	return "exec";
}

pid_t spawn_process(const struct spawn *sp, const char **what, int *err)
{
	sigset_t all, old;
	struct failure f;
	int pfd[2];
	ssize_t n;
	pid_t self = getpid();
	pid_t pid;

	*what = "fork";
	if (sp->nfds > SPAWN_MAX_FDS) {
		*err = EMFILE;
		return -1;
	}
	if (pipe2(pfd, O_CLOEXEC) == -1) {
		*err = errno;
		return -1;
	}
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		child(sp, pfd[1], self);
	*err = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(pfd[1]);
	if (pid == -1) {
		close(pfd[0]);
		return -1;
	}
	do
		n = read(pfd[0], &f, sizeof(f));
	while (n == -1 && errno == EINTR);
	close(pfd[0]);
	if (n <= 0)
		return pid; /* end of file: the exec succeeded */
	if (n == (ssize_t)sizeof(f)) {
		*what = spawn_step_name(sp, &f);
		*err = f.err;
	} else {
		*what = "exec";
		*err = EIO;
	}
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
	return -1;
}
