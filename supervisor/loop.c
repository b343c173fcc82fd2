/*
 * loop.c - the one event loop: epoll over file descriptors, plus timers.
 *
 * Handlers are indexed by fd, as in redis's ae: epoll hands back the fd,
 * and the handler is looked up at dispatch time.  A handler may therefore
 * remove any fd (its own or another one with an event pending in the same
 * batch) and the stale event is simply skipped.
 *
 * Timers are kept in a list sorted by deadline, and one timerfd is armed
 * for the earliest.  Nothing wakes the loop unless an fd is ready or a
 * timer is due: an idle supervisor sleeps in epoll_wait indefinitely.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "rollover.h"

struct handler {
	loop_fn *fn;
	void *arg;
};

static int epfd = -1;
static int tfd = -1;
static struct handler *handlers;
static size_t nhandlers;
static struct timer *timers; /* sorted by deadline */
static int running;

static void timers_run(int fd, uint32_t events, void *arg);

void loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd == -1)
		fatal(1, "epoll_create1");
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (tfd == -1)
		fatal(1, "timerfd_create");
	loop_add(tfd, EPOLLIN, timers_run, NULL);
}

void loop_add(int fd, uint32_t events, loop_fn *fn, void *arg)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if ((size_t)fd >= nhandlers) {
		size_t n = (size_t)fd + 16;

		handlers = xrealloc(handlers, n * sizeof(*handlers));
		memset(handlers + nhandlers, 0,
		       (n - nhandlers) * sizeof(*handlers));
		nhandlers = n;
	}
	handlers[fd].fn = fn;
	handlers[fd].arg = arg;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		fatal(1, "epoll_ctl add fd %d", fd);
}

void loop_mod(int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
		log_warn("epoll_ctl mod fd %d", fd);
}

void loop_del(int fd)
{
	if (fd < 0 || (size_t)fd >= nhandlers || handlers[fd].fn == NULL)
		return;
	handlers[fd].fn = NULL;
	handlers[fd].arg = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == -1)
		log_warn("epoll_ctl del fd %d", fd);
}

/* Arm the timerfd for the head of the list, or disarm it. */
static void timers_rearm(void)
{
	struct itimerspec its = {0};

	if (timers != NULL) {
		uint64_t when = timers->when ? timers->when : 1;

		its.it_value.tv_sec = (time_t)(when / 1000);
		its.it_value.tv_nsec = (long)(when % 1000) * 1000000;
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) == -1)
		log_warn("timerfd_settime");
}

static void timer_unlink(struct timer *t)
{
	struct timer **pp;

	for (pp = &timers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->next = NULL;
	t->armed = 0;
}

void timer_init(struct timer *t, void (*fn)(void *), void *arg)
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
	t->arg = arg;
}

void timer_set(struct timer *t, uint64_t ms)
{
	struct timer **pp;

	if (t->armed)
		timer_unlink(t);
	t->when = now_ms() + ms;
	for (pp = &timers; *pp != NULL && (*pp)->when <= t->when;
	     pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = 1;
	timers_rearm();
}

void timer_cancel(struct timer *t)
{
	if (!t->armed)
		return;
	timer_unlink(t);
	timers_rearm();
}

int timer_armed(const struct timer *t)
{
	return t->armed;
}

/* Fire every due timer; a callback may set or cancel any timer. */
static void timers_run(int fd, uint32_t events, void *arg)
{
	uint64_t expirations;
	uint64_t now = now_ms();

	(void)events;
	(void)arg;
	(void)!read(fd, &expirations, sizeof(expirations));
	while (timers != NULL && timers->when <= now) {
		struct timer *t = timers;

		timer_unlink(t);
		t->fn(t->arg);
	}
	timers_rearm();
}

static int exit_status;

void loop_exit(int status)
{
	exit_status = status;
	running = 0;
}

int loop_run(void)
{
	struct epoll_event evs[32];

	running = 1;
	while (running) {
		int n = epoll_wait(epfd, evs, (int)ARRAY_LEN(evs), -1);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal(1, "epoll_wait");
		}
		for (int i = 0; i < n && running; i++) {
			int fd = evs[i].data.fd;

			if ((size_t)fd < nhandlers && handlers[fd].fn != NULL)
				handlers[fd].fn(fd, evs[i].events,
						handlers[fd].arg);
		}
	}
	return exit_status;
}
