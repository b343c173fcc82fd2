/*
 * config.c - read rollover.conf and check all of it before anything runs.
 *
 * Like a compiler, the loader goes on after a problem and reports every
 * one it finds, each as "FILE:LINE: message" naming the key, and only then
 * gives up: fixing a config one error per restart is tedious.  The caller
 * gets a complete config or NULL, never something half-checked.
 *
 * Relative paths in the file - command, directory, watch_paths, control,
 * pid_file, unix: addresses and @include - are relative to the directory
 * of the file, not to wherever the supervisor happens to be started, so a
 * config means the same thing however it is run.  They are stored
 * absolute.
 */
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libconfig.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rollover.h"

#define CONFIG_INCLUDE_DEPTH 10 /* libconfig's own limit */
#define CONFIG_NAME_MAX	     64
#define CONFIG_NAME_CHARS                                                      \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#define CONFIG_ENV_CHARS                                                       \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

/* One load in progress. */
struct config_ctx {
	const char *path; /* the main file, as the user named it */
	char *prefix;	  /* path up to its last '/', or "" */
	char *dir;	  /* absolute directory of the main file */
	void (*report)(const char *line);
	int errors;
	struct config *c;
	struct origin *name_at; /* where each group's name is written */
};

/*
 * One group being read.  The settings are kept for the checks that need
 * several keys (command needs user and group) and so run once all are read.
 */
struct config_gctx {
	struct group_conf *g;
	size_t index;
	const config_setting_t *name;
	const config_setting_t *command;
	const config_setting_t *user;
	const config_setting_t *group;
	const config_setting_t *settle_max;
	int settle_bad;
	char *login;   /* the user's passwd name, for getgrouplist() */
	int creds_bad; /* user or group unusable: who runs it is unknown */
};

/* ---- reporting --------------------------------------------------------- */

/*
 * How to show a file libconfig names: NULL is the main file (read from a
 * stream, it has no name), an include is named as written, relative to
 * the config's directory.
 */
static char *config_shown(const struct config_ctx *x, const char *file)
{
	if (file == NULL)
		return xstrdup(x->path);
	if (file[0] == '/')
		return xstrdup(file);
	return xasprintf("%s%s", x->prefix, file);
}

static void config_vfail(struct config_ctx *x, const char *file, int line,
			 const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void config_vfail(struct config_ctx *x, const char *file, int line,
			 const char *fmt, va_list ap)
{
	char *msg, *text, *p;

	if (vasprintf(&msg, fmt, ap) == -1)
		fatalx(1, "out of memory");
	if (line > 0)
		text = xasprintf("%s:%d: %s", file, line, msg);
	else
		text = xasprintf("%s: %s", file, msg);
	/* Values may hold newlines; the caller is promised one line. */
	for (p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (x->report != NULL)
		x->report(text);
	free(text);
	free(msg);
	x->errors++;
}

static void config_fail_at(struct config_ctx *x, const char *file, int line,
			   const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void config_fail_at(struct config_ctx *x, const char *file, int line,
			   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vfail(x, file, line, fmt, ap);
	va_end(ap);
}

static void config_fail(struct config_ctx *x, const config_setting_t *s,
			const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_fail(struct config_ctx *x, const config_setting_t *s,
			const char *fmt, ...)
{
	char *file = config_shown(x, config_setting_source_file(s));
	va_list ap;

	va_start(ap, fmt);
	config_vfail(x, file, config_setting_source_line(s), fmt, ap);
	va_end(ap);
	free(file);
}

static void config_origin(const struct config_ctx *x, const config_setting_t *s,
			  struct origin *o)
{
	o->file = config_shown(x, config_setting_source_file(s));
	o->line = config_setting_source_line(s);
}

/* The name of a setting, or of the array or list it is an element of. */
static const char *config_key(const config_setting_t *s)
{
	while (config_setting_name(s) == NULL &&
	       config_setting_parent(s) != NULL)
		s = config_setting_parent(s);
	return config_setting_name(s) != NULL ? config_setting_name(s) : "?";
}

/* ---- typed values ------------------------------------------------------ */

static const char *config_want_string(struct config_ctx *x,
				      const config_setting_t *s)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return config_setting_get_string(s);
	config_fail(x, s, "'%s' must be a string", config_key(s));
	return NULL;
}

static char *config_abs(const struct config_ctx *x, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	if (strcmp(x->dir, "/") == 0)
		return xasprintf("/%s", p);
	return xasprintf("%s/%s", x->dir, p);
}

/* A non-empty string naming a path, made absolute (see the top). */
static char *config_want_path(struct config_ctx *x, const config_setting_t *s)
{
	const char *v = config_want_string(x, s);

	if (v == NULL)
		return NULL;
	if (*v == '\0') {
		config_fail(x, s, "'%s' must not be empty", config_key(s));
		return NULL;
	}
	return config_abs(x, v);
}

/*
 * INT or INT64, range-checked.  A literal beyond 32 bits written without
 * the L suffix has already been truncated by libconfig and cannot be told
 * apart; the range check is what is left.
 */
static int config_want_int(struct config_ctx *x, const config_setting_t *s,
			   long long lo, long long hi, long long *v)
{
	int type = config_setting_type(s);

	if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
		config_fail(x, s, "'%s' must be an integer", config_key(s));
		return -1;
	}
	*v = config_setting_get_int64(s);
	if (*v < lo || *v > hi) {
		config_fail(x, s, "'%s' must be between %lld and %lld",
			    config_key(s), lo, hi);
		return -1;
	}
	return 0;
}

static int config_is_number(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
	case CONFIG_TYPE_FLOAT:
		return 1;
	}
	return 0;
}

/*
 * Seconds as milliseconds.  Integers are accepted too: libconfig's own
 * float lookup refuses "stop_timeout = 30", and AUTOCONVERT would also
 * turn 5.5 into 5 where an integer is expected.
 */
static int config_want_seconds(struct config_ctx *x, const config_setting_t *s,
			       double lo, double hi, uint64_t *ms)
{
	double v;

	if (!config_is_number(s)) {
		config_fail(x, s, "'%s' must be a number of seconds",
			    config_key(s));
		return -1;
	}
	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else
		v = (double)config_setting_get_int64(s);
	if (!(v >= lo && v <= hi)) {
		config_fail(x, s, "'%s' must be between %g and %g seconds",
			    config_key(s), lo, hi);
		return -1;
	}
	*ms = (uint64_t)(v * 1000.0 + 0.5);
	return 0;
}

static int config_want_bool(struct config_ctx *x, const config_setting_t *s,
			    int *v)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		config_fail(x, s, "'%s' must be true or false", config_key(s));
		return -1;
	}
	*v = config_setting_get_bool(s);
	return 0;
}

/*
 * How many strings s holds: an array or list of strings, or, if one_ok,
 * a single string.  -1 after reporting anything else.
 */
static int config_want_strings(struct config_ctx *x, const config_setting_t *s,
			       int one_ok)
{
	const char *what =
	    one_ok ? "a string or an array of strings" : "an array of strings";
	int type = config_setting_type(s), n;

	if (one_ok && type == CONFIG_TYPE_STRING)
		return 1;
	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
		config_fail(x, s, "'%s' must be %s", config_key(s), what);
		return -1;
	}
	n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e =
		    config_setting_get_elem(s, (unsigned)i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			config_fail(x, e, "'%s' must be %s", config_key(s),
				    what);
			return -1;
		}
	}
	return n;
}

/* Element i of what config_want_strings() accepted. */
static const config_setting_t *config_string_elem(const config_setting_t *s,
						  int i)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return s;
	return config_setting_get_elem(s, (unsigned)i);
}

static char **config_strv(size_t n)
{
	return xcalloc(n + 1, sizeof(char *));
}

/* ---- group keys -------------------------------------------------------- */

static int config_valid_name(const char *s)
{
	size_t n = strlen(s);

	/* Not starting with '-': rolloverctl would take it for an option. */
	return n >= 1 && n <= CONFIG_NAME_MAX && s[0] != '-' &&
	       strspn(s, CONFIG_NAME_CHARS) == n;
}

static void config_group_name(struct config_ctx *x, struct config_gctx *gx,
			      const config_setting_t *s)
{
	const struct config *c = x->c;
	const char *v;

	gx->name = s;
	if ((v = config_want_string(x, s)) == NULL)
		return;
	if (!config_valid_name(v)) {
		config_fail(x, s,
			    "'name' \"%s\" must be 1 to %d characters "
			    "from A-Z a-z 0-9 _ . -",
			    v, CONFIG_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < gx->index; i++) {
		if (c->groups[i].name != NULL &&
		    strcmp(c->groups[i].name, v) == 0) {
			config_fail(x, s, "'name' %s is already used at %s:%d",
				    v, x->name_at[i].file, x->name_at[i].line);
			return;
		}
	}
	gx->g->name = xstrdup(v);
	config_origin(x, s, &x->name_at[gx->index]);
}

/*
 * A relative command is resolved against the config file's directory,
 * not looked up in PATH: the supervisor watches this very file and must
 * know which one it is.  It is checked once user and group are known.
 */
static void config_group_command(struct config_ctx *x, struct config_gctx *gx,
				 const config_setting_t *s)
{
	gx->command = s;
	gx->g->command = config_want_path(x, s);
}

static void config_group_args(struct config_ctx *x, struct config_gctx *gx,
			      const config_setting_t *s)
{
	struct group_conf *g = gx->g;
	int n = config_want_strings(x, s, 0);

	if (n < 0)
		return;
	g->args = config_strv((size_t)n);
	for (int i = 0; i < n; i++)
		g->args[i] = xstrdup(config_setting_get_string_elem(s, i));
	g->nargs = (size_t)n;
}

static int config_env_reserved(const char *name)
{
	return strncmp(name, "LISTEN_", strlen("LISTEN_")) == 0 ||
	       strncmp(name, "ROLLOVER_", strlen("ROLLOVER_")) == 0 ||
	       strcmp(name, "NOTIFY_SOCKET") == 0;
}

static char *config_env_entry(struct config_ctx *x, const config_setting_t *e)
{
	const char *name = config_setting_name(e);

	if (isdigit((unsigned char)name[0]) ||
	    strspn(name, CONFIG_ENV_CHARS) != strlen(name)) {
		config_fail(x, e, "'env' key '%s' is not a valid variable name",
			    name);
		return NULL;
	}
	/* The worker protocol: a worker must be able to trust these. */
	if (config_env_reserved(name)) {
		config_fail(x, e,
			    "'env' key '%s' is reserved: rollover sets "
			    "it for each worker",
			    name);
		return NULL;
	}
	switch (config_setting_type(e)) {
	case CONFIG_TYPE_STRING:
		return xasprintf("%s=%s", name, config_setting_get_string(e));
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return xasprintf("%s=%lld", name, config_setting_get_int64(e));
	}
	config_fail(x, e, "'env.%s' must be a string or an integer", name);
	return NULL;
}

static void config_group_env(struct config_ctx *x, struct config_gctx *gx,
			     const config_setting_t *s)
{
	struct group_conf *g = gx->g;
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		config_fail(x, s,
			    "'env' must be a group: { KEY = \"value\"; }");
		return;
	}
	n = config_setting_length(s);
	g->env = config_strv((size_t)n);
	for (int i = 0; i < n; i++) {
		char *kv = config_env_entry(
		    x, config_setting_get_elem(s, (unsigned)i));

		if (kv != NULL)
			g->env[g->nenv++] = kv;
	}
}

static void config_group_directory(struct config_ctx *x, struct config_gctx *gx,
				   const config_setting_t *s)
{
	char *dir = config_want_path(x, s);
	struct stat st;

	if (dir == NULL)
		return;
	if (stat(dir, &st) == -1) {
		if (errno == ENOENT)
			config_fail(x, s, "'directory' %s does not exist", dir);
		else
			config_fail(x, s, "'directory' %s: %s", dir,
				    strerror(errno));
		free(dir);
	} else if (!S_ISDIR(st.st_mode)) {
		config_fail(x, s, "'directory' %s is not a directory", dir);
		free(dir);
	} else
		gx->g->directory = dir;
}

/* user and group are resolved later, once both are known. */
static void config_group_user(struct config_ctx *x, struct config_gctx *gx,
			      const config_setting_t *s)
{
	const char *v = config_want_string(x, s);

	if (v == NULL || *v == '\0') {
		if (v != NULL)
			config_fail(x, s, "'user' must not be empty");
		gx->creds_bad = 1;
	} else {
		gx->user = s;
		gx->g->user = xstrdup(v);
	}
}

static void config_group_group(struct config_ctx *x, struct config_gctx *gx,
			       const config_setting_t *s)
{
	const char *v = config_want_string(x, s);

	if (v == NULL || *v == '\0') {
		if (v != NULL)
			config_fail(x, s, "'group' must not be empty");
		gx->creds_bad = 1;
	} else {
		gx->group = s;
		gx->g->group = xstrdup(v);
	}
}

static void config_group_workers(struct config_ctx *x, struct config_gctx *gx,
				 const config_setting_t *s)
{
	long long v;

	if (config_want_int(x, s, 0, 1024, &v) == -1)
		return;
	if (v == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		v = ncpu > 0 ? ncpu : 1;
	}
	gx->g->workers = (unsigned)v;
}

/*
 * A relative unix: path is made absolute like every other path; the
 * result must still fit in sun_path, so it is what gets parsed.
 */
static int config_parse_listen(struct config_ctx *x, const config_setting_t *e,
			       struct addr *a)
{
	const char *v = config_setting_get_string(e), *why;
	char *abs = NULL, *full = NULL;
	int r;

	if (strncmp(v, "unix:", 5) == 0 && v[5] != '\0' && v[5] != '/' &&
	    v[5] != '@') {
		abs = config_abs(x, v + 5);
		full = xasprintf("unix:%s", abs);
		v = full;
	}
	if ((r = addr_parse(v, a, &why)) == -1)
		config_fail(x, e, "'listen' \"%s\": %s", v, why);
	free(full);
	free(abs);
	return r;
}

/* Where a is already listed, in any group read so far; NULL if nowhere. */
static const struct origin *config_listen_used(const struct config *c,
					       const struct addr *a)
{
	for (size_t i = 0; i < c->ngroups; i++)
		for (size_t j = 0; j < c->groups[i].nlisten; j++)
			if (addr_equal(&c->groups[i].listen[j], a))
				return &c->groups[i].listen_at[j];
	return NULL;
}

static void config_group_listen(struct config_ctx *x, struct config_gctx *gx,
				const config_setting_t *s)
{
	struct group_conf *g = gx->g;
	const struct origin *used;
	int n = config_want_strings(x, s, 1);
	struct addr a;

	if (n < 0)
		return;
	g->listen = xcalloc((size_t)n, sizeof(*g->listen));
	g->listen_at = xcalloc((size_t)n, sizeof(*g->listen_at));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_string_elem(s, i);

		if (config_parse_listen(x, e, &a) == -1)
			continue;
		if ((used = config_listen_used(x->c, &a)) != NULL) {
			config_fail(x, e,
				    "'listen' %s is already used at %s:%d",
				    a.text, used->file, used->line);
			continue;
		}
		g->listen[g->nlisten] = a;
		config_origin(x, e, &g->listen_at[g->nlisten]);
		g->nlisten++;
	}
}

/* How many new workers may be starting at once in a rollover; 0: all. */
static void config_group_rollout_batch(struct config_ctx *x,
				       struct config_gctx *gx,
				       const config_setting_t *s)
{
	long long v;

	if (config_want_int(x, s, 0, 1024, &v) == 0)
		gx->g->rollout_batch = (unsigned)v;
}

static void config_group_backlog(struct config_ctx *x, struct config_gctx *gx,
				 const config_setting_t *s)
{
	long long v;

	if (config_want_int(x, s, 1, 65535, &v) == 0)
		gx->g->backlog = (int)v;
}

static void config_group_listen_mode(struct config_ctx *x,
				     struct config_gctx *gx,
				     const config_setting_t *s)
{
	const char *v = config_want_string(x, s);

	if (v == NULL)
		return;
	if (strcmp(v, "shared") == 0)
		gx->g->listen_mode = LISTEN_SHARED;
	else if (strcmp(v, "per-worker") == 0)
		gx->g->listen_mode = LISTEN_PER_WORKER;
	else
		config_fail(x, s,
			    "'listen_mode' must be \"shared\" or "
			    "\"per-worker\"");
}

static void config_group_ready(struct config_ctx *x, struct config_gctx *gx,
			       const config_setting_t *s)
{
	struct group_conf *g = gx->g;

	if (config_setting_type(s) == CONFIG_TYPE_STRING &&
	    strcmp(config_setting_get_string(s), "notify") == 0) {
		g->ready_notify = 1;
		g->ready_ms = 0;
	} else if (config_is_number(s)) {
		if (config_want_seconds(x, s, 0, 3600, &g->ready_ms) == 0)
			g->ready_notify = 0;
	} else
		config_fail(x, s,
			    "'ready' must be \"notify\" or a number of "
			    "seconds");
}

static void config_group_ready_timeout(struct config_ctx *x,
				       struct config_gctx *gx,
				       const config_setting_t *s)
{
	/* Above zero: the smallest that survives the conversion to ms. */
	config_want_seconds(x, s, 0.001, 3600, &gx->g->ready_timeout_ms);
}

static void config_group_stop_signal(struct config_ctx *x,
				     struct config_gctx *gx,
				     const config_setting_t *s)
{
	const char *v = config_want_string(x, s);
	int sig;

	if (v == NULL)
		return;
	if ((sig = signal_parse(v)) == -1)
		config_fail(x, s, "'stop_signal' \"%s\" is not a signal name",
			    v);
	else if (sig == SIGSTOP)
		config_fail(x, s,
			    "'stop_signal' cannot be STOP: a stopped "
			    "worker never exits");
	else
		gx->g->stop_signal = sig;
}

static void config_group_stop_timeout(struct config_ctx *x,
				      struct config_gctx *gx,
				      const config_setting_t *s)
{
	config_want_seconds(x, s, 0, 86400, &gx->g->stop_timeout_ms);
}

static void config_group_watch(struct config_ctx *x, struct config_gctx *gx,
			       const config_setting_t *s)
{
	config_want_bool(x, s, &gx->g->watch);
}

/* Not required to exist: what is watched may appear later. */
static void config_group_watch_paths(struct config_ctx *x,
				     struct config_gctx *gx,
				     const config_setting_t *s)
{
	struct group_conf *g = gx->g;
	int n = config_want_strings(x, s, 1);
	char *p;

	if (n < 0)
		return;
	g->watch_paths = config_strv((size_t)n);
	for (int i = 0; i < n; i++)
		if ((p = config_want_path(x, config_string_elem(s, i))) != NULL)
			g->watch_paths[g->nwatch_paths++] = p;
}

static void config_group_settle(struct config_ctx *x, struct config_gctx *gx,
				const config_setting_t *s)
{
	if (config_want_seconds(x, s, 0, 60, &gx->g->settle_ms) == -1)
		gx->settle_bad = 1;
}

/* Checked against settle once both are read. */
static void config_group_settle_max(struct config_ctx *x,
				    struct config_gctx *gx,
				    const config_setting_t *s)
{
	if (config_want_seconds(x, s, 0, 600, &gx->g->settle_max_ms) == 0)
		gx->settle_max = s;
}

/* ---- umask, no_new_privs and limits ------------------------------------- */

/*
 * An octal string, as control_mode is: libconfig has no octal literals,
 * and a decimal 27 that means 027 is an easy slip.
 */
static void config_group_umask(struct config_ctx *x, struct config_gctx *gx,
			       const config_setting_t *s)
{
	const char *v = config_setting_type(s) == CONFIG_TYPE_STRING
			    ? config_setting_get_string(s)
			    : "";
	size_t n = strlen(v);
	unsigned long mode = strtoul(v, NULL, 8);

	if (n == 0 || n > 4 || strspn(v, "01234567") != n || mode > 0777) {
		config_fail(x, s,
			    "'umask' must be an octal mode in a string, "
			    "like \"0027\"");
		return;
	}
	gx->g->umask_set = 1;
	gx->g->umask = (mode_t)mode;
}

static void config_group_no_new_privs(struct config_ctx *x,
				      struct config_gctx *gx,
				      const config_setting_t *s)
{
	config_want_bool(x, s, &gx->g->no_new_privs);
}

/* The names of setrlimit(2)'s resources, as prlimit(1) has them. */
static const struct config_limit {
	const char *name;
	int resource;
} config_limits[] = {
    {"as", RLIMIT_AS},
    {"core", RLIMIT_CORE},
    {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},
    {"fsize", RLIMIT_FSIZE},
    {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK},
    {"msgqueue", RLIMIT_MSGQUEUE},
    {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},
    {"nproc", RLIMIT_NPROC},
    {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},
    {"rttime", RLIMIT_RTTIME},
    {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

const char *config_limit_name(int resource)
{
	for (size_t i = 0; i < ARRAY_LEN(config_limits); i++)
		if (config_limits[i].resource == resource)
			return config_limits[i].name;
	return "?";
}

static const struct config_limit *config_limit_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(config_limits); i++)
		if (strcmp(config_limits[i].name, name) == 0)
			return &config_limits[i];
	return NULL;
}

/* A limit as a person writes it, into buf. */
static const char *config_limit_str(uint64_t v, char *buf, size_t len)
{
	if (v == LIMIT_INFINITY)
		snprintf(buf, len, "infinity");
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

static uint64_t config_rlim(rlim_t v)
{
	return v == RLIM_INFINITY ? LIMIT_INFINITY : (uint64_t)v;
}

/*
 * A number from 0, or "infinity".  libconfig wraps a literal beyond 32
 * bits that lacks the L suffix, often to a negative number: say so.
 */
static int config_limit_value(struct config_ctx *x, const config_setting_t *s,
			      const char *key, uint64_t *v)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		if (strcmp(config_setting_get_string(s), "infinity") != 0)
			break;
		*v = LIMIT_INFINITY;
		return 0;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		if (config_setting_get_int64(s) >= 0) {
			*v = (uint64_t)config_setting_get_int64(s);
			return 0;
		}
		config_fail(x, s,
			    "'%s' must not be negative (a number above "
			    "2147483647 needs an L suffix: 4294967296L)",
			    key);
		return -1;
	}
	config_fail(x, s, "'%s' must be a number or \"infinity\"", key);
	return -1;
}

/* { soft = ...; hard = ...; }: both are needed, soft not above hard. */
static int config_limit_pair(struct config_ctx *x, const config_setting_t *s,
			     const char *key, struct limit_conf *l)
{
	const config_setting_t *soft = config_setting_get_member(s, "soft");
	const config_setting_t *hard = config_setting_get_member(s, "hard");
	int n = config_setting_length(s), r = 0;
	char *sub;

	for (int i = 0; i < n; i++) {
		const config_setting_t *m =
		    config_setting_get_elem(s, (unsigned)i);

		if (m != soft && m != hard) {
			config_fail(x, m, "unknown key '%s.%s'", key,
				    config_setting_name(m));
			r = -1;
		}
	}
	if (soft == NULL || hard == NULL) {
		config_fail(x, s, "'%s' must set both 'soft' and 'hard'", key);
		return -1;
	}
	sub = xasprintf("%s.soft", key);
	if (config_limit_value(x, soft, sub, &l->soft) == -1)
		r = -1;
	free(sub);
	sub = xasprintf("%s.hard", key);
	if (config_limit_value(x, hard, sub, &l->hard) == -1)
		r = -1;
	free(sub);
	if (r == 0 && l->soft > l->hard) {
		config_fail(x, s, "'%s' soft limit is above its hard limit",
			    key);
		r = -1;
	}
	return r;
}

/* fs.nr_open, the most nofile can be, even for root; -1 if unknown. */
static int config_nr_open(uint64_t *max)
{
	unsigned long long v = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	int r;

	if (f == NULL)
		return -1;
	r = fscanf(f, "%llu", &v) == 1 ? 0 : -1;
	fclose(f);
	*max = v;
	return r;
}

/*
 * Whether we may raise a hard limit.  Asked of the kernel rather than
 * guessed from the uid: root in a container often lacks it.
 */
static int config_cap_sys_resource(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) == -1)
		return geteuid() == 0;
	return (d[CAP_TO_INDEX(CAP_SYS_RESOURCE)].effective &
		CAP_TO_MASK(CAP_SYS_RESOURCE)) != 0;
}

/*
 * What setrlimit() in the worker would refuse, found now rather than at
 * every start: nofile above fs.nr_open, and a hard limit above ours
 * without the capability to raise it.  The worker sets its limits before
 * dropping privileges, so ours are the ones that count.
 */
static int config_limit_check(struct config_ctx *x, const config_setting_t *s,
			      const char *key, const struct limit_conf *l)
{
	struct rlimit cur;
	uint64_t max;

	if (l->resource == RLIMIT_NOFILE && config_nr_open(&max) == 0 &&
	    l->hard > max) {
		config_fail(x, s, "'%s' must be at most %llu (fs.nr_open)", key,
			    (unsigned long long)max);
		return -1;
	}
	if (getrlimit(l->resource, &cur) == 0 &&
	    l->hard > config_rlim(cur.rlim_max) && !config_cap_sys_resource()) {
		char want[24], have[24];

		config_fail(x, s,
			    "'%s' %s is above rollover's own hard limit, %s, "
			    "and raising it needs CAP_SYS_RESOURCE",
			    key, config_limit_str(l->hard, want, sizeof(want)),
			    config_limit_str(config_rlim(cur.rlim_max), have,
					     sizeof(have)));
		return -1;
	}
	return 0;
}

static void config_limit_entry(struct config_ctx *x, struct group_conf *g,
			       const config_setting_t *e)
{
	const struct config_limit *k =
	    config_limit_find(config_setting_name(e));
	struct limit_conf l;
	char *key;
	int r;

	if (k == NULL) {
		config_fail(x, e, "unknown key 'limits.%s'",
			    config_setting_name(e));
		return;
	}
	key = xasprintf("limits.%s", k->name);
	l.resource = k->resource;
	if (config_setting_type(e) == CONFIG_TYPE_GROUP)
		r = config_limit_pair(x, e, key, &l);
	else if ((r = config_limit_value(x, e, key, &l.soft)) == 0)
		l.hard = l.soft;
	if (r == 0 && config_limit_check(x, e, key, &l) == 0)
		g->limits[g->nlimits++] = l;
	free(key);
}

static void config_group_limits(struct config_ctx *x, struct config_gctx *gx,
				const config_setting_t *s)
{
	struct group_conf *g = gx->g;
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		config_fail(x, s,
			    "'limits' must be a group: { nofile = 4096; ... }");
		return;
	}
	n = config_setting_length(s);
	g->limits = xcalloc((size_t)n, sizeof(*g->limits));
	for (int i = 0; i < n; i++)
		config_limit_entry(x, g,
				   config_setting_get_elem(s, (unsigned)i));
}

static const struct config_group_key {
	const char *name;
	void (*fn)(struct config_ctx *, struct config_gctx *,
		   const config_setting_t *);
} config_group_keys[] = {
    {"name", config_group_name},
    {"command", config_group_command},
    {"args", config_group_args},
    {"env", config_group_env},
    {"directory", config_group_directory},
    {"user", config_group_user},
    {"group", config_group_group},
    {"umask", config_group_umask},
    {"no_new_privs", config_group_no_new_privs},
    {"limits", config_group_limits},
    {"workers", config_group_workers},
    {"listen", config_group_listen},
    {"backlog", config_group_backlog},
    {"listen_mode", config_group_listen_mode},
    {"ready", config_group_ready},
    {"ready_timeout", config_group_ready_timeout},
    {"stop_signal", config_group_stop_signal},
    {"stop_timeout", config_group_stop_timeout},
    {"watch", config_group_watch},
    {"watch_paths", config_group_watch_paths},
    {"settle", config_group_settle},
    {"settle_max", config_group_settle_max},
    {"rollout_batch", config_group_rollout_batch},
};

/* ---- credentials and the command --------------------------------------- */

/* A uid or gid written as a decimal number. */
static int config_numeric_id(const char *s, unsigned int *id)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	/* (uid_t)-1 means "unchanged" to setuid() and friends. */
	if (errno != 0 || *end != '\0' || v >= (unsigned int)-1)
		return -1;
	*id = (unsigned int)v;
	return 0;
}

static void config_resolve_user(struct config_ctx *x, struct config_gctx *gx)
{
	struct group_conf *g = gx->g;
	struct passwd *pw;
	unsigned int id;

	pw = getpwnam(g->user);
	if (pw == NULL && config_numeric_id(g->user, &id) == 0)
		pw = getpwuid((uid_t)id);
	if (pw != NULL) {
		g->uid = pw->pw_uid;
		g->gid = pw->pw_gid;
		gx->login = xstrdup(pw->pw_name);
	} else if (config_numeric_id(g->user, &id) == -1) {
		config_fail(x, gx->user, "'user' \"%s\": no such user",
			    g->user);
		gx->creds_bad = 1;
	} else if (g->group == NULL) {
		/* Without a passwd entry there is no primary group to use. */
		config_fail(x, gx->user,
			    "'user' %s has no passwd entry, so "
			    "'group' must be set",
			    g->user);
		gx->creds_bad = 1;
	} else
		g->uid = (uid_t)id;
}

static void config_resolve_group(struct config_ctx *x, struct config_gctx *gx)
{
	struct group_conf *g = gx->g;
	struct group *gr;
	unsigned int id;

	if ((gr = getgrnam(g->group)) != NULL)
		g->gid = gr->gr_gid;
	else if (config_numeric_id(g->group, &id) == 0)
		g->gid = (gid_t)id;
	else {
		config_fail(x, gx->group, "'group' \"%s\": no such group",
			    g->group);
		gx->creds_bad = 1;
	}
}

/*
 * The worker's groups as initgroups() would set them, gid included; none
 * for a numeric user without a passwd entry.
 */
static void config_supplementary(struct group_conf *g, const char *login)
{
	int n = 16;

	if (login == NULL)
		return;
	g->supplementary = xcalloc((size_t)n, sizeof(gid_t));
	for (;;) {
		int have = n;

		if (getgrouplist(login, g->gid, g->supplementary, &n) != -1)
			break;
		/* n now says how many there are; grow anyway if it did not. */
		if (n <= have)
			n = have * 2;
		g->supplementary =
		    xrealloc(g->supplementary, (size_t)n * sizeof(gid_t));
	}
	g->nsupplementary = (size_t)n;
}

static int config_in_group(const struct group_conf *g, gid_t want)
{
	if (want == g->gid)
		return 1;
	for (size_t i = 0; i < g->nsupplementary; i++)
		if (g->supplementary[i] == want)
			return 1;
	return 0;
}

/*
 * The kernel's rule for executing a regular file, without ACLs,
 * capabilities or mount options: the owner class alone decides if it
 * matches, else the group class, else others; root needs any execute bit.
 */
static int config_can_exec(const struct stat *st, const struct group_conf *g)
{
	if (g->uid == 0)
		return (st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0;
	if (st->st_uid == g->uid)
		return (st->st_mode & S_IXUSR) != 0;
	if (config_in_group(g, st->st_gid))
		return (st->st_mode & S_IXGRP) != 0;
	return (st->st_mode & S_IXOTH) != 0;
}

/*
 * Without `user`, the worker runs as we do and the kernel can answer;
 * with it, the mode bits are checked for that user, since asking the
 * kernel would need its credentials.
 */
static void config_check_command(struct config_ctx *x, struct config_gctx *gx)
{
	const struct group_conf *g = gx->g;
	const char *cmd = g->command;
	struct stat st;

	if (stat(cmd, &st) == -1) {
		if (errno == ENOENT)
			config_fail(x, gx->command,
				    "'command' %s does not exist", cmd);
		else
			config_fail(x, gx->command, "'command' %s: %s", cmd,
				    strerror(errno));
	} else if (!S_ISREG(st.st_mode))
		config_fail(x, gx->command,
			    "'command' %s is not a regular file", cmd);
	else if (gx->creds_bad)
		return; /* already reported; whose permissions is unknown */
	else if (g->user == NULL) {
		if (faccessat(AT_FDCWD, cmd, X_OK, AT_EACCESS) == -1)
			config_fail(x, gx->command,
				    "'command' %s is not "
				    "executable",
				    cmd);
	} else if (!config_can_exec(&st, g))
		config_fail(x, gx->command,
			    "'command' %s is not executable by "
			    "user %s",
			    cmd, g->user);
}

/* ---- groups ------------------------------------------------------------ */

static void config_group_defaults(struct group_conf *g)
{
	g->uid = geteuid();
	g->gid = getegid();
	g->workers = 1;
	g->listen_mode = LISTEN_SHARED;
	g->ready_notify = 1;
	g->ready_timeout_ms = 10000;
	g->stop_signal = SIGTERM;
	g->stop_timeout_ms = 30000;
	g->settle_ms = 100;
	g->settle_max_ms = 2000;
}

/* The checks that need more than one key. */
static void config_group_finish(struct config_ctx *x, struct config_gctx *gx)
{
	struct group_conf *g = gx->g;

	if (gx->name == NULL)
		config_fail_at(x, g->at.file, g->at.line,
			       "missing required key 'name'");
	if (gx->command == NULL)
		config_fail_at(x, g->at.file, g->at.line,
			       "missing required key 'command'");
	if (g->user != NULL)
		config_resolve_user(x, gx);
	if (g->group != NULL)
		config_resolve_group(x, gx);
	if ((g->user != NULL || g->group != NULL) && !gx->creds_bad &&
	    geteuid() != 0) {
		/* Otherwise every start would fail in setgroups(). */
		config_fail(x, gx->user != NULL ? gx->user : gx->group,
			    "'%s' needs rollover to run as root",
			    gx->user != NULL ? "user" : "group");
		gx->creds_bad = 1;
	}
	if (!gx->creds_bad)
		config_supplementary(g, gx->login);
	if (g->command != NULL)
		config_check_command(x, gx);
	if (gx->settle_max == NULL && g->settle_max_ms < g->settle_ms)
		g->settle_max_ms = g->settle_ms; /* only settle was raised */
	else if (gx->settle_max != NULL && !gx->settle_bad &&
		 g->settle_max_ms < g->settle_ms)
		config_fail(x, gx->settle_max,
			    "'settle_max' must be at least "
			    "'settle' (%g seconds)",
			    (double)g->settle_ms / 1000);
	if (g->args == NULL)
		g->args = config_strv(0);
	if (g->env == NULL)
		g->env = config_strv(0);
	if (g->watch_paths == NULL)
		g->watch_paths = config_strv(0);
}

static const struct config_group_key *config_group_key(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(config_group_keys); i++)
		if (strcmp(config_group_keys[i].name, name) == 0)
			return &config_group_keys[i];
	return NULL;
}

static void config_load_group(struct config_ctx *x, const config_setting_t *s)
{
	struct config *c = x->c;
	struct config_gctx gx;
	int n = config_setting_length(s);

	memset(&gx, 0, sizeof(gx));
	gx.index = c->ngroups;
	gx.g = &c->groups[c->ngroups++]; /* counted now, so freed if bad */
	config_group_defaults(gx.g);
	config_origin(x, s, &gx.g->at);
	for (int i = 0; i < n; i++) {
		const config_setting_t *m =
		    config_setting_get_elem(s, (unsigned)i);
		const struct config_group_key *k =
		    config_group_key(config_setting_name(m));

		if (k == NULL)
			config_fail(x, m, "unknown key '%s'",
				    config_setting_name(m));
		else
			k->fn(x, &gx, m);
	}
	config_group_finish(x, &gx);
	free(gx.login);
}

/* ---- top level --------------------------------------------------------- */

static void config_top_control(struct config_ctx *x, const config_setting_t *s)
{
	struct sockaddr_un sun;
	char *p;

	if ((p = config_want_path(x, s)) == NULL)
		return;
	if (strlen(p) >= sizeof(sun.sun_path)) {
		config_fail(x, s,
			    "'control' %s is too long for a unix socket "
			    "(at most %zu bytes)",
			    p, sizeof(sun.sun_path) - 1);
		free(p);
		return;
	}
	x->c->control = p;
}

static void config_top_pid_file(struct config_ctx *x, const config_setting_t *s)
{
	x->c->pid_file = config_want_path(x, s);
}

static void config_top_log_file(struct config_ctx *x, const config_setting_t *s)
{
	x->c->log_file = config_want_path(x, s);
}

/* An octal string, as chmod takes it: libconfig has no octal literals. */
static void config_top_control_mode(struct config_ctx *x,
				    const config_setting_t *s)
{
	const char *v = config_want_string(x, s);
	unsigned long mode;
	char *end;

	if (v == NULL)
		return;
	errno = 0;
	mode = strtoul(v, &end, 8);
	if (*v == '\0' || *end != '\0' || errno != 0 || mode > 0777 ||
	    (mode & 0600) != 0600)
		config_fail(
		    x, s,
		    "'control_mode' must be an octal mode like \"0660\" "
		    "that gives the owner read and write");
	else
		x->c->control_mode = (mode_t)mode;
}

static void config_top_control_group(struct config_ctx *x,
				     const config_setting_t *s)
{
	const char *v = config_want_string(x, s);
	struct group *gr;
	unsigned int id;

	if (v == NULL)
		return;
	if ((gr = getgrnam(v)) != NULL)
		x->c->control_gid = gr->gr_gid;
	else if (config_numeric_id(v, &id) == 0)
		x->c->control_gid = (gid_t)id;
	else
		config_fail(x, s, "'control_group' \"%s\": no such group", v);
}

static void config_top_log_level(struct config_ctx *x,
				 const config_setting_t *s)
{
	const char *v = config_want_string(x, s);

	if (v != NULL && log_level_parse(v, &x->c->log_level) == -1)
		config_fail(x, s,
			    "'log_level' must be \"error\", \"warn\", "
			    "\"info\" or \"debug\"");
}

static void config_top_groups(struct config_ctx *x, const config_setting_t *s)
{
	struct config *c = x->c;
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_fail(x, s,
			    "'groups' must be a list of groups: "
			    "( { ... }, ... )");
		return;
	}
	if ((n = config_setting_length(s)) == 0) {
		config_fail(x, s, "'groups' must hold at least one group");
		return;
	}
	c->groups = xcalloc((size_t)n, sizeof(*c->groups));
	x->name_at = xcalloc((size_t)n, sizeof(*x->name_at));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e =
		    config_setting_get_elem(s, (unsigned)i);

		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			config_fail(x, e,
				    "'groups' must be a list of groups: "
				    "( { ... }, ... )");
		else
			config_load_group(x, e);
	}
}

static const struct config_top_key {
	const char *name;
	void (*fn)(struct config_ctx *, const config_setting_t *);
} config_top_keys[] = {
    {"control", config_top_control},
    {"control_mode", config_top_control_mode},
    {"control_group", config_top_control_group},
    {"pid_file", config_top_pid_file},
    {"log_file", config_top_log_file},
    {"log_level", config_top_log_level},
    {"groups", config_top_groups},
};

static const struct config_top_key *config_top_key(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(config_top_keys); i++)
		if (strcmp(config_top_keys[i].name, name) == 0)
			return &config_top_keys[i];
	return NULL;
}

static void config_load_top(struct config_ctx *x, const config_setting_t *root)
{
	int n = config_setting_length(root);

	for (int i = 0; i < n; i++) {
		const config_setting_t *m =
		    config_setting_get_elem(root, (unsigned)i);
		const struct config_top_key *k =
		    config_top_key(config_setting_name(m));

		if (k == NULL)
			config_fail(x, m, "unknown key '%s'",
				    config_setting_name(m));
		else
			k->fn(x, m);
	}
	if (config_setting_get_member(root, "groups") == NULL)
		config_fail_at(x, x->path, 0, "missing required key 'groups'");
	if (x->c->control == NULL)
		x->c->control = control_default_path();
}

/* ---- reading the file -------------------------------------------------- */

/*
 * The name in an `@include "NAME"` line of len bytes, as libconfig's
 * scanner sees it; NULL if the line is no @include.  One whose name this
 * cannot read as libconfig does - with escapes, a NUL byte (libconfig
 * cuts the name there) or no closing quote on the line - is *bad.
 */
static char *config_include_name(char *line, size_t len, int *bad)
{
	char *p = line + strspn(line, " \t"), *end;

	*bad = 0;
	if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return NULL;
	p += 8 + strspn(p + 8, " \t");
	if (*p++ != '"')
		return NULL;
	end = memchr(p, '"', len - (size_t)(p - line));
	if (end == NULL || memchr(p, '\\', (size_t)(end - p)) != NULL ||
	    memchr(p, '\0', (size_t)(end - p)) != NULL) {
		*bad = 1;
		return NULL;
	}
	*end = '\0';
	return p;
}

/*
 * libconfig 1.5 calls exit() ("input in flex scanner failed") when an
 * @include names a directory, and `@include "conf.d"` is an easy mistake;
 * a reload must not kill the supervisor.  So follow the @include lines
 * first and refuse directories, and names libconfig would read otherwise
 * than this line-based look does ("conf\.d" is conf.d to it).
 */
static int config_scan_includes(struct config_ctx *x, FILE *f, const char *file,
				int depth)
{
	char *line = NULL, *shown;
	size_t cap = 0;
	int lineno = 0, r = 0, bad;
	struct stat st;
	ssize_t n;
	FILE *inc;

	while ((n = getline(&line, &cap, f)) != -1) {
		const char *name = config_include_name(line, (size_t)n, &bad);

		lineno++;
		if (bad) {
			shown = config_shown(x, file);
			config_fail_at(x, shown, lineno,
				       "cannot include a file whose name has "
				       "escapes, NUL bytes or line breaks");
			free(shown);
			r = -1;
		}
		if (name == NULL || stat(name, &st) == -1)
			continue;
		/*
		 * libconfig's scanner exits on a directory, and a FIFO or a
		 * device could keep a reload reading forever.
		 */
		if (!S_ISREG(st.st_mode)) {
			shown = config_shown(x, file);
			config_fail_at(
			    x, shown, lineno, "cannot include %s: %s", name,
			    S_ISDIR(st.st_mode) ? "it is a directory"
						: "not a regular file");
			free(shown);
			r = -1;
		} else if (depth + 1 < CONFIG_INCLUDE_DEPTH &&
			   (inc = fopen(name, "re")) != NULL) {
			if (config_scan_includes(x, inc, name, depth + 1) == -1)
				r = -1;
			fclose(inc);
		}
	}
	free(line);
	return r;
}

static void config_parse_error(struct config_ctx *x, const config_t *cfg)
{
	char *file = config_shown(x, config_error_file(cfg));

	config_fail_at(x, file, config_error_line(cfg), "%s",
		       config_error_text(cfg));
	free(file);
}

/* Parse the file at base, relative to the current directory. */
static int config_parse(struct config_ctx *x, config_t *cfg, const char *base)
{
	struct stat st;
	FILE *f;
	int fd, r = -1;

	if ((fd = open(base, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		config_fail_at(x, x->path, 0, "cannot read: %s",
			       strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	/* The flex scanner would exit() on a directory, as for includes. */
	if (S_ISDIR(st.st_mode)) {
		config_fail_at(x, x->path, 0, "cannot read: %s",
			       strerror(EISDIR));
		close(fd);
		return -1;
	}
	if ((f = fdopen(fd, "r")) == NULL)
		fatal(1, "fdopen");
	/*
	 * Read from a stream rather than by name, so that libconfig calls
	 * the main file NULL and only includes by their names.  A pipe
	 * cannot be read twice, so only a regular file is scanned.
	 */
	if (!S_ISREG(st.st_mode) || config_scan_includes(x, f, NULL, 0) == 0) {
		rewind(f);
		if (config_read(cfg, f) == CONFIG_TRUE)
			r = 0;
		else
			config_parse_error(x, cfg);
	}
	fclose(f);
	return r;
}

/*
 * libconfig resolves relative @include paths against the working
 * directory, and config_set_include_dir() breaks absolute ones; so read
 * the file from its own directory and come back.  The supervisor is
 * single-threaded, so nothing else sees the detour.
 */
static int config_load_file(struct config_ctx *x, config_t *cfg)
{
	const char *base = x->path + strlen(x->prefix);
	int cwd, r = -1;

	if (*base == '\0' && x->prefix[0] != '\0')
		base = "."; /* "dir/": say it is a directory */

	/* O_PATH: fchdir() back works even to a directory we cannot list. */
	if ((cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1) {
		config_fail_at(x, x->path, 0,
			       "cannot read: working "
			       "directory: %s",
			       strerror(errno));
		return -1;
	}
	if (x->prefix[0] != '\0' && chdir(x->prefix) == -1)
		config_fail_at(x, x->path, 0, "cannot read: %s",
			       strerror(errno));
	else if ((x->dir = getcwd(NULL, 0)) == NULL)
		config_fail_at(x, x->path, 0, "cannot read: directory: %s",
			       strerror(errno));
	else
		r = config_parse(x, cfg, base);
	if (fchdir(cwd) == -1)
		fatal(1, "cannot return to the working directory");
	close(cwd);
	return r;
}

struct config *config_load(const char *path, void (*report)(const char *line))
{
	const char *slash = strrchr(path, '/');
	struct config_ctx x;
	struct config *c;
	config_t cfg;

	memset(&x, 0, sizeof(x));
	x.path = path;
	x.report = report;
	if (slash != NULL)
		x.prefix = xasprintf("%.*s", (int)(slash - path + 1), path);
	else
		x.prefix = xstrdup("");
	c = x.c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	c->log_level = LOG_INFO;
	c->control_mode = 0600;
	c->control_gid = (gid_t)-1;

	config_init(&cfg);
	if (config_load_file(&x, &cfg) == 0)
		config_load_top(&x, config_root_setting(&cfg));
	config_destroy(&cfg);

	for (size_t i = 0; x.name_at != NULL && i < c->ngroups; i++)
		free(x.name_at[i].file);
	free(x.name_at);
	free(x.prefix);
	free(x.dir);
	if (x.errors > 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

static void config_group_free(struct group_conf *g)
{
	free(g->at.file);
	free(g->name);
	free(g->command);
	strv_free(g->args);
	strv_free(g->env);
	free(g->directory);
	free(g->user);
	free(g->group);
	free(g->supplementary);
	free(g->limits);
	free(g->listen);
	for (size_t i = 0; i < g->nlisten; i++)
		free(g->listen_at[i].file);
	free(g->listen_at);
	strv_free(g->watch_paths);
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->ngroups; i++)
		config_group_free(&c->groups[i]);
	free(c->groups);
	free(c->path);
	free(c->control);
	free(c->log_file);
	free(c->pid_file);
	free(c);
}

const struct group_conf *config_group(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->ngroups; i++)
		if (c->groups[i].name != NULL &&
		    strcmp(c->groups[i].name, name) == 0)
			return &c->groups[i];
	return NULL;
}
