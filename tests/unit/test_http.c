/*
 * test_http.c - the request-head parser of rollover-hello (worker/http.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

#define MAX 8192

static long parse(const char *s, struct http_request *rq)
{
	return http_parse(s, strlen(s), MAX, rq);
}

static long status_of(const char *s)
{
	struct http_request rq;

	return parse(s, &rq);
}

static void test_simple_get(void **state)
{
	const char *s = "GET /pid?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_request rq;

	(void)state;
	assert_int_equal(parse(s, &rq), strlen(s));
	assert_int_equal(rq.method, HTTP_GET);
	assert_int_equal(rq.target_len, 8);
	assert_memory_equal(rq.target, "/pid?x=1", 8);
	assert_ptr_equal(rq.target, s + 4);
	assert_int_equal(rq.minor, 1);
	assert_true(rq.keep_alive);
	assert_int_equal(rq.content_length, 0);
}

static void test_methods(void **state)
{
	struct http_request rq;

	(void)state;
	assert_true(parse("HEAD / HTTP/1.1\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.method, HTTP_HEAD);
	assert_true(parse("POST / HTTP/1.1\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.method, HTTP_OTHER);
	assert_true(parse("get / HTTP/1.1\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.method,
			 HTTP_OTHER); /* methods are case-sensitive */
	assert_true(parse("GETX / HTTP/1.1\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.method, HTTP_OTHER);
}

static void test_keep_alive_rules(void **state)
{
	struct http_request rq;

	(void)state;
	assert_true(parse("GET / HTTP/1.0\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.minor, 0);
	assert_false(rq.keep_alive);
	assert_true(
	    parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &rq) > 0);
	assert_true(rq.keep_alive);
	assert_true(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &rq) >
		    0);
	assert_false(rq.keep_alive);
	assert_true(
	    parse("GET / HTTP/1.1\r\nconnection:  Upgrade ,CLOSE \r\n\r\n",
		  &rq) > 0);
	assert_false(rq.keep_alive);
	assert_true(parse("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", &rq) >
		    0);
	assert_true(rq.keep_alive); /* "closed" is not "close" */
	assert_true(
	    parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
		  &rq) > 0);
	assert_false(rq.keep_alive);
	/* 1.x for x > 1 is answered as 1.1. */
	assert_true(parse("GET / HTTP/1.2\r\n\r\n", &rq) > 0);
	assert_int_equal(rq.minor, 1);
	assert_true(rq.keep_alive);
}

static void test_line_endings_and_leading_lines(void **state)
{
	const char *lf = "GET / HTTP/1.1\nHost: x\n\n";
	const char *lead = "\r\n\r\n\nGET / HTTP/1.1\r\n\r\n";
	struct http_request rq;

	(void)state;
	assert_int_equal(parse(lf, &rq), strlen(lf));
	assert_int_equal(parse(lead, &rq), strlen(lead));
	assert_int_equal(status_of("\r\n"), 0);
	assert_int_equal(status_of("\r"), 0);
	assert_int_equal(status_of(""), 0);
}

/* Every proper prefix is incomplete, and the whole is one head. */
static void test_split_byte_by_byte(void **state)
{
	const char *s = "GET /sleep?ms=5 HTTP/1.1\r\nHost: example\r\n"
			"Content-Length: 3\r\nConnection: keep-alive\r\n\r\n";
	size_t n = strlen(s);
	struct http_request rq;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		char *copy =
		    malloc(i + 1); /* exact size: ASan sees overreads */

		assert_non_null(copy);
		memcpy(copy, s, i);
		assert_int_equal(http_parse(copy, i, MAX, &rq), 0);
		free(copy);
	}
	assert_int_equal(http_parse(s, n, MAX, &rq), n);
	assert_int_equal(rq.content_length, 3);
}

static void test_pipelined(void **state)
{
	const char *s = "GET / HTTP/1.1\r\n\r\n"
			"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
			"HEAD /pid HTTP/1.0\r\n\r\n"
			"GET /last HTTP/1.1\r\nHo";
	size_t n = strlen(s), at = 0;
	struct http_request rq;
	long r;

	(void)state;
	r = http_parse(s + at, n - at, MAX, &rq);
	assert_int_equal(r, 18);
	assert_int_equal(rq.method, HTTP_GET);
	at += (size_t)r;
	r = http_parse(s + at, n - at, MAX, &rq);
	assert_true(r > 0);
	assert_int_equal(rq.method, HTTP_OTHER);
	assert_int_equal(rq.content_length, 4);
	at += (size_t)r + rq.content_length;
	r = http_parse(s + at, n - at, MAX, &rq);
	assert_true(r > 0);
	assert_int_equal(rq.method, HTTP_HEAD);
	assert_false(rq.keep_alive);
	at += (size_t)r;
	assert_int_equal(http_parse(s + at, n - at, MAX, &rq), 0);
}

static void test_malformed_request_line(void **state)
{
	static const char *const bad[] = {
	    " / HTTP/1.1\r\n\r\n",	      /* no method */
	    "G@T / HTTP/1.1\r\n\r\n",	      /* not a token */
	    "GET  / HTTP/1.1\r\n\r\n",	      /* two spaces */
	    "GET / HTTP/1.1 \r\n\r\n",	      /* trailing space */
	    "GET /\r\n\r\n",		      /* no version (HTTP/0.9) */
	    "GET\r\n\r\n",		      /* method alone */
	    "GET / HTTP/11\r\n\r\n",	      /* version without a dot */
	    "GET / HTTQ/1.1\r\n\r\n",	      /* not HTTP */
	    "GET / http/1.1\r\n\r\n",	      /* case matters */
	    "GET / HTTP/1.x\r\n\r\n",	      /* not a digit */
	    "GET / HTTP/1.1x\r\n\r\n",	      /* too long */
	    "GET /a\x01 HTTP/1.1\r\n\r\n",    /* control in the target */
	    "GET /a\x7f HTTP/1.1\r\n\r\n",    /* DEL in the target */
	    "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", /* raw UTF-8 in the target */
	    "GET / HTTP/1.1\rX\r\n\r\n",      /* bare CR */
	    "GET /\r HTTP/1.1\r\n\r\n",	      /* bare CR in the target */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long r = status_of(bad[i]);

		if (r != -400)
			fail_msg("request %zu: %ld, not -400", i, r);
	}
	assert_int_equal(status_of("GET / HTTP/2.0\r\n\r\n"), -505);
	assert_int_equal(status_of("GET / HTTP/0.9\r\n\r\n"), -505);
}

static void test_malformed_fields(void **state)
{
	static const char *const bad[] = {
	    "GET / HTTP/1.1\r\nHost x\r\n\r\n",	    /* no colon */
	    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",   /* space before ':' */
	    "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",  /* tab before ':' */
	    "GET / HTTP/1.1\r\n: x\r\n\r\n",	    /* empty name */
	    "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", /* obs-fold */
	    "GET / HTTP/1.1\r\n\tc\r\n\r\n",	    /* obs-fold, first */
	    "GET / HTTP/1.1\r\nA(b): c\r\n\r\n",    /* not a token */
	    "GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",  /* control in value */
	    "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",   /* DEL in value */
	    "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",    /* bare CR in value */
	    "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 1\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n",
	};
	struct http_request rq;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long r = status_of(bad[i]);

		if (r != -400)
			fail_msg("request %zu: %ld, not -400", i, r);
	}
	/* A NUL byte is a control character too. */
	assert_int_equal(
	    http_parse("GET / HTTP/1.1\r\nA: \0\r\n\r\n", 24, MAX, &rq), -400);
	assert_int_equal(
	    status_of("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    -501);
	/* The same length twice is one length. */
	assert_true(parse("GET / HTTP/1.1\r\nContent-Length: 7\r\n"
			  "content-length: 007\r\n\r\n",
			  &rq) > 0);
	assert_int_equal(rq.content_length, 7);
	/* Values may hold tabs, spaces and obs-text; empty values are fine. */
	assert_true(status_of("GET / HTTP/1.1\r\nA:\r\nB: x\ty \xe9\r\n\r\n") >
		    0);
}

/* A bad line is refused as soon as it is complete. */
static void test_refused_before_complete(void **state)
{
	(void)state;
	assert_int_equal(status_of("G@T / HTTP/1.1\r\n"), -400);
	assert_int_equal(status_of("GET / HTTP/1.1\r\nBad Line\r\nHost: "),
			 -400);
	assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: x\r\n"), 0);
}

static void test_too_large(void **state)
{
	char buf[300];
	struct http_request rq;
	size_t n;

	(void)state;
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	/* Incomplete and at the limit: 431; below it: wait for more. */
	assert_int_equal(http_parse(buf, 256, 256, &rq), -431);
	assert_int_equal(http_parse(buf, 300, 256, &rq), -431);
	assert_int_equal(http_parse(buf, 255, 256, &rq), 0);
	/* A head that ends exactly at the limit fits. */
	n = 256;
	memcpy(buf + n - 4, "\r\n\r\n", 4);
	assert_int_equal(http_parse(buf, n, 256, &rq), 256);
	/* One that ends beyond it does not, even if all of it is there. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	memcpy(buf + 296, "\r\n\r\n", 4);
	assert_int_equal(http_parse(buf, 300, 256, &rq), -431);
	assert_int_equal(http_parse(buf, 300, 300, &rq), 300);
}

/*
 * Random bytes, and random mutations of a valid head: any result is
 * one of those documented, a length never exceeds the input, and
 * (under ASan) nothing is read outside it.
 */
static void check_result(const char *buf, size_t len, long r,
			 const struct http_request *rq)
{
	if (r > 0) {
		assert_true((size_t)r <= len);
		assert_true(rq->target >= buf && rq->target < buf + r);
		return;
	}
	if (r != 0 && r != -400 && r != -431 && r != -501 && r != -505)
		fail_msg("unexpected result %ld", r);
}

static void test_random_input(void **state)
{
	static const char valid[] = "GET /sleep?ms=1 HTTP/1.1\r\nHost: x\r\n"
				    "Content-Length: 2\r\nConnection: close\r\n"
				    "\r\n";
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(rand_r(&seed) % 200);
		char *buf = malloc(len + 1);
		struct http_request rq;

		assert_non_null(buf);
		if (i % 2 == 0) {
			for (size_t k = 0; k < len; k++)
				buf[k] = (char)(rand_r(&seed) & 0xff);
		} else {
			len = len % sizeof(valid);
			memcpy(buf, valid, len);
			for (int k = 0; len > 0 && k < 3; k++)
				buf[(size_t)rand_r(&seed) % len] =
				    (char)(rand_r(&seed) & 0xff);
		}
		check_result(buf, len, http_parse(buf, len, 128, &rq), &rq);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_get),
	    cmocka_unit_test(test_methods),
	    cmocka_unit_test(test_keep_alive_rules),
	    cmocka_unit_test(test_line_endings_and_leading_lines),
	    cmocka_unit_test(test_split_byte_by_byte),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_malformed_request_line),
	    cmocka_unit_test(test_malformed_fields),
	    cmocka_unit_test(test_refused_before_complete),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
