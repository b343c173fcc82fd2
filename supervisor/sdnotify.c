/*
 * sdnotify.c - telling the service manager how we are, sd_notify-style.
 *
 * The protocol is systemd's documented one, a datagram of VAR=value
 * lines to $NOTIFY_SOCKET, so no library is linked.  What we say:
 * READY=1 once every group's first generation is ready; RELOADING=1 with
 * MONOTONIC_USEC= as soon as a rollover begins while none was in flight,
 * and READY=1 when the last in flight has ended; STOPPING=1; a one-line STATUS=;
 * and WATCHDOG=1 every half WATCHDOG_USEC if the manager asks for it,
 * the one periodic wake-up, and only then.
 *
 * The state is looked at once per loop iteration (a zero timer), so that
 * an abort immediately followed by the next rollover is not reported as
 * READY=1 then RELOADING=1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rollover.h"

static struct sockaddr_un sd_addr;
static socklen_t sd_len;
static int sd_fd = -1;
static int sd_ready;	 /* READY=1 sent */
static int sd_reloading; /* RELOADING=1 sent, READY=1 not yet */
static struct timer sd_check_timer;
static struct timer sd_watchdog;
static uint64_t sd_watchdog_ms;

static void sd_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sd_send(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (sd_fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (sendto(sd_fd, msg, (size_t)n, MSG_NOSIGNAL,
		   (struct sockaddr *)&sd_addr, sd_len) == -1)
		log_debug("NOTIFY_SOCKET: %s", strerror(errno));
}

/* "web: generation 3, 2/2 ready; api: ..." */
static void sd_status(char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (const struct wgroup *g = groups; g != NULL && n < len;
	     g = g->next) {
		unsigned ready = 0;

		if (g->removed || g->current == NULL)
			continue;
		for (const struct worker *w = worker_first(); w != NULL;
		     w = w->next)
			ready += w->gen == g->current && w->state == W_READY;
		n += (size_t)snprintf(buf + n, len - n,
				      "%s%s: generation %u, %u/%u ready",
				      n > 0 ? "; " : "", g->name,
				      g->current->number, ready, g->workers);
	}
}

static int in_flight(void)
{
	for (const struct wgroup *g = groups; g != NULL; g = g->next)
		if (!g->removed && (g->next_gen != NULL ||
				    (g->last.result != NULL &&
				     strcmp(g->last.result, "running") == 0)))
			return 1;
	return 0;
}

static void sd_check(void *arg)
{
	char status[512];

	(void)arg;
	if (stopping)
		return;
	sd_status(status, sizeof(status));
	if (!sd_ready) {
		if (!in_flight()) {
			sd_ready = 1;
			sd_send("READY=1\nSTATUS=%s", status);
		}
		return;
	}
	if (!in_flight() && sd_reloading) {
		sd_reloading = 0;
		sd_send("READY=1\nSTATUS=%s", status);
	} else {
		sd_send("STATUS=%s", status);
	}
}

static void sd_watchdog_fire(void *arg)
{
	(void)arg;
	sd_send("WATCHDOG=1");
	timer_set(&sd_watchdog, sd_watchdog_ms);
}

/* A path, or "@name" in the abstract namespace; others are ignored. */
static void sd_open(const char *path)
{
	if ((path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(sd_addr.sun_path))
		return;
	sd_addr.sun_family = AF_UNIX;
	strcpy(sd_addr.sun_path, path);
	if (path[0] == '@')
		sd_addr.sun_path[0] = '\0';
	sd_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
			     strlen(path) + (path[0] == '/'));
	sd_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

/* Reads and unsets NOTIFY_SOCKET and WATCHDOG_*: they are ours only. */
void sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wusec = getenv("WATCHDOG_USEC");
	const char *wpid = getenv("WATCHDOG_PID");

	timer_init(&sd_check_timer, sd_check, NULL);
	timer_init(&sd_watchdog, sd_watchdog_fire, NULL);
	if (path != NULL)
		sd_open(path);
	if (sd_fd != -1 && wusec != NULL &&
	    (wpid == NULL || atol(wpid) == (long)getpid()) &&
	    strtoull(wusec, NULL, 10) >= 2000) {
		sd_watchdog_ms = strtoull(wusec, NULL, 10) / 2000;
		timer_set(&sd_watchdog, sd_watchdog_ms);
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/*
 * Said at once when a rollover begins, not at the next check: one that
 * is aborted within the same loop iteration is still a reload that
 * happened, and gets its RELOADING=1 and READY=1.
 */
void sdnotify_begun(void)
{
	struct timespec ts;

	if (!sd_ready || sd_reloading || stopping)
		return;
	sd_reloading = 1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=rolling over",
		(unsigned long long)ts.tv_sec * 1000000 +
		    (unsigned long long)ts.tv_nsec / 1000);
	sdnotify_changed();
}

void sdnotify_changed(void)
{
	if (!timer_armed(&sd_check_timer))
		timer_set(&sd_check_timer, 0);
}

void sdnotify_stopping(void)
{
	timer_cancel(&sd_check_timer);
	sd_send("STOPPING=1\nSTATUS=stopping");
}

void sdnotify_save(struct state_out *o)
{
	char path[sizeof(sd_addr.sun_path) + 1] = "";

	if (sd_fd != -1) {
		size_t n = sd_len - offsetof(struct sockaddr_un, sun_path);

		memcpy(path, sd_addr.sun_path, n);
		path[n] = '\0';
		if (path[0] == '\0')
			path[0] = '@';
	}
	state_put_str(o, sd_fd != -1 ? path : NULL);
	state_put_u64(o, (uint64_t)sd_ready);
	state_put_u64(o, sd_watchdog_ms);
}

/* The manager still waits for our notifications, under the same PID. */
void sdnotify_load(struct state_in *in)
{
	char *path = state_get_str(in);
	int ready = (int)state_get_max(in, 1);
	uint64_t watchdog_ms = state_get_u64(in);

	if (in->adopt && in->err == NULL && path != NULL)
		sd_open(path);
	if (in->adopt && in->err == NULL) {
		sd_ready = ready;
		sd_watchdog_ms = watchdog_ms;
		if (sd_fd != -1 && sd_watchdog_ms > 0)
			timer_set(&sd_watchdog, sd_watchdog_ms);
	}
	free(path);
}
