/*
 * reaper.c - every child the supervisor has, workers or not.
 *
 * The supervisor is a child subreaper (or PID 1 in a container, which is
 * the same thing for free): a process a worker forks and abandons - a
 * daemon that double-forked out of the worker's process group - becomes
 * our child when its parent dies, instead of escaping to init.  So we
 * reap whatever exits, and a stop is not finished while such strays
 * live: once the workers are gone they get SIGTERM, then SIGKILL after
 * the longest stop_timeout, and the supervisor exits only when it has no
 * child left.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rollover.h"

static int draining;  /* the workers are gone; strays are stopped */
static int killing;   /* the grace is over: SIGKILL */
static pid_t *termed; /* strays already sent SIGTERM */
static size_t ntermed;
static struct timer grace;

void reaper_init(void)
{
	if (getpid() == 1) {
		log_info("running as PID 1: reaping every orphan");
		return;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("PR_SET_CHILD_SUBREAPER: processes that workers "
			 "leave behind will escape");
}

/* 1 if we still have a child, reaped or not (waitid leaves it be). */
static int have_children(void)
{
	siginfo_t si;

	return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* The parent pid from /proc/PID/stat, -1 if it is gone. */
static pid_t parent_of(const char *pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;
	int ppid;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip past it. */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

static int was_termed(pid_t pid)
{
	for (size_t i = 0; i < ntermed; i++)
		if (termed[i] == pid)
			return 1;
	return 0;
}

/*
 * Signal every child that is not a worker.  There is no list of them to
 * keep: they arrive unannounced, so /proc is read each time.  SIGTERM
 * goes once to each; SIGKILL as often as it takes.
 */
static void signal_strays(int sig)
{
	pid_t self = getpid();
	struct dirent *d;
	DIR *dir = opendir("/proc");

	if (dir == NULL) {
		log_error("/proc");
		return;
	}
	while ((d = readdir(dir)) != NULL) {
		pid_t pid = (pid_t)atoi(d->d_name);

		if (pid <= 0 || parent_of(d->d_name) != self ||
		    worker_find(pid) != NULL)
			continue;
		if (sig == SIGTERM) {
			if (was_termed(pid))
				continue;
			termed =
			    xrealloc(termed, (ntermed + 1) * sizeof(*termed));
			termed[ntermed++] = pid;
		}
		log_info("stopping process %d, left behind by a worker, with "
			 "SIG%s",
			 (int)pid, signal_name(sig));
		kill(pid, sig);
	}
	closedir(dir);
}

static void grace_over(void *arg)
{
	(void)arg;
	killing = 1;
	signal_strays(SIGKILL);
}

void reaper_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (worker_reaped(pid, status) || upgrade_reaped(pid, status))
			continue;
		if (draining) {
			char how[64];

			log_info("process %d %s", (int)pid,
				 wait_status_str(status, how, sizeof(how)));
		} else {
			log_debug("reaped process %d", (int)pid);
		}
	}
	/* A stray that died has handed its own children to us. */
	if (draining)
		signal_strays(killing ? SIGKILL : SIGTERM);
}

int reaper_done(int immediately, uint64_t grace_ms)
{
	if (!have_children())
		return 1;
	if (!draining) {
		draining = 1;
		timer_init(&grace, grace_over, NULL);
		if (immediately)
			grace_over(NULL);
		else {
			timer_set(&grace, grace_ms);
			signal_strays(SIGTERM);
		}
	}
	return 0;
}

void reaper_free(void)
{
	timer_cancel(&grace);
	free(termed);
	termed = NULL;
	ntermed = 0;
}
