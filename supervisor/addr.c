/*
 * addr.c - listening addresses as written in the config.
 *
 * Hosts must be numeric: the supervisor binds before anything else runs,
 * often before the network is up, and a name that resolves differently
 * on each reload would make "is this the same socket?" unanswerable.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "rollover.h"

#define ADDR_UNIX_PREFIX "unix:"

/* A decimal port, 1..65535, and nothing after it. */
static int addr_port(const char *s, in_port_t *port, const char **why)
{
	unsigned long v = 0;

	if (*s == '\0') {
		*why = "missing port";
		return -1;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9') {
			*why = "port must be a decimal number";
			return -1;
		}
		/* Stop accumulating once out of range, so it cannot wrap. */
		if (v <= 65535)
			v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < 1 || v > 65535) {
		*why = "port out of range (1..65535)";
		return -1;
	}
	*port = htons((in_port_t)v);
	return 0;
}

static int addr_parse_unix(const char *path, struct addr *a, const char **why)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
	size_t n = strlen(path);

	if (n == 0 || (path[0] == '@' && n == 1)) {
		*why = "missing unix socket path";
		return -1;
	}
	/*
	 * A path needs room for its terminating NUL; an abstract name
	 * replaces the '@' with a NUL byte and has no terminator, its
	 * length is carried by the address length instead.
	 */
	if (path[0] == '@' ? n > sizeof(sun->sun_path)
			   : n >= sizeof(sun->sun_path)) {
		*why = "unix socket path too long";
		return -1;
	}
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	if (path[0] == '@') {
		sun->sun_path[0] = '\0';
		a->len =
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else
		a->len =
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	snprintf(a->text, sizeof(a->text), ADDR_UNIX_PREFIX "%s", path);
	return 0;
}

static int addr_parse_inet6(const char *s, struct addr *a, const char **why)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
	char host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN];
	const char *end = strchr(s, ']');
	size_t n;

	if (end == NULL) {
		*why = "missing ']' after IPv6 address";
		return -1;
	}
	n = (size_t)(end - (s + 1));
	if (n == 0 || n >= sizeof(host)) {
		*why = "not a numeric IPv4 or [IPv6] address";
		return -1;
	}
	memcpy(host, s + 1, n);
	host[n] = '\0';
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
		*why = "not a numeric IPv4 or [IPv6] address";
		return -1;
	}
	if (end[1] == '\0') {
		*why = "missing port";
		return -1;
	}
	if (end[1] != ':') {
		*why = "expected ':' and a port after ']'";
		return -1;
	}
	if (addr_port(end + 2, &sin6->sin6_port, why) == -1)
		return -1;
	sin6->sin6_family = AF_INET6;
	a->len = sizeof(*sin6);
	inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
	snprintf(a->text, sizeof(a->text), "[%s]:%u", buf,
		 (unsigned)ntohs(sin6->sin6_port));
	return 0;
}

static int addr_parse_inet(const char *s, struct addr *a, const char **why)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN], buf[INET_ADDRSTRLEN];
	size_t n;

	if (colon == NULL) {
		*why = "missing port";
		return -1;
	}
	n = (size_t)(colon - s);
	if (n == 0) {
		*why = "missing host (use *:PORT for any address)";
		return -1;
	}
	if (memchr(s, ':', n) != NULL) {
		*why = "IPv6 addresses must be written in brackets: [::1]:PORT";
		return -1;
	}
	if (n == 1 && s[0] == '*')
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (n >= sizeof(host)) {
		*why = "not a numeric IPv4 or [IPv6] address";
		return -1;
	} else {
		memcpy(host, s, n);
		host[n] = '\0';
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*why = "not a numeric IPv4 or [IPv6] address";
			return -1;
		}
	}
	if (addr_port(colon + 1, &sin->sin_port, why) == -1)
		return -1;
	sin->sin_family = AF_INET;
	a->len = sizeof(*sin);
	inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
	snprintf(a->text, sizeof(a->text), "%s:%u", buf,
		 (unsigned)ntohs(sin->sin_port));
	return 0;
}

int addr_parse(const char *s, struct addr *a, const char **why)
{
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	/* Zeroed so that padding never differs between equal addresses. */
	memset(a, 0, sizeof(*a));
	if (strncmp(s, ADDR_UNIX_PREFIX, strlen(ADDR_UNIX_PREFIX)) == 0)
		return addr_parse_unix(s + strlen(ADDR_UNIX_PREFIX), a, why);
	if (s[0] == '[')
		return addr_parse_inet6(s, a, why);
	return addr_parse_inet(s, a, why);
}

int addr_equal(const struct addr *a, const struct addr *b)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;
	const struct sockaddr_un *au, *bu;

	if (a->ss.ss_family != b->ss.ss_family || a->len != b->len)
		return 0;
	switch (a->ss.ss_family) {
	case AF_INET:
		a4 = (const struct sockaddr_in *)&a->ss;
		b4 = (const struct sockaddr_in *)&b->ss;
		return a4->sin_port == b4->sin_port &&
		       a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	case AF_INET6:
		a6 = (const struct sockaddr_in6 *)&a->ss;
		b6 = (const struct sockaddr_in6 *)&b->ss;
		return a6->sin6_port == b6->sin6_port &&
		       a6->sin6_scope_id == b6->sin6_scope_id &&
		       memcmp(&a6->sin6_addr, &b6->sin6_addr,
			      sizeof(a6->sin6_addr)) == 0;
	case AF_UNIX:
		au = (const struct sockaddr_un *)&a->ss;
		bu = (const struct sockaddr_un *)&b->ss;
		return memcmp(au->sun_path, bu->sun_path,
			      a->len -
				  offsetof(struct sockaddr_un, sun_path)) == 0;
	}
	return 0;
}
