/*
 * http.c - the request-head parser of rollover-hello; see http.h.
 *
 * One pass over the lines of the head, each found with memchr(3).  The
 * head is re-parsed from its start whenever more of it arrives, which
 * costs little: a head is at most max bytes, and a client that sends it
 * a byte at a time is bounded by the caller's header timeout.
 */
#include <string.h>
#include <strings.h>

#include "http.h"

/* The characters of an RFC 9110 token, as a 256-bit set. */
static bool is_tchar(unsigned char ch)
{
	static const uint64_t set[4] = {0x03ff6cfa00000000ULL,
					0x57ffffffc7fffffeULL, 0, 0};

	return (set[ch >> 6] >> (ch & 63)) & 1;
}

/* A byte that may not appear in a field value: CTL other than HTAB. */
static bool is_bad_value_char(unsigned char ch)
{
	return (ch < ' ' && ch != '\t') || ch == 0x7f;
}

/* Does the comma-separated list [p, end) hold token tok (any case)? */
static bool list_has(const char *p, const char *end, const char *tok, size_t tl)
{
	while (p < end) {
		const char *q = memchr(p, ',', (size_t)(end - p));
		const char *e = q != NULL ? q : end;

		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == tl && strncasecmp(p, tok, tl) == 0)
			return true;
		if (q == NULL)
			break;
		p = q + 1;
	}
	return false;
}

/* "HTTP/D.D" exactly; 0, or the status to answer. */
static int parse_version(const char *p, const char *end, int *minor)
{
	if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
	    p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
		return 400;
	if (p[5] != '1')
		return 505;
	*minor = p[7] == '0' ? 0 : 1; /* 1.2 and later are answered as 1.1 */
	return 0;
}

/* "METHOD SP TARGET SP HTTP/D.D"; 0, or the status to answer. */
static int parse_request_line(const char *p, const char *end,
			      struct http_request *rq)
{
	const char *m = p, *t;
	size_t ml;

	while (p < end && is_tchar((unsigned char)*p))
		p++;
	if (p == m || p == end || *p != ' ')
		return 400;
	ml = (size_t)(p - m);
	rq->method = HTTP_OTHER;
	if (ml == 3 && memcmp(m, "GET", 3) == 0)
		rq->method = HTTP_GET;
	else if (ml == 4 && memcmp(m, "HEAD", 4) == 0)
		rq->method = HTTP_HEAD;
	t = ++p;
	while (p < end && (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f)
		p++;
	if (p == t || p == end || *p != ' ')
		return 400;
	rq->target = t;
	rq->target_len = (size_t)(p - t);
	return parse_version(p + 1, end, &rq->minor);
}

struct fields {
	bool close, keep, te, has_cl;
	uint64_t cl;
};

/* 1*18DIGIT, the same in every Content-Length line; 0 or 400. */
static int parse_content_length(const char *v, const char *ve, struct fields *f)
{
	uint64_t cl = 0;

	if (v == ve || ve - v > 18)
		return 400;
	for (const char *q = v; q < ve; q++) {
		if (*q < '0' || *q > '9')
			return 400;
		cl = cl * 10 + (uint64_t)(*q - '0');
	}
	if (f->has_cl && f->cl != cl)
		return 400;
	f->has_cl = true;
	f->cl = cl;
	return 0;
}

static bool name_is(const char *name, size_t nl, const char *want, size_t wl)
{
	return nl == wl && strncasecmp(name, want, wl) == 0;
}

/* One "Name: value" line; 0, or the status to answer. */
static int parse_field(const char *p, const char *end, struct fields *f)
{
	const char *name = p, *v, *ve;
	size_t nl;

	while (p < end && is_tchar((unsigned char)*p))
		p++;
	if (p == name || p == end || *p != ':')
		return 400; /* also obs-fold and white space before ':' */
	nl = (size_t)(p - name);
	for (v = p + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	for (ve = end; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
		;
	for (const char *q = v; q < ve; q++)
		if (is_bad_value_char((unsigned char)*q))
			return 400;
	if (name_is(name, nl, "connection", 10)) {
		f->close |= list_has(v, ve, "close", 5);
		f->keep |= list_has(v, ve, "keep-alive", 10);
	} else if (name_is(name, nl, "content-length", 14)) {
		return parse_content_length(v, ve, f);
	} else if (name_is(name, nl, "transfer-encoding", 17)) {
		f->te = true;
	}
	return 0;
}

/* Leading empty lines, CRLF or LF; returns where the request starts. */
static const char *skip_empty_lines(const char *p, const char *end)
{
	while (p < end) {
		if (*p == '\n')
			p++;
		else if (*p == '\r' && p + 1 < end && p[1] == '\n')
			p += 2;
		else
			break;
	}
	return p;
}

long http_parse(const char *buf, size_t len, size_t max,
		struct http_request *rq)
{
	const char *p, *eol, *end = buf + (len < max ? len : max);
	struct fields f = {0};
	bool first = true;

	p = skip_empty_lines(buf, end);
	for (;;) {
		const char *le;
		int r;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			return len >= max ? -431 : 0;
		le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		if (memchr(p, '\r', (size_t)(le - p)) != NULL)
			return -400;
		if (first)
			r = parse_request_line(p, le, rq);
		else if (le == p)
			break; /* the empty line that ends the head */
		else
			r = parse_field(p, le, &f);
		if (r != 0)
			return -r;
		first = false;
		p = eol + 1;
	}
	if (f.te)
		return f.has_cl ? -400 : -501;
	rq->content_length = f.cl;
	rq->keep_alive = rq->minor >= 1 ? !f.close : f.keep && !f.close;
	return (long)(eol + 1 - buf);
}
