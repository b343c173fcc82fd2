/*
 * rolloverctl.c - the control client.
 *
 * One request line goes to the daemon's control socket; the reply is read
 * to end of file: data lines, then one final line, "ok" or "error: MSG".
 * Data lines are handled as they arrive, so that a waiting `reload` shows
 * each group's rollover as it ends.  Only the last line before end of
 * file is final: a data line that merely looks like one (from a group
 * named "error") is held back until the next line shows what it was, and
 * a reply cut short - the daemon died - is never taken for a complete one.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rollover.h"

#ifndef ROLLOVER_DEFAULT_CONFIG
#define ROLLOVER_DEFAULT_CONFIG "/etc/rollover/rollover.conf"
#endif

#define CTL_TIMEOUT_MS	10000	   /* status, scale, stop, reload --no-wait */
#define CTL_REQUEST_MAX 1024	   /* bytes, the "\n" included */
#define CTL_REPLY_MAX	(64 << 20) /* a line longer than this is garbage */
#define JSON_DEPTH_MAX	64

enum ctl_cmd { CMD_STATUS, CMD_RELOAD, CMD_SCALE, CMD_STOP, CMD_UPGRADE };

/* The bytes of a reply not yet split into lines. */
struct reply {
	char *buf;
	size_t len, cap;
	char *held; /* a line that is final if end of file comes next */
};

struct ctl {
	enum ctl_cmd cmd;
	int json;	   /* status --json: pass the daemon's line through */
	int timeout_ms;	   /* -1: wait for as long as the daemon takes */
	uint64_t deadline; /* now_ms() when timeout_ms runs out */
	char *path;	   /* the control socket */
	char request[CTL_REQUEST_MAX + 1];
	struct reply reply;
	char **data; /* status: the data lines, kept for the table */
	size_t ndata;
};

static void __attribute__((noreturn)) usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: rolloverctl [-c FILE | -S SOCKET] status [--json]\n"
		"       rolloverctl [-c FILE | -S SOCKET] reload [GROUP] "
		"[--no-wait]\n"
		"       rolloverctl [-c FILE | -S SOCKET] scale GROUP N\n"
		"       rolloverctl [-c FILE | -S SOCKET] stop\n"
		"       rolloverctl [-c FILE | -S SOCKET] upgrade\n"
		"       rolloverctl -V | -h\n"
		"Without -c or -S, the socket is the one %s names, if it "
		"exists.\n",
		ROLLOVER_DEFAULT_CONFIG);
	exit(status);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
ctl_fail(int status, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("rolloverctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

/* ---- the command line -------------------------------------------------- */

static void __attribute__((format(printf, 2, 3)))
ctl_request(struct ctl *ctl, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(ctl->request, sizeof(ctl->request), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(ctl->request))
		ctl_fail(EXIT_USAGE,
			 "the request would be longer than %d bytes",
			 CTL_REQUEST_MAX);
}

/* A name the daemon can read back as one word of the request line. */
static int ctl_word_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

static void __attribute__((noreturn))
ctl_bad_arg(const char *cmd, const char *arg)
{
	fprintf(stderr, "rolloverctl: %s: unexpected argument '%s'\n", cmd,
		arg);
	usage(EXIT_USAGE);
}

static void ctl_group_arg(const char *cmd, const char *group)
{
	if (!ctl_word_ok(group)) {
		fprintf(stderr, "rolloverctl: %s: bad group name '%s'\n", cmd,
			group);
		usage(EXIT_USAGE);
	}
}

static void ctl_parse_reload(struct ctl *ctl, int argc, char **argv)
{
	const char *group = NULL;
	int nowait = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-wait") == 0 && !nowait)
			nowait = 1;
		else if (group == NULL && argv[i][0] != '-')
			group = argv[i];
		else
			ctl_bad_arg("reload", argv[i]);
	}
	if (group != NULL)
		ctl_group_arg("reload", group);
	ctl_request(ctl, "reload%s%s%s\n", group ? " " : "", group ? group : "",
		    nowait ? " --no-wait" : "");
	/* A waiting reload is bounded by whoever runs it (systemd). */
	ctl->timeout_ms = nowait ? CTL_TIMEOUT_MS : -1;
}

static void ctl_parse_scale(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 3)
		ctl_bad_arg("scale", argv[3]);
	if (argc != 3)
		usage(EXIT_USAGE);
	ctl_group_arg("scale", argv[1]);
	/* The range is the daemon's to judge; the syntax is ours. */
	if (argv[2][0] == '\0' ||
	    strspn(argv[2], "0123456789") != strlen(argv[2]) ||
	    strlen(argv[2]) > 9) {
		fprintf(stderr, "rolloverctl: scale: '%s' is not a number\n",
			argv[2]);
		usage(EXIT_USAGE);
	}
	ctl_request(ctl, "scale %s %s\n", argv[1], argv[2]);
}

/* argv[0] is the command. */
static void ctl_parse_command(struct ctl *ctl, int argc, char **argv)
{
	const char *cmd = argv[0];

	ctl->timeout_ms = CTL_TIMEOUT_MS;
	if (strcmp(cmd, "status") == 0) {
		ctl->cmd = CMD_STATUS;
		if (argc > 2 || (argc == 2 && strcmp(argv[1], "--json") != 0))
			ctl_bad_arg(cmd, argv[argc - 1]);
		ctl->json = argc == 2;
		ctl_request(ctl, "status\n");
	} else if (strcmp(cmd, "reload") == 0) {
		ctl->cmd = CMD_RELOAD;
		ctl_parse_reload(ctl, argc, argv);
	} else if (strcmp(cmd, "scale") == 0) {
		ctl->cmd = CMD_SCALE;
		ctl_parse_scale(ctl, argc, argv);
	} else if (strcmp(cmd, "stop") == 0) {
		ctl->cmd = CMD_STOP;
		if (argc != 1)
			ctl_bad_arg(cmd, argv[1]);
		ctl_request(ctl, "stop\n");
	} else if (strcmp(cmd, "upgrade") == 0) {
		ctl->cmd = CMD_UPGRADE;
		ctl->timeout_ms = 3 * CTL_TIMEOUT_MS; /* the check run: 10 s */
		if (argc != 1)
			ctl_bad_arg(cmd, argv[1]);
		ctl_request(ctl, "upgrade\n");
	} else {
		fprintf(stderr, "rolloverctl: unknown command '%s'\n", cmd);
		usage(EXIT_USAGE);
	}
}

/* ---- finding the socket ------------------------------------------------ */

static char **config_errors;
static size_t nconfig_errors;

static void ctl_config_report(const char *line)
{
	config_errors = xrealloc(config_errors,
				 (nconfig_errors + 1) * sizeof(*config_errors));
	config_errors[nconfig_errors++] = xstrdup(line);
}

static int ctl_has_include(FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	while (!found && getline(&line, &cap, f) != -1)
		found = strncmp(line + strspn(line, " \t"), "@include", 8) == 0;
	free(line);
	rewind(f);
	return found;
}

/*
 * The `control` key alone, from a file that fails config_load()'s checks:
 * a group with `user` read by someone other than root, or an edit not
 * reloaded yet.  The daemon is the one to judge the rest (and a reload
 * reports it).  Files with @include are left to config_load(), which
 * guards libconfig against including a directory.  NULL if unreadable.
 */
static char *ctl_control_only(const char *file)
{
	const char *slash = strrchr(file, '/'), *s;
	char *p = NULL;
	struct stat st;
	config_t cfg;
	FILE *f;

	if ((f = fopen(file, "re")) == NULL)
		return NULL;
	/* libconfig's scanner exit()s on a directory; a pipe reads once. */
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return NULL;
	}
	config_init(&cfg);
	if (!ctl_has_include(f) && config_read(&cfg, f) == CONFIG_TRUE) {
		if (config_lookup_string(&cfg, "control", &s) == CONFIG_FALSE)
			p = control_default_path();
		else if (*s == '/' || (slash == NULL && *s != '\0'))
			p = xstrdup(s);
		else if (*s != '\0')
			p = xasprintf("%.*s%s", (int)(slash - file + 1), file,
				      s);
	}
	config_destroy(&cfg);
	fclose(f);
	return p;
}

static char *ctl_control_from(const char *file)
{
	struct config *c = config_load(file, ctl_config_report);
	char *p;

	if (c != NULL) {
		p = xstrdup(c->control);
		config_free(c);
		return p;
	}
	if ((p = ctl_control_only(file)) != NULL) {
		for (size_t i = 0; i < nconfig_errors; i++)
			free(config_errors[i]);
		free(config_errors);
		config_errors = NULL;
		nconfig_errors = 0;
		return p;
	}
	/*
	 * The file does not parse (an edit with a syntax error, say): the
	 * daemon still runs on its old config, and a reload through the
	 * default socket makes it report the error itself, with its line.
	 */
	for (size_t i = 0; i < nconfig_errors; i++)
		free(config_errors[i]);
	free(config_errors);
	config_errors = NULL;
	nconfig_errors = 0;
	p = control_default_path();
	fprintf(stderr,
		"rolloverctl: %s does not parse; trying the default control "
		"socket %s\n",
		file, p);
	return p;
}

static char *ctl_socket_path(const char *conf, const char *sock)
{
	if (sock != NULL)
		return xstrdup(sock);
	if (conf != NULL)
		return ctl_control_from(conf);
	/* One that exists but cannot be read is reported, not skipped. */
	if (access(ROLLOVER_DEFAULT_CONFIG, F_OK) == 0 || errno != ENOENT)
		return ctl_control_from(ROLLOVER_DEFAULT_CONFIG);
	return control_default_path();
}

/* ---- talking to the daemon --------------------------------------------- */

/* Milliseconds left before the deadline, -1 for none, 0 once past it. */
static int ctl_remaining(const struct ctl *ctl)
{
	uint64_t now = now_ms();

	if (ctl->timeout_ms < 0)
		return -1;
	return now >= ctl->deadline ? 0 : (int)(ctl->deadline - now);
}

static void __attribute__((noreturn)) ctl_timed_out(const struct ctl *ctl)
{
	ctl_fail(1, "%s: no reply within %d seconds (is rollover stuck?)",
		 ctl->path, ctl->timeout_ms / 1000);
}

static void __attribute__((noreturn))
ctl_connect_failed(const struct ctl *ctl, int err)
{
	const char *hint = "";
	struct stat st;

	if (err == ECONNREFUSED && stat(ctl->path, &st) == 0 &&
	    !S_ISSOCK(st.st_mode))
		ctl_fail(1, "cannot connect to %s: not a socket", ctl->path);
	if (err == ENOENT || err == ECONNREFUSED)
		hint = " (is rollover running?)";
	else if (err == EACCES || err == EPERM)
		hint = " (run as root or as rollover's user, or see "
		       "control_mode and control_group in rollover.conf(5))";
	if (err == EAGAIN || err == ETIMEDOUT)
		ctl_fail(1,
			 "cannot connect to %s: not accepting within %d "
			 "seconds (is rollover stuck?)",
			 ctl->path, ctl->timeout_ms / 1000);
	ctl_fail(1, "cannot connect to %s: %s%s", ctl->path, strerror(err),
		 hint);
}

/*
 * A blocking connect; SO_SNDTIMEO bounds its wait for a full backlog.
 * Interrupted, a Unix socket's connect is simply tried again.
 */
static int ctl_connect(struct ctl *ctl)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, rem = ctl_remaining(ctl);
	struct timeval tv;

	if (strlen(ctl->path) >= sizeof(sun.sun_path))
		ctl_fail(1,
			 "%s: too long for a unix socket (at most %zu bytes)",
			 ctl->path, sizeof(sun.sun_path) - 1);
	strcpy(sun.sun_path, ctl->path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		ctl_fail(1, "socket: %s", strerror(errno));
	if (rem > 0) {
		tv.tv_sec = rem / 1000;
		tv.tv_usec = (suseconds_t)(rem % 1000) * 1000;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno == EISCONN)
			break;
		if (errno != EINTR)
			ctl_connect_failed(ctl, errno);
	}
	return fd;
}

/*
 * Send the request.  If the daemon has already closed the connection
 * (it may answer "error: permission denied" before reading a byte), its
 * reply may still be waiting to be read: leave the verdict to it.
 */
static void ctl_send(const struct ctl *ctl, int fd)
{
	const char *p = ctl->request;
	size_t left = strlen(p);

	while (left > 0) {
		ssize_t n = send(fd, p, left, MSG_NOSIGNAL);

		if (n >= 0) {
			p += n;
			left -= (size_t)n;
		} else if (errno == EPIPE || errno == ECONNRESET) {
			return;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ctl_timed_out(ctl);
		} else if (errno != EINTR) {
			ctl_fail(1, "%s: cannot send the request: %s",
				 ctl->path, strerror(errno));
		}
	}
}

static int ctl_is_final(const char *line)
{
	return strcmp(line, "ok") == 0 || (strncmp(line, "error:", 6) == 0 &&
					   (line[6] == ' ' || line[6] == '\0'));
}

/* A data line, as it arrives. */
static void ctl_data(struct ctl *ctl, const char *line)
{
	if (ctl->cmd == CMD_STATUS && !ctl->json) {
		ctl->data =
		    xrealloc(ctl->data, (ctl->ndata + 1) * sizeof(*ctl->data));
		ctl->data[ctl->ndata++] = xstrdup(line);
		return;
	}
	printf("%s\n", line);
	fflush(stdout);
}

static void ctl_line(struct ctl *ctl, struct reply *r, const char *line)
{
	if (r->held != NULL) {
		ctl_data(ctl, r->held); /* something came after it */
		free(r->held);
		r->held = NULL;
	}
	if (ctl_is_final(line))
		r->held = xstrdup(line);
	else
		ctl_data(ctl, line);
}

static void ctl_split(struct ctl *ctl, struct reply *r)
{
	size_t start = 0;
	char *nl;

	while ((nl = memchr(r->buf + start, '\n', r->len - start)) != NULL) {
		*nl = '\0';
		ctl_line(ctl, r, r->buf + start);
		start = (size_t)(nl - r->buf) + 1;
	}
	memmove(r->buf, r->buf + start, r->len - start);
	r->len -= start;
}

/* Wait for and read what there is; 0 at end of file. */
static size_t ctl_read_some(const struct ctl *ctl, int fd, struct reply *r)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	if (r->cap - r->len < 4096) {
		if (r->cap >= CTL_REPLY_MAX)
			ctl_fail(1, "%s: reply line too long", ctl->path);
		r->cap = r->cap ? r->cap * 2 : 8192;
		r->buf = xrealloc(r->buf, r->cap);
	}
	for (;;) {
		int rem = ctl_remaining(ctl);
		ssize_t n;

		if (rem == 0)
			ctl_timed_out(ctl);
		n = poll(&pfd, 1, rem);
		if (n == 0)
			ctl_timed_out(ctl);
		if (n < 0 && errno != EINTR)
			ctl_fail(1, "poll: %s", strerror(errno));
		if (n < 0)
			continue;
		n = read(fd, r->buf + r->len, r->cap - r->len);
		if (n >= 0)
			return (size_t)n;
		if (errno == ECONNRESET)
			return 0; /* the daemon died: incomplete below */
		if (errno != EINTR && errno != EAGAIN)
			ctl_fail(1, "%s: cannot read the reply: %s", ctl->path,
				 strerror(errno));
	}
}

/* Returns the final line, "ok" or "error: ...". */
static const char *ctl_exchange(struct ctl *ctl)
{
	struct reply *r = &ctl->reply;
	size_t n;
	int fd;

	fd = ctl_connect(ctl);
	ctl_send(ctl, fd);
	while ((n = ctl_read_some(ctl, fd, r)) > 0) {
		r->len += n;
		ctl_split(ctl, r);
	}
	close(fd);
	if (r->len > 0 || r->held == NULL)
		ctl_fail(1, "connection closed before the reply was complete");
	return r->held;
}

static void ctl_free(struct ctl *ctl)
{
	for (size_t i = 0; i < ctl->ndata; i++)
		free(ctl->data[i]);
	free(ctl->data);
	free(ctl->reply.buf);
	free(ctl->reply.held);
	free(ctl->path);
}

/* ---- a small JSON reader ----------------------------------------------- */

enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT
};

struct json {
	enum json_type type;
	double number;	    /* NUMBER; BOOL: 0 or 1 */
	char *string;	    /* STRING: decoded, NUL-terminated */
	size_t len;	    /* STRING: its bytes; ARRAY, OBJECT: members */
	char **keys;	    /* OBJECT: the members' names */
	struct json *items; /* ARRAY, OBJECT: the members' values */
};

struct json_in {
	const char *start, *p;
	int depth;
	const char *err; /* what went wrong at p */
};

static int json_value(struct json_in *in, struct json *v);

static int json_error(struct json_in *in, const char *what)
{
	in->err = what;
	return -1;
}

static void json_space(struct json_in *in)
{
	in->p += strspn(in->p, " \t\r\n");
}

static void json_free(struct json *v)
{
	for (size_t i = 0; v->items != NULL && i < v->len; i++) {
		json_free(&v->items[i]);
		if (v->keys != NULL)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->string);
}

static int json_hex4(const char *p, unsigned *cp)
{
	*cp = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		*cp = *cp << 4 | d;
	}
	return 0;
}

static char *json_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* After "\u": a code point, from a surrogate pair if there is one. */
static int json_unicode(struct json_in *in, unsigned *cp)
{
	unsigned lo;

	if (json_hex4(in->p, cp) == -1)
		return json_error(in, "bad \\u escape");
	in->p += 4;
	if (*cp >= 0xd800 && *cp < 0xdc00 && in->p[0] == '\\' &&
	    in->p[1] == 'u' && json_hex4(in->p + 2, &lo) == 0 && lo >= 0xdc00 &&
	    lo < 0xe000) {
		*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
		in->p += 6;
	} else if (*cp >= 0xd800 && *cp < 0xe000) {
		*cp = 0xfffd; /* a lone surrogate */
	}
	return 0;
}

static int json_escape(struct json_in *in, char **o)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	unsigned cp;

	if (*in->p == 'u') {
		in->p++;
		if (json_unicode(in, &cp) == -1)
			return -1;
		*o = json_utf8(*o, cp);
		return 0;
	}
	if (*in->p == '\0' || (e = strchr(from, *in->p)) == NULL)
		return json_error(in, "bad escape");
	*(*o)++ = to[e - from];
	in->p++;
	return 0;
}

/* At the opening quote.  Escapes only shrink, so the raw size will do. */
static int json_string(struct json_in *in, char **out, size_t *len)
{
	const char *q = in->p + 1;
	char *o;

	while (*q != '"' && *q != '\0')
		q += (*q == '\\' && q[1] != '\0') ? 2 : 1;
	if (*q != '"')
		return json_error(in, "unterminated string");
	o = *out = xmalloc((size_t)(q - in->p));
	in->p++;
	while (*in->p != '"') {
		if ((unsigned char)*in->p < 0x20)
			return json_error(in, "control character in string");
		if (*in->p != '\\') {
			*o++ = *in->p++;
			continue;
		}
		in->p++;
		if (json_escape(in, &o) == -1)
			return -1;
	}
	in->p++;
	*o = '\0';
	*len = (size_t)(o - *out);
	return 0;
}

static int json_number(struct json_in *in, struct json *v)
{
	const char *p = in->p;

	/* JSON's grammar, stricter than strtod()'s (no hex, inf or "+"). */
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p += strspn(p, "0123456789");
	else
		return json_error(in, "expected a value");
	if (*p == '.') {
		if (strspn(p + 1, "0123456789") == 0)
			return json_error(in, "bad number");
		p += 1 + strspn(p + 1, "0123456789");
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (strspn(p, "0123456789") == 0)
			return json_error(in, "bad number");
		p += strspn(p, "0123456789");
	}
	v->type = JSON_NUMBER;
	v->number = strtod(in->p, NULL);
	in->p = p;
	return 0;
}

static int json_word(struct json_in *in, struct json *v)
{
	static const struct {
		const char *word;
		enum json_type type;
		double number;
	} words[] = {{"true", JSON_BOOL, 1},
		     {"false", JSON_BOOL, 0},
		     {"null", JSON_NULL, 0}};

	for (size_t i = 0; i < ARRAY_LEN(words); i++) {
		size_t n = strlen(words[i].word);

		if (strncmp(in->p, words[i].word, n) == 0) {
			v->type = words[i].type;
			v->number = words[i].number;
			in->p += n;
			return 0;
		}
	}
	return json_error(in, "expected a value");
}

/* One more member of an array or an object (key NULL for an array). */
static struct json *json_push(struct json *v, char *key)
{
	v->items = xrealloc(v->items, (v->len + 1) * sizeof(*v->items));
	if (v->type == JSON_OBJECT) {
		v->keys = xrealloc(v->keys, (v->len + 1) * sizeof(*v->keys));
		v->keys[v->len] = key;
	}
	memset(&v->items[v->len], 0, sizeof(v->items[0]));
	return &v->items[v->len++];
}

/* An array or an object: at its opening bracket. */
static int json_members(struct json_in *in, struct json *v, char close)
{
	char *key = NULL;
	size_t keylen;

	if (++in->depth > JSON_DEPTH_MAX)
		return json_error(in, "nested too deeply");
	in->p++;
	json_space(in);
	if (*in->p == close) {
		in->p++;
		in->depth--;
		return 0;
	}
	for (;;) {
		json_space(in);
		if (v->type == JSON_OBJECT) {
			if (*in->p != '"')
				return json_error(in, "expected a key");
			if (json_string(in, &key, &keylen) == -1) {
				free(key);
				return -1;
			}
			json_space(in);
			if (*in->p++ != ':') {
				in->p--;
				free(key);
				return json_error(in, "expected ':'");
			}
		}
		if (json_value(in, json_push(v, key)) == -1)
			return -1;
		key = NULL;
		json_space(in);
		if (*in->p == close)
			break;
		if (*in->p != ',')
			return json_error(in, "expected ',' or a closing "
					      "bracket");
		in->p++;
	}
	in->p++;
	in->depth--;
	return 0;
}

static int json_value(struct json_in *in, struct json *v)
{
	json_space(in);
	switch (*in->p) {
	case '{':
		v->type = JSON_OBJECT;
		return json_members(in, v, '}');
	case '[':
		v->type = JSON_ARRAY;
		return json_members(in, v, ']');
	case '"':
		v->type = JSON_STRING;
		return json_string(in, &v->string, &v->len);
	case 't':
	case 'f':
	case 'n':
		return json_word(in, v);
	default:
		return json_number(in, v);
	}
}

/* Parse text, which must hold exactly one value; -1 with *err set. */
static int json_parse(const char *text, struct json *v, const char **err,
		      size_t *at)
{
	struct json_in in = {.start = text, .p = text};

	memset(v, 0, sizeof(*v));
	if (json_value(&in, v) == 0) {
		json_space(&in);
		if (*in.p == '\0')
			return 0;
		json_error(&in, "text after the value");
	}
	json_free(v);
	*err = in.err;
	*at = (size_t)(in.p - in.start);
	return -1;
}

/* o's member called key, if o is an object that has one. */
static const struct json *json_get(const struct json *o, const char *key)
{
	if (o == NULL || o->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < o->len; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->items[i];
	return NULL;
}

static const struct json *json_get_type(const struct json *o, const char *key,
					enum json_type t)
{
	const struct json *v = json_get(o, key);

	return v != NULL && v->type == t ? v : NULL;
}

static int json_number_of(const struct json *o, const char *key, double *d)
{
	const struct json *v = json_get_type(o, key, JSON_NUMBER);

	if (v == NULL || !isfinite(v->number))
		return -1;
	*d = v->number;
	return 0;
}

/* ---- the status table -------------------------------------------------- */

/* A string from the daemon, with control characters made visible. */
static void put_text(const struct json *s)
{
	if (s == NULL) {
		fputs("-", stdout);
		return;
	}
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->string[i];

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

/* The same, into buf: for a string that goes in a column. */
static const char *text_cell(const struct json *s, char *buf, size_t len)
{
	size_t n = 0;

	if (s == NULL)
		return "-";
	for (size_t i = 0; i < s->len && n + 1 < len; i++) {
		unsigned char c = (unsigned char)s->string[i];

		buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[n] = '\0';
	return buf;
}

static const char *int_cell(const struct json *o, const char *key, char *buf,
			    size_t len)
{
	double d;

	if (json_number_of(o, key, &d) == -1)
		return "-";
	snprintf(buf, len, "%.0f", d);
	return buf;
}

/* 3s, 2m05s, 1h02m, 3d04h. */
static const char *uptime_cell(const struct json *o, const char *key, char *buf,
			       size_t len)
{
	unsigned long long s;
	double d;

	/* Not an uptime, and beyond what the cast below is defined for. */
	if (json_number_of(o, key, &d) == -1 || d < 0 || d >= 1e18)
		return "-";
	s = (unsigned long long)(d / 1000);
	if (s < 60)
		snprintf(buf, len, "%llus", s);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lluh%02llum", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%llud%02lluh", s / 86400, s / 3600 % 24);
	return buf;
}

/* A rollover's duration: milliseconds while they mean something. */
static const char *duration_cell(const struct json *o, const char *key,
				 char *buf, size_t len)
{
	double d;

	if (json_number_of(o, key, &d) == -1 || d < 0)
		return "?";
	if (d < 10000) {
		snprintf(buf, len, "%.0f ms", d);
		return buf;
	}
	return uptime_cell(o, key, buf, len);
}

static int json_str_is(const struct json *o, const char *key, const char *s)
{
	const struct json *v = json_get_type(o, key, JSON_STRING);

	return v != NULL && strcmp(v->string, s) == 0;
}

/* "last rollover 3 (signal) ok in 14 ms", with the reason if any. */
static void status_last(const struct json *last)
{
	const struct json *result = json_get_type(last, "result", JSON_STRING);
	const struct json *reason = json_get_type(last, "reason", JSON_STRING);
	char gen[32], dur[32];

	if (last == NULL || last->type != JSON_OBJECT) {
		fputs(", no rollover yet", stdout);
		return;
	}
	printf(", %s %s (",
	       json_str_is(last, "result", "running") ? "rollover to"
						      : "last rollover",
	       int_cell(last, "generation", gen, sizeof(gen)));
	put_text(json_get_type(last, "trigger", JSON_STRING));
	fputs(") ", stdout);
	put_text(result);
	printf(" %s %s",
	       json_str_is(last, "result", "ok")	? "in"
	       : json_str_is(last, "result", "running") ? "for"
							: "after",
	       duration_cell(last, "duration_ms", dur, sizeof(dur)));
	if (reason != NULL && reason->len > 0) {
		fputs(": ", stdout);
		put_text(reason);
	}
}

/*
 * Ready workers of the serving generation, out of how many the daemon
 * wants ("workers_wanted", if it says: a slot waiting to be restarted
 * has no worker to infer it from).
 */
static void status_ready(const struct json *g, const struct json *workers)
{
	unsigned ready = 0;
	double gen, wgen, want;

	for (size_t i = 0; workers != NULL && i < workers->len; i++) {
		const struct json *w = &workers->items[i];

		if (json_number_of(g, "generation", &gen) == 0 &&
		    json_number_of(w, "generation", &wgen) == 0 &&
		    gen == wgen && json_str_is(w, "state", "ready"))
			ready++;
	}
	if (json_number_of(g, "workers_wanted", &want) == 0)
		printf(", %u/%.0f ready", ready, want);
	else
		printf(", %u ready", ready);
}

static void status_worker(const struct json *w)
{
	char pid[32], slot[32], gen[32], state[16], up[32], restarts[32];

	printf("%8s %4s %5s  %-9s %7s %8s\n",
	       int_cell(w, "pid", pid, sizeof(pid)),
	       int_cell(w, "slot", slot, sizeof(slot)),
	       int_cell(w, "generation", gen, sizeof(gen)),
	       text_cell(json_get_type(w, "state", JSON_STRING), state,
			 sizeof(state)),
	       uptime_cell(w, "uptime_ms", up, sizeof(up)),
	       int_cell(w, "restarts", restarts, sizeof(restarts)));
}

/* Oldest generation first, then by slot: draining, serving, starting. */
static int worker_cmp(const void *a, const void *b)
{
	const struct json *wa = a, *wb = b;
	static const char *const keys[] = {"generation", "slot", "pid"};
	double x, y;

	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		if (json_number_of(wa, keys[i], &x) == -1)
			x = -1;
		if (json_number_of(wb, keys[i], &y) == -1)
			y = -1;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

static void status_group(const struct json *g)
{
	const struct json *workers = json_get_type(g, "workers", JSON_ARRAY);
	struct json *order;
	char gen[32];

	putchar('\n');
	put_text(json_get_type(g, "name", JSON_STRING));
	printf(": generation %s", int_cell(g, "generation", gen, sizeof(gen)));
	status_ready(g, workers);
	status_last(json_get(g, "last_rollover"));
	putchar('\n');
	if (workers == NULL || workers->len == 0) {
		puts("  (no workers)");
		return;
	}
	/* Shallow copies, to sort: what they point to stays in workers. */
	order = xcalloc(workers->len, sizeof(*order));
	memcpy(order, workers->items, workers->len * sizeof(*order));
	qsort(order, workers->len, sizeof(*order), worker_cmp);
	printf("%8s %4s %5s  %-9s %7s %8s\n", "PID", "SLOT", "GEN", "STATE",
	       "UPTIME", "RESTARTS");
	for (size_t i = 0; i < workers->len; i++)
		status_worker(&order[i]);
	free(order);
}

static void status_print(const char *line)
{
	const struct json *list;
	struct json top;
	const char *err;
	char pid[32], up[32], version[64];
	size_t at;

	if (json_parse(line, &top, &err, &at) == -1)
		ctl_fail(1, "cannot read the daemon's status: %s at byte %zu",
			 err, at + 1);
	if (top.type != JSON_OBJECT)
		ctl_fail(1, "cannot read the daemon's status: not an object");
	printf("rollover %s, pid %s, up %s",
	       text_cell(json_get_type(&top, "version", JSON_STRING), version,
			 sizeof(version)),
	       int_cell(&top, "pid", pid, sizeof(pid)),
	       uptime_cell(&top, "uptime_ms", up, sizeof(up)));
	if (json_get_type(&top, "upgraded_from", JSON_STRING) != NULL) {
		char from[64];

		printf(
		    " (upgraded in place from %s)",
		    text_cell(json_get_type(&top, "upgraded_from", JSON_STRING),
			      from, sizeof(from)));
	}
	printf("\n");
	list = json_get_type(&top, "groups", JSON_ARRAY);
	for (size_t i = 0; list != NULL && i < list->len; i++)
		status_group(&list->items[i]);
	json_free(&top);
}

/* ---- main -------------------------------------------------------------- */

/* The daemon said no: its message, and what to do about a refusal. */
static void __attribute__((noreturn))
ctl_refused(const struct ctl *ctl, const char *final)
{
	const char *msg = final + 6 + (final[6] == ' ');

	if (strcmp(msg, "permission denied") == 0)
		ctl_fail(1,
			 "%s: permission denied (rollover answers root, "
			 "its own user and members of control_group; see "
			 "rollover.conf(5))",
			 ctl->path);
	ctl_fail(1, "%s", msg);
}

int main(int argc, char **argv)
{
	static struct ctl ctl; /* static: still reachable at exit() */
	const char *conf = NULL, *sock = NULL, *final;
	int ch;

	while ((ch = getopt(argc, argv, "+c:S:hV")) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 'S':
			sock = optarg;
			break;
		case 'h':
			usage(0);
		case 'V':
			printf("rolloverctl %s\n", ROLLOVER_VERSION);
			return 0;
		default:
			usage(EXIT_USAGE);
		}
	}
	if (optind >= argc || (conf != NULL && sock != NULL))
		usage(EXIT_USAGE);
	ctl_parse_command(&ctl, argc - optind, argv + optind);
	ctl.path = ctl_socket_path(conf, sock);
	if (ctl.timeout_ms >= 0)
		ctl.deadline = now_ms() + (uint64_t)ctl.timeout_ms;

	final = ctl_exchange(&ctl);
	if (strcmp(final, "ok") != 0) {
		for (size_t i = 0; i < ctl.ndata; i++)
			printf("%s\n", ctl.data[i]);
		ctl_refused(&ctl, final);
	}
	if (ctl.cmd == CMD_STATUS && !ctl.json) {
		if (ctl.ndata == 0)
			ctl_fail(1, "%s: the daemon sent no status", ctl.path);
		status_print(ctl.data[0]);
	}
	if (fflush(stdout) == EOF || ferror(stdout))
		ctl_fail(1, "standard output: %s", strerror(errno));
	ctl_free(&ctl);
	return 0;
}
