/*
 * request.c - the control protocol's request line, parsed.
 *
 * Pure: a line in, a verb and its arguments (or the error to answer) out,
 * with no I/O and no state, so that it can be tested and fuzzed alone and
 * control.c only dispatches on the result.  Which verbs exist and how many
 * arguments each takes is the table REQUEST_VERBS in rollover.h.
 *
 * The rules, kept from the protocol as rolloverctl(8) has always spoken it:
 * words are separated by spaces and tabs; a verb given the wrong number
 * of words is an unknown command, except that a verb that takes the
 * --no-wait option answers with its usage line when it has at most one
 * word too many or an argument that looks like an option.
 */
#include <stdio.h>
#include <string.h>

#include "rollover.h"

/* The verb and its arguments, and one more word to notice too many. */
#define REQUEST_WORDS_MAX (1 + REQUEST_ARGS_MAX)

static const struct request_verb_spec {
	const char *name;
	int min, max;
	const char *usage; /* non-NULL: the verb takes --no-wait */
} request_verbs[] = {
#define REQUEST_VERB_SPEC(name, min, max, usage) {#name, min, max, usage},
    REQUEST_VERBS(REQUEST_VERB_SPEC)
#undef REQUEST_VERB_SPEC
};

/* Split line in place into at most max words; max + 1 if there are more. */
static int request_split(char *line, char **w, int max)
{
	char *save = NULL;
	int n = 0;

	for (char *t = strtok_r(line, " \t", &save); t != NULL;
	     t = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return max + 1;
		w[n++] = t;
	}
	return n;
}

static int request_unknown(struct request *r, const char *verb)
{
	snprintf(r->error, sizeof(r->error), "unknown command '%.64s'", verb);
	return -1;
}

static int request_usage(struct request *r, const char *usage)
{
	snprintf(r->error, sizeof(r->error), "usage: %s", usage);
	return -1;
}

static const struct request_verb_spec *request_verb(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(request_verbs); i++)
		if (strcmp(request_verbs[i].name, name) == 0)
			return &request_verbs[i];
	return NULL;
}

/* A verb that takes options refuses the ones it does not know. */
static int request_has_option(char *const *args, int n)
{
	for (int i = 0; i < n; i++)
		if (args[i][0] == '-')
			return 1;
	return 0;
}

int request_parse(char *line, struct request *r)
{
	char *w[REQUEST_WORDS_MAX];
	int n = request_split(line, w, REQUEST_WORDS_MAX), nargs;
	const struct request_verb_spec *v;

	memset(r, 0, sizeof(*r));
	if (n == 0) {
		snprintf(r->error, sizeof(r->error), "empty request");
		return -1;
	}
	if ((v = request_verb(w[0])) == NULL || n > REQUEST_WORDS_MAX)
		return request_unknown(r, w[0]);
	nargs = n - 1;
	if (nargs > v->max + (v->usage != NULL))
		return request_unknown(r, w[0]);
	if (v->usage != NULL && nargs > 0 &&
	    strcmp(w[nargs], "--no-wait") == 0) {
		r->nowait = 1;
		nargs--;
	}
	if (nargs < v->min || nargs > v->max ||
	    (v->usage != NULL && request_has_option(w + 1, nargs))) {
		if (v->usage != NULL)
			return request_usage(r, v->usage);
		return request_unknown(r, w[0]);
	}
	r->verb = (enum request_verb)(v - request_verbs);
	for (int i = 0; i < nargs; i++)
		r->args[i] = w[1 + i];
	r->nargs = nargs;
	return 0;
}
