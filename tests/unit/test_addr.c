/*
 * test_addr.c - every form addr_parse() accepts, and the ones it refuses.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "rollover.h"

static void parse_ok(const char *s, struct addr *a)
{
	const char *why = NULL;

	if (addr_parse(s, a, &why) != 0)
		fail_msg("\"%s\" refused: %s", s, why);
}

static void test_ipv4(void **state)
{
	const struct sockaddr_in *sin;
	struct addr a;

	(void)state;
	parse_ok("127.0.0.1:8080", &a);
	sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_string_equal(a.text, "127.0.0.1:8080");

	parse_ok("10.1.2.3:1", &a);
	assert_string_equal(a.text, "10.1.2.3:1");
	parse_ok("10.1.2.3:65535", &a);
	assert_string_equal(a.text, "10.1.2.3:65535");
}

static void test_ipv4_any(void **state)
{
	const struct sockaddr_in *sin;
	struct addr a, b;

	(void)state;
	parse_ok("*:8080", &a);
	sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_string_equal(a.text, "0.0.0.0:8080");
	parse_ok("0.0.0.0:8080", &b);
	assert_true(addr_equal(&a, &b));
}

static void test_ipv6(void **state)
{
	const struct sockaddr_in6 *sin6;
	struct addr a;

	(void)state;
	parse_ok("[::1]:8080", &a);
	sin6 = (const struct sockaddr_in6 *)&a.ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 8080);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_string_equal(a.text, "[::1]:8080");

	parse_ok("[::]:443", &a);
	sin6 = (const struct sockaddr_in6 *)&a.ss;
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	assert_string_equal(a.text, "[::]:443");

	/* The text is inet_ntop's, whatever was written. */
	parse_ok("[2001:DB8:0:0:0:0:0:1]:80", &a);
	assert_string_equal(a.text, "[2001:db8::1]:80");
}

static void test_unix_path(void **state)
{
	const struct sockaddr_un *sun;
	struct addr a;

	(void)state;
	parse_ok("unix:/run/app.sock", &a);
	sun = (const struct sockaddr_un *)&a.ss;
	assert_int_equal(sun->sun_family, AF_UNIX);
	assert_string_equal(sun->sun_path, "/run/app.sock");
	assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) +
				    strlen("/run/app.sock") + 1);
	assert_string_equal(a.text, "unix:/run/app.sock");

	parse_ok("unix:rel/app.sock", &a);
	sun = (const struct sockaddr_un *)&a.ss;
	assert_string_equal(sun->sun_path, "rel/app.sock");
	assert_string_equal(a.text, "unix:rel/app.sock");
}

static void test_unix_abstract(void **state)
{
	const struct sockaddr_un *sun;
	struct addr a;

	(void)state;
	parse_ok("unix:@hello", &a);
	sun = (const struct sockaddr_un *)&a.ss;
	assert_int_equal(sun->sun_family, AF_UNIX);
	assert_int_equal(sun->sun_path[0], '\0');
	assert_memory_equal(sun->sun_path + 1, "hello", 5);
	assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + 1 + 5);
	assert_string_equal(a.text, "unix:@hello");
}

static void test_unix_longest(void **state)
{
	struct sockaddr_un sun;
	char path[sizeof(sun.sun_path) + 16];
	struct addr a;
	const char *why;

	(void)state;
	/* A path needs its NUL: 107 bytes fit, 108 do not. */
	memcpy(path, "unix:/", 6);
	memset(path + 6, 'p', sizeof(sun.sun_path) - 2);
	path[6 + sizeof(sun.sun_path) - 2] = '\0';
	parse_ok(path, &a);
	strcat(path, "p");
	assert_int_equal(addr_parse(path, &a, &why), -1);
	assert_string_equal(why, "unix socket path too long");

	/* An abstract name has no NUL: 107 bytes after the '@' fit. */
	memcpy(path, "unix:@", 6);
	memset(path + 6, 'n', sizeof(sun.sun_path) - 1);
	path[6 + sizeof(sun.sun_path) - 1] = '\0';
	parse_ok(path, &a);
	assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) +
				    sizeof(sun.sun_path));
	strcat(path, "n");
	assert_int_equal(addr_parse(path, &a, &why), -1);
	assert_string_equal(why, "unix socket path too long");
}

static void test_rejected(void **state)
{
	static const struct {
		const char *s;
		const char *why;
	} bad[] = {
	    {"127.0.0.1", "missing port"},
	    {"127.0.0.1:", "missing port"},
	    {":80", "missing host (use *:PORT for any address)"},
	    {"1.2.3.4:0", "port out of range (1..65535)"},
	    {"1.2.3.4:65536", "port out of range (1..65535)"},
	    {"1.2.3.4:70000", "port out of range (1..65535)"},
	    {"1.2.3.4:99999999999999999999", "port out of range (1..65535)"},
	    {"1.2.3.4:80x", "port must be a decimal number"},
	    {"1.2.3.4:0x50", "port must be a decimal number"},
	    {"1.2.3.4:-80", "port must be a decimal number"},
	    {"1.2.3.4: 80", "port must be a decimal number"},
	    {"localhost:80", "not a numeric IPv4 or [IPv6] address"},
	    {"1.2.3:80", "not a numeric IPv4 or [IPv6] address"},
	    {"256.1.1.1:80", "not a numeric IPv4 or [IPv6] address"},
	    {"1.2.3.4.5.6.7.8:80", "not a numeric IPv4 or [IPv6] address"},
	    {"::1:80",
	     "IPv6 addresses must be written in brackets: [::1]:PORT"},
	    {"[::1]8080", "expected ':' and a port after ']'"},
	    {"[::1]", "missing port"},
	    {"[::1]:", "missing port"},
	    {"[::1]:0", "port out of range (1..65535)"},
	    {"[::1:80", "missing ']' after IPv6 address"},
	    {"[]:80", "not a numeric IPv4 or [IPv6] address"},
	    {"[1.2.3.4]:80", "not a numeric IPv4 or [IPv6] address"},
	    {"[::g]:80", "not a numeric IPv4 or [IPv6] address"},
	    {"", "missing port"},
	    {"unix:", "missing unix socket path"},
	    {"unix:@", "missing unix socket path"},
	};
	struct addr a;
	const char *why;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		why = NULL;
		if (addr_parse(bad[i].s, &a, &why) != -1)
			fail_msg("\"%s\" accepted as %s", bad[i].s, a.text);
		if (why == NULL || strcmp(why, bad[i].why) != 0)
			fail_msg("\"%s\": why is \"%s\", expected \"%s\"",
				 bad[i].s, why ? why : "(null)", bad[i].why);
	}
}

static void test_equal(void **state)
{
	struct addr a, b;

	(void)state;
	parse_ok("127.0.0.1:80", &a);
	parse_ok("127.0.0.1:80", &b);
	assert_true(addr_equal(&a, &b));
	parse_ok("127.0.0.1:81", &b);
	assert_false(addr_equal(&a, &b));
	parse_ok("127.0.0.2:80", &b);
	assert_false(addr_equal(&a, &b));
	parse_ok("[::ffff:127.0.0.1]:80", &b);
	assert_false(addr_equal(&a, &b));

	parse_ok("[::1]:80", &a);
	parse_ok("[0:0::1]:80", &b);
	assert_true(addr_equal(&a, &b));
	parse_ok("[::1]:81", &b);
	assert_false(addr_equal(&a, &b));

	parse_ok("unix:/a.sock", &a);
	parse_ok("unix:/a.sock", &b);
	assert_true(addr_equal(&a, &b));
	parse_ok("unix:/b.sock", &b);
	assert_false(addr_equal(&a, &b));
	parse_ok("unix:/a.sockx", &b);
	assert_false(addr_equal(&a, &b));

	/* An abstract name is not the relative path spelt the same. */
	parse_ok("unix:@a.sock", &a);
	parse_ok("unix:@a.sock", &b);
	assert_true(addr_equal(&a, &b));
	parse_ok("unix:a.sock", &b);
	assert_false(addr_equal(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipv4),
	    cmocka_unit_test(test_ipv4_any),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_unix_path),
	    cmocka_unit_test(test_unix_abstract),
	    cmocka_unit_test(test_unix_longest),
	    cmocka_unit_test(test_rejected),
	    cmocka_unit_test(test_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
