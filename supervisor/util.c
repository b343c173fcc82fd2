/*
 * util.c - allocation that cannot fail, time, and signal names.
 *
 * The supervisor treats running out of memory as fatal: it allocates only
 * small, bounded amounts, and a half-built structure is worse than a
 * restart by systemd.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rollover.h"

static void oom(void)
{
	fatalx(1, "out of memory");
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

/* A NULL-terminated array of malloc'd strings, and the array. */
void strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		oom();
	return p;
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const struct {
	int sig;
	const char *name;
} signals[] = {
    {SIGHUP, "HUP"},	   {SIGINT, "INT"},   {SIGQUIT, "QUIT"},
    {SIGILL, "ILL"},	   {SIGTRAP, "TRAP"}, {SIGABRT, "ABRT"},
    {SIGBUS, "BUS"},	   {SIGFPE, "FPE"},   {SIGKILL, "KILL"},
    {SIGUSR1, "USR1"},	   {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"},	   {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
    {SIGCHLD, "CHLD"},	   {SIGCONT, "CONT"}, {SIGSTOP, "STOP"},
    {SIGTSTP, "TSTP"},	   {SIGTTIN, "TTIN"}, {SIGTTOU, "TTOU"},
    {SIGURG, "URG"},	   {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"},
    {SIGIO, "IO"},	   {SIGPWR, "PWR"},   {SIGSYS, "SYS"},
};

const char *signal_name(int sig)
{
	static char buf[16];

	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	snprintf(buf, sizeof(buf), "SIG%d", sig);
	return buf;
}

int signal_parse(const char *name)
{
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (strcasecmp(signals[i].name, name) == 0)
			return signals[i].sig;
	return -1;
}

const char *wait_status_str(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
			 WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s",
			 WTERMSIG(status), signal_name(WTERMSIG(status)),
			 WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "changed state (0x%x)", (unsigned)status);
	return buf;
}

/*
 * $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=; the first of several),
 * then /run/rollover as root, then $XDG_RUNTIME_DIR, then /tmp.
 */
char *control_default_path(void)
{
	const char *rd = getenv("RUNTIME_DIRECTORY");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (rd != NULL && *rd == '/')
		return xasprintf("%.*s/rollover.sock", (int)strcspn(rd, ":"),
				 rd);
	if (geteuid() == 0)
		return xstrdup("/run/rollover/rollover.sock");
	if (xdg != NULL && *xdg == '/')
		return xasprintf("%s/rollover.sock", xdg);
	return xasprintf("/tmp/rollover-%u.sock", (unsigned)geteuid());
}
