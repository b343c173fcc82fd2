/*
 * replay.c - run a fuzz harness over files instead of under libFuzzer.
 *
 * `make check` builds each harness with the normal compiler and this
 * main(), and runs it over the seeds and every regression input (under
 * check-asan with the sanitizers too), so that a crash the fuzzer once
 * found stays fixed without libFuzzer being installed.
 *
 *   replay-NAME FILE|DIR...
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static const char *prog;
static unsigned ninputs;

static void __attribute__((noreturn)) replay_fail(const char *path)
{
	fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
	exit(1);
}

static void replay_file(const char *path)
{
	FILE *f = fopen(path, "rbe");
	uint8_t *data = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		replay_fail(path);
	do {
		if (len == cap) {
			uint8_t *more =
			    realloc(data, cap = cap ? cap * 2 : 4096);

			if (more == NULL)
				replay_fail(path);
			data = more;
		}
		n = fread(data + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	if (ferror(f))
		replay_fail(path);
	fclose(f);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	ninputs++;
}

static int replay_visible(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void replay_path(const char *path)
{
	struct dirent **names;
	char sub[PATH_MAX];
	struct stat st;
	int n;

	if (stat(path, &st) == -1)
		replay_fail(path);
	if (!S_ISDIR(st.st_mode)) {
		replay_file(path);
		return;
	}
	if ((n = scandir(path, &names, replay_visible, alphasort)) == -1)
		replay_fail(path);
	for (int i = 0; i < n; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
		replay_path(sub);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	prog = argv[0];
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		replay_path(argv[i]);
	fprintf(stderr, "%s: %u inputs\n", prog, ninputs);
	return 0;
}
