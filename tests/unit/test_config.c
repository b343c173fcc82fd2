/*
 * test_config.c - config_load() on files written into a fresh directory.
 *
 * Each test writes its files, loads them with a report callback that
 * keeps the lines, and compares every line exactly: the messages are the
 * user interface.  "{D}" in an expected line stands for the directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rollover.h"

#define MAX_LINES 64

static char dir[PATH_MAX];
static char *lines[MAX_LINES];
static int nlines;

static void collect(const char *line)
{
	if (nlines < MAX_LINES)
		lines[nlines++] = strdup(line);
}

static void forget(void)
{
	for (int i = 0; i < nlines; i++)
		free(lines[i]);
	nlines = 0;
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/rollover-test-config.XXXXXX";

	(void)state;
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, dir) == NULL)
		return -1;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	forget();
	return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write dir/name, making its parent directories. */
static void put_mode(const char *name, const char *text, mode_t mode)
{
	char path[PATH_MAX * 2];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')) != NULL;
	     p++) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void put(const char *name, const char *text)
{
	put_mode(name, text, 0644);
}

static char *in_dir(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void assert_in_dir(const char *actual, const char *name)
{
	char *want = in_dir(name);

	assert_string_equal(actual, want);
	free(want);
}

static struct config *load(const char *name)
{
	char *path = in_dir(name);
	struct config *c;

	forget();
	c = config_load(path, collect);
	free(path);
	return c;
}

/* pattern with every "{D}" replaced by the test's directory. */
static char *expand(const char *pattern)
{
	size_t n = strlen(pattern) + 1;
	const char *p;
	char *out, *o;

	for (p = pattern; (p = strstr(p, "{D}")) != NULL; p += 3)
		n += strlen(dir);
	o = out = malloc(n);
	assert_non_null(out);
	for (p = pattern; *p != '\0';) {
		if (strncmp(p, "{D}", 3) == 0) {
			o = stpcpy(o, dir);
			p += 3;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

/* The reported lines must be exactly these, in this order. */
static void expect(const char *first, ...)
{
	const char *want[MAX_LINES];
	int n = 0, ok;
	va_list ap;

	va_start(ap, first);
	for (const char *s = first; s != NULL; s = va_arg(ap, const char *))
		want[n++] = s;
	va_end(ap);
	ok = n == nlines;
	for (int i = 0; ok && i < n; i++) {
		char *w = expand(want[i]);

		ok = strcmp(w, lines[i]) == 0;
		free(w);
	}
	if (ok)
		return;
	for (int i = 0; i < nlines; i++)
		print_error("got:      %s\n", lines[i]);
	for (int i = 0; i < n; i++) {
		char *w = expand(want[i]);

		print_error("expected: %s\n", w);
		free(w);
	}
	fail();
}

/* Load name; it must fail with exactly the given lines. */
#define expect_fail(name, ...)                                                 \
	do {                                                                   \
		assert_null(load(name));                                       \
		expect(__VA_ARGS__, (char *)NULL);                             \
	} while (0)

/* ---- good configs ------------------------------------------------------ */

static void test_full(void **state)
{
	const struct group_conf *g;
	struct config *c;

	(void)state;
	put("main.cfg",
	    "control = \"/run/rollover-test/ctl.sock\";\n"
	    "pid_file = \"run/rollover.pid\";\n"
	    "log_level = \"debug\";\n"
	    "groups = (\n"
	    "  {\n"
	    "    name = \"web-1.x_y\";\n"
	    "    command = \"/bin/true\";\n"
	    "    args = [ \"--message\", \"hello\" ];\n"
	    "    env = { APP_ENV = \"production\"; PORT = 8080; BIG = "
	    "5000000000L; };\n"
	    "    directory = \"/\";\n"
	    "    user = \"nobody\";\n"
	    "    workers = 3;\n"
	    "    listen = ( \"127.0.0.1:8080\", \"[::1]:8080\",\n"
	    "               \"unix:/run/hello.sock\", \"unix:rel.sock\" );\n"
	    "    backlog = 4096;\n"
	    "    listen_mode = \"per-worker\";\n"
	    "    ready = 2;\n"
	    "    ready_timeout = 2.5;\n"
	    "    stop_signal = \"SIGQUIT\";\n"
	    "    stop_timeout = 0;\n"
	    "    watch = true;\n"
	    "    watch_paths = [ \"/srv/app\", \"lib\" ];\n"
	    "    settle = 0.25;\n"
	    "    settle_max = 7;\n"
	    "    rollout_batch = 2;\n"
	    "  },\n"
	    "  {\n"
	    "    name = \"other\";\n"
	    "    command = \"/bin/true\";\n"
	    "    listen = \"*:9090\";\n"
	    "    ready = \"notify\";\n"
	    "    watch_paths = \"one\";\n"
	    "    user = \"nobody\";\n"
	    "    group = \"4000000\";\n"
	    "    workers = 0;\n"
	    "  }\n"
	    ");\n");
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	assert_in_dir(c->path, "main.cfg");
	assert_string_equal(c->control, "/run/rollover-test/ctl.sock");
	assert_in_dir(c->pid_file, "run/rollover.pid");
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->ngroups, 2);

	g = config_group(c, "web-1.x_y");
	assert_ptr_equal(g, &c->groups[0]);
	assert_in_dir(g->at.file, "main.cfg");
	assert_int_equal(g->at.line, 5);
	assert_string_equal(g->command, "/bin/true");
	assert_int_equal(g->nargs, 2);
	assert_string_equal(g->args[0], "--message");
	assert_string_equal(g->args[1], "hello");
	assert_null(g->args[2]);
	assert_int_equal(g->nenv, 3);
	assert_string_equal(g->env[0], "APP_ENV=production");
	assert_string_equal(g->env[1], "PORT=8080");
	assert_string_equal(g->env[2], "BIG=5000000000");
	assert_null(g->env[3]);
	assert_string_equal(g->directory, "/");
	assert_string_equal(g->user, "nobody");
	assert_null(g->group);
	assert_int_equal(g->uid, 65534);
	assert_int_equal(g->gid, 65534);
	assert_true(g->nsupplementary >= 1);
	assert_int_equal(g->supplementary[0], 65534);
	assert_int_equal(g->workers, 3);
	assert_int_equal(g->nlisten, 4);
	assert_string_equal(g->listen[0].text, "127.0.0.1:8080");
	assert_string_equal(g->listen[1].text, "[::1]:8080");
	assert_string_equal(g->listen[2].text, "unix:/run/hello.sock");
	{
		char *p = expand("unix:{D}/rel.sock");

		assert_string_equal(g->listen[3].text, p);
		free(p);
	}
	assert_int_equal(g->listen_at[0].line, 13);
	assert_int_equal(g->listen_at[1].line, 13);
	assert_int_equal(g->listen_at[2].line, 14);
	assert_int_equal(g->listen_at[3].line, 14);
	assert_int_equal(g->backlog, 4096);
	assert_int_equal(g->listen_mode, LISTEN_PER_WORKER);
	assert_int_equal(g->ready_notify, 0);
	assert_int_equal(g->ready_ms, 2000); /* an integer of seconds */
	assert_int_equal(g->ready_timeout_ms, 2500);
	assert_int_equal(g->stop_signal, SIGQUIT);
	assert_int_equal(g->stop_timeout_ms, 0);
	assert_int_equal(g->watch, 1);
	assert_int_equal(g->nwatch_paths, 2);
	assert_string_equal(g->watch_paths[0], "/srv/app");
	assert_in_dir(g->watch_paths[1], "lib");
	assert_null(g->watch_paths[2]);
	assert_int_equal(g->settle_ms, 250);
	assert_int_equal(g->settle_max_ms, 7000);
	assert_int_equal(g->rollout_batch, 2);

	g = config_group(c, "other");
	assert_ptr_equal(g, &c->groups[1]);
	assert_int_equal(g->at.line, 27);
	assert_int_equal(g->nlisten, 1);
	assert_string_equal(g->listen[0].text, "0.0.0.0:9090");
	assert_int_equal(g->listen_at[0].line, 30);
	assert_int_equal(g->ready_notify, 1);
	assert_int_equal(g->nwatch_paths, 1);
	assert_string_equal(g->user, "nobody");
	assert_string_equal(g->group, "4000000");
	assert_int_equal(g->uid, 65534);
	assert_int_equal(g->gid, 4000000);
	assert_int_equal(g->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));

	assert_null(config_group(c, "nope"));
	config_free(c);
}

static void test_defaults(void **state)
{
	const struct group_conf *g;
	struct config *c;

	(void)state;
	put("main.cfg",
	    "groups = ( { name = \"web\"; command = \"/bin/true\"; } );\n");
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	{
		char *want = control_default_path();

		assert_string_equal(c->control, want);
		free(want);
	}
	assert_int_equal(c->control_mode, 0600);
	assert_int_equal(c->control_gid, (gid_t)-1);
	assert_null(c->pid_file);
	assert_null(c->log_file);
	assert_int_equal(c->log_level, LOG_INFO);
	g = config_group(c, "web");
	assert_non_null(g);
	assert_int_equal(g->at.line, 1);
	assert_int_equal(g->nargs, 0);
	assert_null(g->args[0]);
	assert_int_equal(g->nenv, 0);
	assert_null(g->env[0]);
	assert_null(g->directory);
	assert_null(g->user);
	assert_null(g->group);
	assert_int_equal(g->nsupplementary, 0);
	assert_int_equal(g->workers, 1);
	assert_int_equal(g->nlisten, 0);
	assert_int_equal(g->backlog, 0);
	assert_int_equal(g->listen_mode, LISTEN_SHARED);
	assert_int_equal(g->ready_notify, 1);
	assert_int_equal(g->ready_timeout_ms, 10000);
	assert_int_equal(g->stop_signal, SIGTERM);
	assert_int_equal(g->stop_timeout_ms, 30000);
	assert_int_equal(g->watch, 0);
	assert_int_equal(g->nwatch_paths, 0);
	assert_null(g->watch_paths[0]);
	assert_int_equal(g->settle_ms, 100);
	assert_int_equal(g->settle_max_ms, 2000);
	assert_int_equal(g->umask_set, 0);
	assert_int_equal(g->no_new_privs, 0);
	assert_int_equal(g->nlimits, 0);
	config_free(c);
}

/* Raising settle alone raises the default settle_max with it. */
static void test_settle_alone(void **state)
{
	struct config *c;

	(void)state;
	put("main.cfg",
	    "groups = ( { name = \"web\"; command = \"/bin/true\";\n"
	    "  settle = 5; } );\n");
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	assert_int_equal(c->groups[0].settle_ms, 5000);
	assert_int_equal(c->groups[0].settle_max_ms, 5000);
	config_free(c);
}

/* A relative command is found next to the config, wherever we run. */
static void test_relative_command(void **state)
{
	char cwd[PATH_MAX];
	struct config *c;

	(void)state;
	put_mode("bin/app", "#!/bin/sh\n", 0755);
	put("main.cfg", "groups = ( { name = \"web\"; command = \"bin/app\";\n"
			"  directory = \"bin\"; } );\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	c = load("main.cfg");
	assert_int_equal(chdir(cwd), 0);
	expect(NULL);
	assert_non_null(c);
	assert_in_dir(c->groups[0].command, "bin/app");
	assert_in_dir(c->groups[0].directory, "bin");
	config_free(c);
}

/* ---- includes ------------------------------------------------------------ */

/* Relative includes name files next to the config, not in the cwd. */
static void test_include_relative(void **state)
{
	char cwd[PATH_MAX], now[PATH_MAX];
	struct config *c;

	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"@include \"conf.d/groups.cfg\"\n");
	put("conf.d/groups.cfg",
	    "groups = (\n"
	    "  { name = \"web\"; command = \"/bin/true\"; }\n"
	    ");\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	c = load("main.cfg");
	assert_non_null(getcwd(now, sizeof(now)));
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(now, "/"); /* and we are back */
	expect(NULL);
	assert_non_null(c);
	assert_int_equal(c->log_level, LOG_WARN);
	assert_non_null(config_group(c, "web"));
	assert_in_dir(c->groups[0].at.file, "conf.d/groups.cfg");
	assert_int_equal(c->groups[0].at.line, 2);
	config_free(c);
}

/* A relative config path: files are shown relative, as the user named it. */
static void test_include_relative_path(void **state)
{
	char cwd[PATH_MAX], *parent, *base;

	(void)state;
	put("main.cfg", "@include \"conf.d/groups.cfg\"\n");
	put("conf.d/groups.cfg",
	    "groups = (\n"
	    "  { name = \"web\"; command = \"/bin/true\";\n"
	    "    extra = 1; }\n"
	    ");\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	parent = strdup(dir);
	*strrchr(parent, '/') = '\0';
	base = strrchr(dir, '/') + 1;
	assert_int_equal(chdir(parent[0] ? parent : "/"), 0);
	{
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/main.cfg", base);
		forget();
		assert_null(config_load(path, collect));
	}
	assert_int_equal(chdir(cwd), 0);
	{
		char want[PATH_MAX + 64];

		snprintf(want, sizeof(want),
			 "%s/conf.d/groups.cfg:3: unknown key 'extra'", base);
		assert_int_equal(nlines, 1);
		assert_string_equal(lines[0], want);
	}
	free(parent);
}

static void test_include_missing(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"@include \"conf.d/nope.cfg\"\n");
	expect_fail("main.cfg", "{D}/main.cfg:2: cannot open include file");
}

static void test_include_error(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"@include \"conf.d/groups.cfg\"\n");
	put("conf.d/groups.cfg", "groups = (\n"
				 "  { name = \"web\";\n"
				 "    command = \"/bin/true\";\n"
				 "    workerz = 2; }\n"
				 ");\n");
	expect_fail("main.cfg",
		    "{D}/conf.d/groups.cfg:4: unknown key 'workerz'");
}

static void test_include_syntax_error(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"@include \"conf.d/groups.cfg\"\n");
	put("conf.d/groups.cfg", "groups = (\n"
				 "  { name = \"web\";\n"
				 "    command = = \"/bin/true\"; }\n"
				 ");\n");
	expect_fail("main.cfg", "{D}/conf.d/groups.cfg:3: syntax error");
}

/* libconfig 1.5 would exit() the process here. */
static void test_include_directory(void **state)
{
	(void)state;
	put("conf.d/a.cfg", "\n");
	put("main.cfg", "log_level = \"warn\";\n"
			"  @include \"conf.d\"\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:2: cannot include conf.d: it is a directory");

	put("main.cfg", "@include \"conf.d/a.cfg\"\n");
	put("conf.d/a.cfg", "\n\n@include \"conf.d/\"\n");
	expect_fail("main.cfg", "{D}/conf.d/a.cfg:3: cannot include conf.d/: "
				"it is a directory");
}

/* A FIFO (or /dev/zero) would keep a reload reading forever. */
static void test_include_not_a_file(void **state)
{
	(void)state;
	put("main.cfg", "@include \"/dev/zero\"\n");
	expect_fail("main.cfg", "{D}/main.cfg:1: cannot include /dev/zero: "
				"not a regular file");
}

/* ---- reading ------------------------------------------------------------- */

static void test_unreadable(void **state)
{
	(void)state;
	expect_fail("nope.cfg",
		    "{D}/nope.cfg: cannot read: No such file or directory");
	put("d/x", "");
	expect_fail("d", "{D}/d: cannot read: Is a directory");
}

static void test_syntax_error(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"groups = (\n"
			"  { name = \"web\";\n"
			"    command = ;\n"
			"  }\n"
			");\n");
	expect_fail("main.cfg", "{D}/main.cfg:4: syntax error");
}

/* ---- keys and types ------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n"
			"workerz = 2;\n"
			"groups = (\n"
			"  { name = \"web\";\n"
			"    command = \"/bin/true\";\n"
			"    workerz = 2;\n"
			"    ready_timeout = 1;\n"
			"    nested = { a = 1; };\n"
			"  }\n"
			");\n");
	expect_fail("main.cfg", "{D}/main.cfg:2: unknown key 'workerz'",
		    "{D}/main.cfg:6: unknown key 'workerz'",
		    "{D}/main.cfg:8: unknown key 'nested'");
}

static void test_wrong_types(void **state)
{
	(void)state;
	put("main.cfg",
	    "log_level = 3;\n"
	    "control = [ \"a\" ];\n"
	    "groups = (\n"
	    "  { name = 5;\n"
	    "    command = \"/bin/true\";\n"
	    "    workers = \"2\";\n"
	    "    backlog = 1.5;\n"
	    "    watch = 1;\n"
	    "    args = \"--x\";\n"
	    "    env = [ \"A=1\" ];\n"
	    "    listen = 8080;\n"
	    "    ready = true;\n"
	    "    settle = \"0.1\";\n"
	    "    watch_paths = [ 1, 2 ];\n"
	    "    stop_timeout = \"30\";\n"
	    "    user = 0;\n"
	    "  },\n"
	    "  5,\n"
	    "  { name = \"b\";\n"
	    "    command = \"/bin/true\";\n"
	    "    args = ( \"a\",\n"
	    "             1 );\n"
	    "    env = { A = 1.5; B = true; };\n"
	    "    listen = ( \"127.0.0.1:1\", [ \"127.0.0.1:2\" ] );\n"
	    "  }\n"
	    ");\n");
	expect_fail(
	    "main.cfg", "{D}/main.cfg:1: 'log_level' must be a string",
	    "{D}/main.cfg:2: 'control' must be a string",
	    "{D}/main.cfg:4: 'name' must be a string",
	    "{D}/main.cfg:6: 'workers' must be an integer",
	    "{D}/main.cfg:7: 'backlog' must be an integer",
	    "{D}/main.cfg:8: 'watch' must be true or false",
	    "{D}/main.cfg:9: 'args' must be an array of strings",
	    "{D}/main.cfg:10: 'env' must be a group: { KEY = \"value\"; }",
	    "{D}/main.cfg:11: 'listen' must be a string or an array of strings",
	    "{D}/main.cfg:12: 'ready' must be \"notify\" or a number of "
	    "seconds",
	    "{D}/main.cfg:13: 'settle' must be a number of seconds",
	    "{D}/main.cfg:14: 'watch_paths' must be a string or an array of "
	    "strings",
	    "{D}/main.cfg:15: 'stop_timeout' must be a number of seconds",
	    "{D}/main.cfg:16: 'user' must be a string",
	    "{D}/main.cfg:18: 'groups' must be a list of groups: ( { ... }, "
	    "... )",
	    "{D}/main.cfg:22: 'args' must be an array of strings",
	    "{D}/main.cfg:23: 'env.A' must be a string or an integer",
	    "{D}/main.cfg:23: 'env.B' must be a string or an integer",
	    "{D}/main.cfg:24: 'listen' must be a string or an array of "
	    "strings");
}

static void test_groups_shape(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"warn\";\n");
	expect_fail("main.cfg", "{D}/main.cfg: missing required key 'groups'");
	put("main.cfg", "groups = ( );\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:1: 'groups' must hold at least one group");
	put("main.cfg",
	    "groups = { name = \"web\"; command = \"/bin/true\"; };\n");
	expect_fail("main.cfg", "{D}/main.cfg:1: 'groups' must be a list of "
				"groups: ( { ... }, ... )");
}

static void test_out_of_range(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\";\n"
			"    command = \"/bin/true\";\n"
			"    workers = 1025;\n"
			"    backlog = 0;\n"
			"    ready = 3601;\n"
			"    ready_timeout = 0;\n"
			"    stop_timeout = 86400.5;\n"
			"    settle = 61;\n"
			"    settle_max = 601;\n"
			"  },\n"
			"  { name = \"b\";\n"
			"    command = \"/bin/true\";\n"
			"    workers = -1;\n"
			"    backlog = 65536;\n"
			"    ready = -0.5;\n"
			"    ready_timeout = 3600.01;\n"
			"    settle = -1;\n"
			"    settle_max = 0.05;\n"
			"  },\n"
			"  { name = \"c\";\n"
			"    command = \"/bin/true\";\n"
			"    workers = 5000000000L;\n"
			"    settle = 3;\n"
			"    settle_max = 2.5;\n"
			"    ready_timeout = 0.0004;\n"
			"  }\n"
			");\n");
	expect_fail(
	    "main.cfg", "{D}/main.cfg:4: 'workers' must be between 0 and 1024",
	    "{D}/main.cfg:5: 'backlog' must be between 1 and 65535",
	    "{D}/main.cfg:6: 'ready' must be between 0 and 3600 seconds",
	    "{D}/main.cfg:7: 'ready_timeout' must be between 0.001 and 3600 "
	    "seconds",
	    "{D}/main.cfg:8: 'stop_timeout' must be between 0 and 86400 "
	    "seconds",
	    "{D}/main.cfg:9: 'settle' must be between 0 and 60 seconds",
	    "{D}/main.cfg:10: 'settle_max' must be between 0 and 600 seconds",
	    "{D}/main.cfg:14: 'workers' must be between 0 and 1024",
	    "{D}/main.cfg:15: 'backlog' must be between 1 and 65535",
	    "{D}/main.cfg:16: 'ready' must be between 0 and 3600 seconds",
	    "{D}/main.cfg:17: 'ready_timeout' must be between 0.001 and 3600 "
	    "seconds",
	    "{D}/main.cfg:18: 'settle' must be between 0 and 60 seconds",
	    "{D}/main.cfg:23: 'workers' must be between 0 and 1024",
	    "{D}/main.cfg:26: 'ready_timeout' must be between 0.001 and 3600 "
	    "seconds",
	    "{D}/main.cfg:25: 'settle_max' must be at least 'settle' (3 "
	    "seconds)");
}

static void test_missing_required(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { command = \"/bin/true\"; },\n"
			"  {\n"
			"    name = \"b\";\n"
			"  },\n"
			"  { }\n"
			");\n");
	expect_fail("main.cfg", "{D}/main.cfg:2: missing required key 'name'",
		    "{D}/main.cfg:3: missing required key 'command'",
		    "{D}/main.cfg:6: missing required key 'name'",
		    "{D}/main.cfg:6: missing required key 'command'");
}

static void test_bad_names(void **state)
{
	static const char x65[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
				  "xxxxxxxxxxxxxxxxxxxxxxxxx";
	char text[1024];
	struct config *c;

	(void)state;
	assert_int_equal(strlen(x65), 65);
	put("main.cfg", "groups = (\n"
			"  { name = \"\"; command = \"/bin/true\"; },\n"
			"  { name = \"we b\"; command = \"/bin/true\"; },\n"
			"  { name = \"a\\nb\"; command = \"/bin/true\"; },\n"
			"  { name = \"a/b\"; command = \"/bin/true\"; }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:2: 'name' \"\" must be 1 to 64 characters "
		    "from A-Z a-z 0-9 _ . -",
		    "{D}/main.cfg:3: 'name' \"we b\" must be 1 to 64 "
		    "characters from A-Z a-z 0-9 _ . -",
		    "{D}/main.cfg:4: 'name' \"a?b\" must be 1 to 64 characters "
		    "from A-Z a-z 0-9 _ . -",
		    "{D}/main.cfg:5: 'name' \"a/b\" must be 1 to 64 characters "
		    "from A-Z a-z 0-9 _ . -");

	/* 64 characters are fine, 65 are not. */
	snprintf(
	    text, sizeof(text),
	    "groups = ( { name = \"%.64s\"; command = \"/bin/true\"; } );\n",
	    x65);
	put("main.cfg", text);
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	assert_int_equal(strlen(c->groups[0].name), 64);
	config_free(c);
	snprintf(text, sizeof(text),
		 "groups = ( { name = \"%s\"; command = \"/bin/true\"; } );\n",
		 x65);
	put("main.cfg", text);
	assert_null(load("main.cfg"));
	assert_int_equal(nlines, 1);
	assert_non_null(strstr(lines[0], "must be 1 to 64 characters"));
}

static void test_duplicate_name(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"web\";\n"
			"    command = \"/bin/true\"; },\n"
			"  { command = \"/bin/true\";\n"
			"    name = \"api\"; },\n"
			"  { command = \"/bin/true\";\n"
			"    name = \"web\"; }\n"
			");\n");
	expect_fail("main.cfg", "{D}/main.cfg:7: 'name' web is already used "
				"at {D}/main.cfg:2");
}

/* ---- command ------------------------------------------------------------- */

static void test_command(void **state)
{
	(void)state;
	put_mode("app.noexec", "#!/bin/sh\n", 0644);
	put_mode("app.owner", "#!/bin/sh\n", 0744);
	put("sub/x", "");
	put("main.cfg",
	    "groups = (\n"
	    "  { name = \"a\"; command = \"/nonexistent/rollover\"; },\n"
	    "  { name = \"b\"; command = \"app.noexec\"; },\n"
	    "  { name = \"c\"; command = \"sub\"; },\n"
	    "  { name = \"d\"; command = \"app.owner\";\n"
	    "    user = \"nobody\"; },\n"
	    "  { name = \"e\"; command = \"sub/x/y\"; },\n"
	    "  { name = \"f\"; command = \"\"; }\n"
	    ");\n");
	expect_fail(
	    "main.cfg",
	    "{D}/main.cfg:2: 'command' /nonexistent/rollover does not exist",
	    "{D}/main.cfg:3: 'command' {D}/app.noexec is not executable",
	    "{D}/main.cfg:4: 'command' {D}/sub is not a regular file",
	    "{D}/main.cfg:5: 'command' {D}/app.owner is not executable by user "
	    "nobody",
	    "{D}/main.cfg:7: 'command' {D}/sub/x/y: Not a directory",
	    "{D}/main.cfg:8: 'command' must not be empty");
}

static void test_directory(void **state)
{
	(void)state;
	put("file", "");
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    directory = \"nope\"; },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    directory = \"file\"; }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:3: 'directory' {D}/nope does not exist",
		    "{D}/main.cfg:5: 'directory' {D}/file is not a directory");
}

/* ---- credentials --------------------------------------------------------- */

static void test_users(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    user = \"no-such-user-rollover\"; },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    group = \"no-such-group-rollover\"; },\n"
			"  { name = \"c\"; command = \"/bin/true\";\n"
			"    user = \"4000000\"; }\n"
			");\n");
	expect_fail(
	    "main.cfg",
	    "{D}/main.cfg:3: 'user' \"no-such-user-rollover\": no such user",
	    "{D}/main.cfg:5: 'group' \"no-such-group-rollover\": no such group",
	    "{D}/main.cfg:7: 'user' 4000000 has no passwd entry, so 'group' "
	    "must be set");
}

static void test_numeric_ids(void **state)
{
	struct config *c;

	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    user = \"65534\"; },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    user = \"4000000\"; group = \"4000001\"; },\n"
			"  { name = \"c\"; command = \"/bin/true\";\n"
			"    group = \"4000002\"; }\n"
			");\n");
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	assert_int_equal(c->groups[0].uid, 65534);
	assert_int_equal(c->groups[0].gid, 65534);
	assert_int_equal(c->groups[1].uid, 4000000);
	assert_int_equal(c->groups[1].gid, 4000001);
	assert_int_equal(c->groups[1].nsupplementary, 0);
	assert_null(c->groups[2].user);
	assert_int_equal(c->groups[2].gid, 4000002);
	config_free(c);
}

/* ---- umask, no_new_privs and limits --------------------------------------- */

static const struct limit_conf *find_limit(const struct group_conf *g,
					   int resource)
{
	for (size_t i = 0; i < g->nlimits; i++)
		if (g->limits[i].resource == resource)
			return &g->limits[i];
	return NULL;
}

static void assert_limit(const struct group_conf *g, int resource,
			 uint64_t soft, uint64_t hard)
{
	const struct limit_conf *l = find_limit(g, resource);

	assert_non_null(l);
	assert_true(l->soft == soft);
	assert_true(l->hard == hard);
}

static void test_privileges(void **state)
{
	const struct group_conf *g;
	struct config *c;

	(void)state;
	put("main.cfg",
	    "groups = (\n"
	    "  { name = \"a\"; command = \"/bin/true\";\n"
	    "    umask = \"0027\";\n"
	    "    no_new_privs = true;\n"
	    "    limits = {\n"
	    "      nofile = 4096;\n"
	    "      core = 0;\n"
	    "      nproc = 100;\n"
	    "      memlock = { soft = 32768; hard = 65536; };\n"
	    "      as = 8589934592L;\n"
	    "      fsize = { soft = 1048576; hard = \"infinity\"; };\n"
	    "      stack = 8388608;\n"
	    "      cpu = 3600;\n"
	    "    };\n"
	    "  },\n"
	    "  { name = \"b\"; command = \"/bin/true\";\n"
	    "    umask = \"0\"; no_new_privs = false; limits = { }; }\n"
	    ");\n");
	c = load("main.cfg");
	expect(NULL);
	assert_non_null(c);
	g = &c->groups[0];
	assert_int_equal(g->umask_set, 1);
	assert_int_equal(g->umask, 027);
	assert_int_equal(g->no_new_privs, 1);
	assert_int_equal(g->nlimits, 8);
	assert_int_equal(g->limits[0].resource, RLIMIT_NOFILE); /* in order */
	assert_limit(g, RLIMIT_NOFILE, 4096, 4096);
	assert_limit(g, RLIMIT_CORE, 0, 0);
	assert_limit(g, RLIMIT_NPROC, 100, 100);
	assert_limit(g, RLIMIT_MEMLOCK, 32768, 65536);
	assert_limit(g, RLIMIT_AS, 8589934592ULL, 8589934592ULL);
	assert_limit(g, RLIMIT_FSIZE, 1048576, LIMIT_INFINITY);
	assert_limit(g, RLIMIT_STACK, 8388608, 8388608);
	assert_limit(g, RLIMIT_CPU, 3600, 3600);
	g = &c->groups[1];
	assert_int_equal(g->umask_set, 1);
	assert_int_equal(g->umask, 0);
	assert_int_equal(g->no_new_privs, 0);
	assert_int_equal(g->nlimits, 0);
	assert_string_equal(config_limit_name(RLIMIT_NOFILE), "nofile");
	assert_string_equal(config_limit_name(RLIMIT_RTTIME), "rttime");
	assert_string_equal(config_limit_name(-1), "?");
	config_free(c);
}

static void test_umask_bad(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    umask = \"0800\"; },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    umask = \"027x\"; },\n"
			"  { name = \"c\"; command = \"/bin/true\";\n"
			"    umask = 27; },\n"
			"  { name = \"d\"; command = \"/bin/true\";\n"
			"    umask = \"\"; },\n"
			"  { name = \"e\"; command = \"/bin/true\";\n"
			"    umask = \"01000\"; },\n"
			"  { name = \"f\"; command = \"/bin/true\";\n"
			"    umask = \" 022\"; },\n"
			"  { name = \"g\"; command = \"/bin/true\";\n"
			"    no_new_privs = 1; }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:3: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:5: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:7: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:9: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:11: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:13: 'umask' must be an octal mode in a "
		    "string, like \"0027\"",
		    "{D}/main.cfg:15: 'no_new_privs' must be true or false");
}

static void test_limits_bad(void **state)
{
	unsigned long long nr_open;
	char inf[128], big[128];
	FILE *f;

	(void)state;
	f = fopen("/proc/sys/fs/nr_open", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu", &nr_open), 1);
	fclose(f);
	snprintf(inf, sizeof(inf),
		 "{D}/main.cfg:15: 'limits.nofile' must be at most %llu "
		 "(fs.nr_open)",
		 nr_open);
	snprintf(big, sizeof(big),
		 "{D}/main.cfg:20: 'limits.nofile' must be at most %llu "
		 "(fs.nr_open)",
		 nr_open);
	put("main.cfg",
	    "groups = (\n"
	    "  { name = \"a\"; command = \"/bin/true\";\n"
	    "    limits = 5; },\n"
	    "  { name = \"b\"; command = \"/bin/true\";\n"
	    "    limits = {\n"
	    "      nofle = 1;\n"
	    "      core = -1;\n"
	    "      as = 3000000000;\n"
	    "      fsize = \"lots\";\n"
	    "      cpu = 1.5;\n"
	    "      memlock = { soft = 2; hard = 1; };\n"
	    "      stack = { soft = 1; };\n"
	    "      nproc = { soft = 1; hard = 2; max = 3; };\n"
	    "      data = { soft = \"x\"; hard = -2; };\n"
	    "      nofile = \"infinity\";\n"
	    "      rss = [ 1, 2 ];\n"
	    "    };\n"
	    "  },\n"
	    "  { name = \"c\"; command = \"/bin/true\";\n"
	    "    limits = { nofile = { soft = 1024; hard = 4000000000L; }; };\n"
	    "  }\n"
	    ");\n");
	expect_fail(
	    "main.cfg",
	    "{D}/main.cfg:3: 'limits' must be a group: { nofile = 4096; ... }",
	    "{D}/main.cfg:6: unknown key 'limits.nofle'",
	    "{D}/main.cfg:7: 'limits.core' must not be negative (a number "
	    "above 2147483647 needs an L suffix: 4294967296L)",
	    "{D}/main.cfg:8: 'limits.as' must not be negative (a number above "
	    "2147483647 needs an L suffix: 4294967296L)",
	    "{D}/main.cfg:9: 'limits.fsize' must be a number or \"infinity\"",
	    "{D}/main.cfg:10: 'limits.cpu' must be a number or \"infinity\"",
	    "{D}/main.cfg:11: 'limits.memlock' soft limit is above its hard "
	    "limit",
	    "{D}/main.cfg:12: 'limits.stack' must set both 'soft' and 'hard'",
	    "{D}/main.cfg:13: unknown key 'limits.nproc.max'",
	    "{D}/main.cfg:14: 'limits.data.soft' must be a number or "
	    "\"infinity\"",
	    "{D}/main.cfg:14: 'limits.data.hard' must not be negative (a "
	    "number above 2147483647 needs an L suffix: 4294967296L)",
	    inf,
	    "{D}/main.cfg:16: 'limits.rss' must be a number or \"infinity\"",
	    big);
}

/*
 * Load name in a child without CAP_SYS_RESOURCE (its euid is nobody's)
 * and with a hard core limit of 1000, which it cannot raise again: what
 * it reports becomes ours.  Whether the load succeeded.
 */
static int load_unprivileged(const char *name)
{
	char buf[1024];
	int pfd[2], status;
	pid_t pid;
	FILE *f;

	forget();
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		struct rlimit low = {0, 1000};
		struct config *c;

		close(pfd[0]);
		if (setrlimit(RLIMIT_CORE, &low) == -1 || seteuid(65534) == -1)
			_exit(2);
		c = load(name);
		f = fdopen(pfd[1], "w");
		for (int i = 0; f != NULL && i < nlines; i++)
			fprintf(f, "%s\n", lines[i]);
		_exit(f == NULL || fclose(f) != 0 ? 2 : c != NULL ? 0 : 1);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	assert_non_null(f);
	while (fgets(buf, sizeof(buf), f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		collect(buf);
	}
	fclose(f);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
	return WEXITSTATUS(status) == 0;
}

/*
 * A hard limit above the supervisor's own, which it cannot raise, is
 * refused when the file is read; and `user` needs root as before.
 */
static void test_limits_unprivileged(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	put("ok.cfg", "groups = (\n"
		      "  { name = \"a\"; command = \"/bin/true\";\n"
		      "    limits = { core = 1000; cpu = 5; }; }\n"
		      ");\n");
	assert_true(load_unprivileged("ok.cfg"));
	expect(NULL);
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    limits = { core = 2000; }; },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    limits = { core = { soft = 10; hard = "
			"\"infinity\"; }; }; },\n"
			"  { name = \"c\"; command = \"/bin/true\";\n"
			"    user = \"nobody\"; }\n"
			");\n");
	assert_false(load_unprivileged("main.cfg"));
	expect("{D}/main.cfg:3: 'limits.core' 2000 is above rollover's own "
	       "hard limit, 1000, and raising it needs CAP_SYS_RESOURCE",
	       "{D}/main.cfg:5: 'limits.core' infinity is above rollover's own "
	       "hard limit, 1000, and raising it needs CAP_SYS_RESOURCE",
	       "{D}/main.cfg:7: 'user' needs rollover to run as root", NULL);
}

/* ---- addresses ------------------------------------------------------------ */

static void test_bad_address(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    listen = [ \"127.0.0.1\",\n"
			"               \"1.2.3.4:70000\",\n"
			"               \"localhost:80\" ];\n"
			"  },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    listen = \"[::1]8080\"; }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:3: 'listen' \"127.0.0.1\": missing port",
		    "{D}/main.cfg:4: 'listen' \"1.2.3.4:70000\": port out of "
		    "range (1..65535)",
		    "{D}/main.cfg:5: 'listen' \"localhost:80\": not a numeric "
		    "IPv4 or [IPv6] address",
		    "{D}/main.cfg:8: 'listen' \"[::1]8080\": expected ':' and "
		    "a port after ']'");
}

static void test_duplicate_address(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    listen = [ \"127.0.0.1:8080\",\n"
			"               \"*:9090\" ];\n"
			"  },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    listen = ( \"127.0.0.1:8080\",\n"
			"               \"0.0.0.0:9090\",\n"
			"               \"[::1]:8080\",\n"
			"               \"[0::1]:8080\" );\n"
			"  }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:7: 'listen' 127.0.0.1:8080 is already used "
		    "at {D}/main.cfg:3",
		    "{D}/main.cfg:8: 'listen' 0.0.0.0:9090 is already used at "
		    "{D}/main.cfg:4",
		    "{D}/main.cfg:10: 'listen' [::1]:8080 is already used at "
		    "{D}/main.cfg:9");
}

/* ---- enumerations and env -------------------------------------------------- */

static void test_enums(void **state)
{
	(void)state;
	put("main.cfg", "log_level = \"verbose\";\n"
			"groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    stop_signal = \"TERMINATE\";\n"
			"    listen_mode = \"per_worker\";\n"
			"    ready = \"ready\";\n"
			"  },\n"
			"  { name = \"b\"; command = \"/bin/true\";\n"
			"    stop_signal = \"SIGSTOP\"; },\n"
			"  { name = \"c\"; command = \"/bin/true\";\n"
			"    stop_signal = \"kill\"; }\n"
			");\n");
	expect_fail(
	    "main.cfg",
	    "{D}/main.cfg:1: 'log_level' must be \"error\", \"warn\", \"info\" "
	    "or \"debug\"",
	    "{D}/main.cfg:4: 'stop_signal' \"TERMINATE\" is not a signal name",
	    "{D}/main.cfg:5: 'listen_mode' must be \"shared\" or "
	    "\"per-worker\"",
	    "{D}/main.cfg:6: 'ready' must be \"notify\" or a number of seconds",
	    "{D}/main.cfg:9: 'stop_signal' cannot be STOP: a stopped worker "
	    "never exits");
}

static void test_env(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    env = {\n"
			"      OK_1 = \"x\";\n"
			"      LISTEN_FDS = \"3\";\n"
			"      NOTIFY_SOCKET = \"/x\";\n"
			"      ROLLOVER_SLOT = 1;\n"
			"      bad-name = \"x\";\n"
			"      LISTEN = \"fine\";\n"
			"    };\n"
			"  }\n"
			");\n");
	expect_fail("main.cfg",
		    "{D}/main.cfg:5: 'env' key 'LISTEN_FDS' is reserved: "
		    "rollover sets it for each worker",
		    "{D}/main.cfg:6: 'env' key 'NOTIFY_SOCKET' is reserved: "
		    "rollover sets it for each worker",
		    "{D}/main.cfg:7: 'env' key 'ROLLOVER_SLOT' is reserved: "
		    "rollover sets it for each worker",
		    "{D}/main.cfg:8: 'env' key 'bad-name' is not a valid "
		    "variable name");
}

/* Every problem is reported, from every group, not just the first. */
static void test_all_reported(void **state)
{
	(void)state;
	put("main.cfg", "groups = (\n"
			"  { name = \"a\"; command = \"/nonexistent\";\n"
			"    workers = 2000; },\n"
			"  { name = \"a\"; command = \"/bin/true\";\n"
			"    listen_mode = \"x\"; }\n"
			");\n"
			"oops = 1;\n");
	expect_fail(
	    "main.cfg", "{D}/main.cfg:3: 'workers' must be between 0 and 1024",
	    "{D}/main.cfg:2: 'command' /nonexistent does not exist",
	    "{D}/main.cfg:4: 'name' a is already used at {D}/main.cfg:2",
	    "{D}/main.cfg:5: 'listen_mode' must be \"shared\" or "
	    "\"per-worker\"",
	    "{D}/main.cfg:7: unknown key 'oops'");
}

static void test_control_too_long(void **state)
{
	char text[400];

	(void)state;
	snprintf(text, sizeof(text),
		 "control = \"/%0120d.sock\";\n"
		 "groups = ( { name = \"a\"; command = \"/bin/true\"; } );\n",
		 0);
	put("main.cfg", text);
	assert_null(load("main.cfg"));
	assert_int_equal(nlines, 1);
	assert_non_null(strstr(lines[0], ":1: 'control' /000"));
	assert_non_null(strstr(lines[0], "is too long for a unix socket "
					 "(at most 107 bytes)"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_full),
	    T(test_defaults),
	    T(test_settle_alone),
	    T(test_relative_command),
	    T(test_include_relative),
	    T(test_include_relative_path),
	    T(test_include_missing),
	    T(test_include_error),
	    T(test_include_syntax_error),
	    T(test_include_directory),
	    T(test_include_not_a_file),
	    T(test_unreadable),
	    T(test_syntax_error),
	    T(test_unknown_keys),
	    T(test_wrong_types),
	    T(test_groups_shape),
	    T(test_out_of_range),
	    T(test_missing_required),
	    T(test_bad_names),
	    T(test_duplicate_name),
	    T(test_command),
	    T(test_directory),
	    T(test_users),
	    T(test_numeric_ids),
	    T(test_privileges),
	    T(test_umask_bad),
	    T(test_limits_bad),
	    T(test_limits_unprivileged),
	    T(test_bad_address),
	    T(test_duplicate_address),
	    T(test_enums),
	    T(test_env),
	    T(test_all_reported),
	    T(test_control_too_long),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
