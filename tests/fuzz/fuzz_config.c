/*
 * fuzz_config.c - rollover.conf text in; a whole config or its errors out.
 *
 * config_load() takes a path, so each input is written to rollover.conf
 * in a directory of the harness's own, beside what a config's relative
 * paths may name: an executable "worker", a file "noexec" that is not,
 * a directory "www" and an include "extra.conf".  The seeds name those,
 * and /bin/true, root and nobody, so that the checks on disk and of users
 * run too.
 *
 * Beyond not crashing or leaking, config_load() keeps its promise: NULL
 * exactly when it reported a problem, each report one line of text, and
 * otherwise a config with every default filled in.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/rollover.h"
#include "fuzz.h"

static char dir[PATH_MAX];
static char conf[PATH_MAX + 32];
static unsigned reports;

static const struct fuzz_file {
	const char *name;
	const char *text; /* NULL: a directory */
	mode_t mode;
} files[] = {
    {"worker", "#!/bin/sh\nexit 0\n", 0755},
    {"noexec", "#!/bin/sh\nexit 0\n", 0644},
    {"extra.conf", "workers = 2;\nready = 1.5;\n", 0644},
    {"www", NULL, 0755},
};

static void fuzz_path(char *buf, size_t len, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
		fuzz_failed(__FILE__, __LINE__, "path too long");
}

static void write_file(const char *path, const void *data, size_t n,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	FUZZ_CHECK(fd != -1);
	FUZZ_CHECK(write(fd, data, n) == (ssize_t)n);
	FUZZ_CHECK(close(fd) == 0);
}

static void remove_dir(void)
{
	char path[PATH_MAX + 32];

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		fuzz_path(path, sizeof(path), files[i].name);
		if (files[i].text == NULL)
			rmdir(path);
		else
			unlink(path);
	}
	unlink(conf);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX + 32];

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/rollover-fuzz-XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	FUZZ_CHECK(mkdtemp(dir) != NULL);
	atexit(remove_dir);
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		fuzz_path(path, sizeof(path), files[i].name);
		if (files[i].text == NULL)
			FUZZ_CHECK(mkdir(path, files[i].mode) == 0);
		else
			write_file(path, files[i].text, strlen(files[i].text),
				   files[i].mode);
	}
	fuzz_path(conf, sizeof(conf), "rollover.conf");
	return 0;
}

/* Each problem is one line, with its control characters replaced. */
static void report(const char *line)
{
	FUZZ_CHECK(line[0] != '\0');
	for (const char *p = line; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	reports++;
}

static void check_strv(char **v, size_t n)
{
	FUZZ_CHECK(v != NULL);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(v[i] != NULL);
	FUZZ_CHECK(v[n] == NULL);
}

static void check_group(const struct config *c, const struct group_conf *g)
{
	FUZZ_CHECK(g->name != NULL && config_group(c, g->name) == g);
	FUZZ_CHECK(g->command != NULL && g->command[0] == '/');
	FUZZ_CHECK(g->directory == NULL || g->directory[0] == '/');
	FUZZ_CHECK(g->workers >= 1 && g->workers <= GROUP_MAX_WORKERS);
	FUZZ_CHECK(g->settle_max_ms >= g->settle_ms);
	FUZZ_CHECK(g->ready_timeout_ms > 0);
	FUZZ_CHECK(g->nlisten == 0 || (g->listen != NULL && g->listen_at));
	check_strv(g->args, g->nargs);
	check_strv(g->env, g->nenv);
	check_strv(g->watch_paths, g->nwatch_paths);
	for (size_t i = 0; i < g->nwatch_paths; i++)
		FUZZ_CHECK(g->watch_paths[i][0] == '/');
}

static void check_config(const struct config *c)
{
	FUZZ_CHECK(c->control != NULL && c->control[0] == '/');
	FUZZ_CHECK(c->pid_file == NULL || c->pid_file[0] == '/');
	FUZZ_CHECK(c->log_file == NULL || c->log_file[0] == '/');
	FUZZ_CHECK((c->control_mode & 0600) == 0600);
	FUZZ_CHECK(c->ngroups >= 1 && c->groups != NULL);
	for (size_t i = 0; i < c->ngroups; i++)
		check_group(c, &c->groups[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;

	write_file(conf, data, size, 0644);
	reports = 0;
	c = config_load(conf, report);
	FUZZ_CHECK((c == NULL) == (reports > 0));
	if (c != NULL)
		check_config(c);
	config_free(c);
	return 0;
}
