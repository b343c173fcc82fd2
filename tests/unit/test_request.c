/*
 * test_request.c - the control protocol's request line: every verb, and
 * the exact error a client is answered for each kind of bad line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rollover.h"

/* The arguments point into the line: valid until the next call. */
static struct request parse_ok(const char *text)
{
	static char line[256];
	struct request r;

	snprintf(line, sizeof(line), "%s", text);
	if (request_parse(line, &r) != 0)
		fail_msg("\"%s\" refused: %s", text, r.error);
	return r;
}

static void parse_bad(const char *text, const char *error)
{
	struct request r;
	char line[256];

	snprintf(line, sizeof(line), "%s", text);
	assert_int_equal(request_parse(line, &r), -1);
	assert_string_equal(r.error, error);
}

static void test_verbs(void **state)
{
	struct request r;

	(void)state;
	r = parse_ok("status");
	assert_int_equal(r.verb, VERB_status);
	assert_int_equal(r.nargs, 0);
	r = parse_ok("stop");
	assert_int_equal(r.verb, VERB_stop);
	r = parse_ok(" \tscale  web\t3 ");
	assert_int_equal(r.verb, VERB_scale);
	assert_int_equal(r.nargs, 2);
	assert_string_equal(r.args[0], "web");
	assert_string_equal(r.args[1], "3");
	/* The count is checked by scale itself, after the group. */
	r = parse_ok("scale -web -1");
	assert_string_equal(r.args[1], "-1");
}

static void test_reload(void **state)
{
	struct request r;

	(void)state;
	r = parse_ok("reload");
	assert_int_equal(r.verb, VERB_reload);
	assert_int_equal(r.nargs, 0);
	assert_false(r.nowait);
	r = parse_ok("reload --no-wait");
	assert_int_equal(r.nargs, 0);
	assert_true(r.nowait);
	r = parse_ok("reload web");
	assert_int_equal(r.nargs, 1);
	assert_string_equal(r.args[0], "web");
	assert_false(r.nowait);
	r = parse_ok("reload web --no-wait");
	assert_string_equal(r.args[0], "web");
	assert_true(r.nowait);
}

static void test_usage(void **state)
{
	static const char *const bad[] = {
	    "reload web api",	    "reload --bogus",
	    "reload -x --no-wait",  "reload --no-wait --no-wait",
	    "reload --no-wait web", "reload web api --no-wait x",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad) - 1; i++)
		parse_bad(bad[i], "usage: reload [GROUP] [--no-wait]");
	/* More words than reload could ever take: not reload at all. */
	parse_bad(bad[ARRAY_LEN(bad) - 1], "unknown command 'reload'");
	parse_bad("reload a b c", "unknown command 'reload'");
}

static void test_unknown(void **state)
{
	char longword[200];

	(void)state;
	parse_bad("", "empty request");
	parse_bad(" \t ", "empty request");
	parse_bad("frobnicate", "unknown command 'frobnicate'");
	parse_bad("STATUS", "unknown command 'STATUS'");
	parse_bad("status --json", "unknown command 'status'");
	parse_bad("stop now", "unknown command 'stop'");
	parse_bad("scale web", "unknown command 'scale'");
	parse_bad("scale web 2 3", "unknown command 'scale'");
	parse_bad("status a b c d e f", "unknown command 'status'");
	/* The verb is echoed, cut to 64 bytes. */
	memset(longword, 'x', sizeof(longword) - 1);
	longword[sizeof(longword) - 1] = '\0';
	parse_bad(longword, "unknown command 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verbs),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_usage),
	    cmocka_unit_test(test_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
