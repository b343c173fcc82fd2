/*
 * fuzz_status.c - rolloverctl's reader of the daemon's `status` line: a
 * small JSON parser, and the table printed from what it parsed.
 *
 * Both are static in rolloverctl.c, so the file is compiled into the
 * harness whole, its main() renamed.  An input that does not parse must
 * be refused with a reason and a position inside it; one that does
 * parses into values whose strings are as long as they say, and is then
 * printed (to /dev/null) as `rolloverctl status` would.
 */
#include "fuzz.h"

int rolloverctl_main(int argc, char **argv);
#define main rolloverctl_main
#include "../../supervisor/rolloverctl.c" /* NOLINT: its statics */
#undef main

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	FUZZ_CHECK(freopen("/dev/null", "w", stdout) != NULL);
	return 0;
}

static void check_value(const struct json *v, int depth)
{
	FUZZ_CHECK(depth <= JSON_DEPTH_MAX);
	switch (v->type) {
	case JSON_STRING:
		FUZZ_CHECK(v->string != NULL && v->string[v->len] == '\0');
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		FUZZ_CHECK(v->len == 0 || v->items != NULL);
		for (size_t i = 0; i < v->len; i++) {
			FUZZ_CHECK(v->type == JSON_ARRAY || v->keys[i] != NULL);
			check_value(&v->items[i], depth + 1);
		}
		break;
	case JSON_NULL:
	case JSON_BOOL:
	case JSON_NUMBER:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	struct json top;
	const char *err = NULL;
	size_t at = 0;

	memcpy(text, data, size);
	text[size] = '\0';
	if (json_parse(text, &top, &err, &at) == -1) {
		FUZZ_CHECK(err != NULL && at <= strlen(text));
	} else {
		check_value(&top, 0);
		if (top.type == JSON_OBJECT)
			status_print(text);
		json_free(&top);
	}
	free(text);
	return 0;
}
