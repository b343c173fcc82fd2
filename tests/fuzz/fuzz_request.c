/*
 * fuzz_request.c - the control protocol's request line, as control.c
 * hands it to request_parse(): at most a buffer's worth of bytes, cut at
 * the first newline, a carriage return before it dropped.
 *
 * Beyond not crashing, the parse must keep the table's word: a request it
 * accepts names a verb of the table, with as many arguments as that verb
 * takes, each a non-empty word; a refusal is one line of text.
 */
#include <stdio.h>
#include <string.h>

#include "../../supervisor/rollover.h"
#include "fuzz.h"

#define REQUEST_LINE_MAX 1024 /* control.c's buffer */

static const struct {
	const char *name;
	int min, max;
} verbs[] = {
#define FUZZ_VERB(name, min, max, usage) {#name, min, max},
    REQUEST_VERBS(FUZZ_VERB)
#undef FUZZ_VERB
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static void check_accepted(const char *line, const struct request *r)
{
	char first[REQUEST_LINE_MAX];

	FUZZ_CHECK((size_t)r->verb < ARRAY_LEN(verbs));
	FUZZ_CHECK(r->nargs >= verbs[r->verb].min &&
		   r->nargs <= verbs[r->verb].max);
	FUZZ_CHECK(sscanf(line, "%1023s", first) == 1);
	FUZZ_CHECK(strcmp(first, verbs[r->verb].name) == 0);
	for (int i = 0; i < r->nargs; i++) {
		FUZZ_CHECK(r->args[i] != NULL && r->args[i][0] != '\0');
		FUZZ_CHECK(strpbrk(r->args[i], " \t") == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[REQUEST_LINE_MAX + 1], copy[REQUEST_LINE_MAX + 1];
	size_t n = size < REQUEST_LINE_MAX ? size : REQUEST_LINE_MAX;
	struct request r;
	char *nl;

	memcpy(line, data, n);
	line[n] = '\0';
	if ((nl = memchr(line, '\n', n)) != NULL) {
		*nl = '\0';
		if (nl > line && nl[-1] == '\r')
			nl[-1] = '\0';
	}
	memcpy(copy, line, sizeof(copy));
	if (request_parse(line, &r) == 0) {
		check_accepted(copy, &r);
		return 0;
	}
	FUZZ_CHECK(memchr(r.error, '\0', sizeof(r.error)) != NULL);
	FUZZ_CHECK(r.error[0] != '\0' && strchr(r.error, '\n') == NULL);
	return 0;
}
