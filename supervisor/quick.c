/*
 * quick.c - quick mode: one group from the command line, no config file.
 *
 *   rollover -l ADDR [-l ADDR]... [-n N] [-w] [--watch PATH]...
 *            [--ready notify|SECONDS] -- COMMAND [ARG]...
 *
 * The config is built here as config.c would have built it from a file
 * (so config_free() frees it), with defaults for the edit-build-reload
 * loop of development: one worker, a short settle and stop timeout, the
 * control socket in the user's runtime directory.  What the supervisor
 * then prints is a short line per rollover instead of its event log (see
 * quick_rollover_done()).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollover.h"

#define QUICK_SETTLE_MS	      20
#define QUICK_STOP_TIMEOUT_MS 5000

int quick_mode;

static char **strv_dup(char *const *v, size_t n)
{
	char **out = xcalloc(n + 1, sizeof(*out));

	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

/* A path with a slash is taken as it is; a bare name is looked up in PATH. */
static char *quick_command(const char *cmd)
{
	const char *path = getenv("PATH");

	if (strchr(cmd, '/') != NULL) {
		char cwd[PATH_MAX];

		if (cmd[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
			return xstrdup(cmd);
		while (strncmp(cmd, "./", 2) == 0)
			cmd += 2;
		return xasprintf("%s/%s", cwd, cmd);
	}
	for (const char *p = path != NULL ? path : "/usr/bin:/bin"; *p;) {
		size_t len = strcspn(p, ":");
		char *full =
		    xasprintf("%.*s/%s", (int)len, len > 0 ? p : ".", cmd);

		if (access(full, X_OK) == 0)
			return full;
		free(full);
		p += len + (p[len] == ':');
	}
	fatalx(EXIT_USAGE, "%s: not found in PATH", cmd);
}

/* The group is named after the command: its basename, tidied. */
static char *quick_name(const char *command)
{
	const char *base = strrchr(command, '/');
	char *name = xstrdup(base != NULL ? base + 1 : command);

	for (char *p = name; *p != '\0'; p++)
		if (strchr(
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789_.-",
			*p) == NULL)
			*p = '_';
	if (name[0] == '\0' || name[0] == '-' || strlen(name) > 64) {
		free(name);
		name = xstrdup("app");
	}
	return name;
}

/* $XDG_RUNTIME_DIR, else /run/user/UID, else /tmp; one per supervisor. */
static char *quick_control(void)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char run[64];
	struct stat st;

	if (xdg != NULL && *xdg == '/' && access(xdg, W_OK) == 0)
		return xasprintf("%s/rollover-%d.sock", xdg, (int)getpid());
	snprintf(run, sizeof(run), "/run/user/%u", (unsigned)geteuid());
	if (stat(run, &st) == 0 && S_ISDIR(st.st_mode) &&
	    access(run, W_OK) == 0)
		return xasprintf("%s/rollover-%d.sock", run, (int)getpid());
	return xasprintf("/tmp/rollover-%u-%d.sock", (unsigned)geteuid(),
			 (int)getpid());
}

static void quick_check_command(const char *cmd)
{
	struct stat st;

	if (stat(cmd, &st) == -1)
		fatal(EXIT_USAGE, "%s", cmd);
	if (!S_ISREG(st.st_mode))
		fatalx(EXIT_USAGE, "%s: not a regular file", cmd);
	if (access(cmd, X_OK) == -1)
		fatalx(EXIT_USAGE, "%s: not executable", cmd);
}

struct config *quick_config(const struct quick *q)
{
	struct config *c = xcalloc(1, sizeof(*c));
	struct group_conf *g = xcalloc(1, sizeof(*g));
	const char *why;

	c->control = quick_control();
	c->control_mode = 0600;
	c->control_gid = (gid_t)-1;
	c->log_level = LOG_WARN;
	c->groups = g;
	c->ngroups = 1;

	g->at.file = xstrdup("command line");
	g->command = quick_command(q->argv[0]);
	quick_check_command(g->command);
	g->name = quick_name(g->command);
	g->args = strv_dup(q->argv + 1, q->argc - 1);
	g->nargs = q->argc - 1;
	g->env = strv_dup(NULL, 0);
	g->uid = geteuid();
	g->gid = getegid();
	g->workers = q->workers;
	g->listen = xcalloc(q->nlisten, sizeof(*g->listen));
	g->listen_at = xcalloc(q->nlisten, sizeof(*g->listen_at));
	for (size_t i = 0; i < q->nlisten; i++) {
		if (addr_parse(q->listen[i], &g->listen[i], &why) == -1)
			fatalx(EXIT_USAGE, "-l %s: %s", q->listen[i], why);
		for (size_t j = 0; j < i; j++)
			if (addr_equal(&g->listen[i], &g->listen[j]))
				fatalx(EXIT_USAGE, "-l %s: given twice",
				       q->listen[i]);
		g->listen_at[i].file = xstrdup("-l");
		g->nlisten++;
	}
	g->listen_mode = LISTEN_SHARED;
	g->ready_notify = q->ready_notify;
	g->ready_ms = q->ready_ms;
	g->ready_timeout_ms = 10000;
	g->stop_signal = SIGTERM;
	g->stop_timeout_ms = QUICK_STOP_TIMEOUT_MS;
	g->watch = q->watch;
	g->watch_paths = strv_dup(q->watch_paths, q->nwatch_paths);
	g->nwatch_paths = q->nwatch_paths;
	g->settle_ms = QUICK_SETTLE_MS;
	g->settle_max_ms = 2000;

	quick_mode = 1;
	return c;
}

static void quick_say(const char *colour, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void quick_say(const char *colour, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Asked each time: a self-upgrade keeps no such state. */
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\033[%sm%s\033[0m\n", colour, line);
	else
		fprintf(stderr, "%s\n", line);
}

void quick_started(const struct config *c)
{
	const struct group_conf *g = &c->groups[0];

	for (size_t i = 0; i < g->nlisten; i++)
		quick_say("1", "rollover: %s on %s", g->command,
			  g->listen[i].text);
	quick_say("2", "control: rolloverctl -S %s status", c->control);
}

/*
 * "reloaded in 23 ms (generation 5)" or "kept generation 4: new binary
 * exited with status 1 before ready".
 */
void quick_rollover_done(const struct wgroup *g)
{
	const struct rollover_record *r = &g->last;
	const char *reason = r->reason;

	if (!quick_mode || r->result == NULL)
		return;
	if (strcmp(r->result, "ok") == 0) {
		if (r->trigger == TRIGGER_START)
			quick_say("32", "ready in %llu ms (generation %u)",
				  (unsigned long long)r->duration_ms,
				  r->generation);
		else
			quick_say("32", "reloaded in %llu ms (generation %u)",
				  (unsigned long long)r->duration_ms,
				  r->generation);
	} else if (strcmp(r->result, "aborted") == 0) {
		/* "worker 0 exited ..." says less than "new binary exited". */
		if (g->workers == 1 && strncmp(reason, "worker 0 ", 9) == 0)
			reason += 9;
		quick_say("31", "kept generation %u: %s%s",
			  g->current != NULL ? g->current->number : 0,
			  reason == r->reason ? "" : "new binary ", reason);
	}
}
