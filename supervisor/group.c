/*
 * group.c - groups of workers, their generations and slots.
 *
 * A group owns its listeners and its current generation.  A generation is
 * one configuration (one command, one set of args) run in `workers`
 * slots; each slot holds at most one live worker and remembers its
 * restart backoff.  A worker that dies unasked is restarted in its slot
 * after 100 ms, doubling up to 30 s; the delay starts over once a worker
 * has stayed ready for BACKOFF_RESET_MS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rollover.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESET_MS 10000

struct wgroup *groups;

static void slot_restart(void *arg);

static struct gen *gen_new(struct wgroup *g)
{
	const struct group_conf *gc = g->conf;
	struct gen *gen = xcalloc(1, sizeof(*gen));

	gen->group = g;
	gen->number = ++g->last_gen;
	gen->conf = gc;
	gen->nslots = gc->workers;
	gen->slots = xcalloc(gen->nslots, sizeof(*gen->slots));
	for (unsigned i = 0; i < gen->nslots; i++) {
		struct slot *s = &gen->slots[i];

		s->gen = gen;
		s->index = i;
		timer_init(&s->restart, slot_restart, s);
	}
	return gen;
}

static void gen_free(struct gen *gen)
{
	for (unsigned i = 0; i < gen->nslots; i++)
		timer_cancel(&gen->slots[i].restart);
	free(gen->slots);
	free(gen);
}

/*
 * In per-worker mode every TCP address gets one socket per slot; unix
 * sockets have no SO_REUSEPORT, so they stay shared.
 */
static int group_listen(struct wgroup *g)
{
	const struct group_conf *gc = g->conf;
	size_t n = gc->nlisten * gc->workers;

	g->listeners = xcalloc(n, sizeof(*g->listeners));
	for (size_t i = 0; i < gc->nlisten; i++) {
		int per_worker = gc->listen_mode == LISTEN_PER_WORKER &&
				 gc->listen[i].ss.ss_family != AF_UNIX;

		for (unsigned s = 0; s < (per_worker ? gc->workers : 1); s++) {
			struct listener *l = listener_get(
			    &gc->listen[i], per_worker ? (int)s : -1,
			    gc->backlog);

			if (l == NULL)
				return -1;
			g->listeners[g->nlisteners++] = l;
		}
	}
	return 0;
}

int group_create_all(const struct config *c)
{
	struct wgroup **tail = &groups;

	for (size_t i = 0; i < c->ngroups; i++) {
		struct wgroup *g = xcalloc(1, sizeof(*g));

		g->conf = &c->groups[i];
		*tail = g;
		tail = &g->next;
		if (group_listen(g) == -1)
			return -1;
	}
	return 0;
}

size_t group_fds(const struct wgroup *g, unsigned slot, int *fds, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < g->nlisteners && n < max; i++) {
		const struct listener *l = g->listeners[i];

		if (l->slot == -1 || l->slot == (int)slot)
			fds[n++] = l->fd;
	}
	return n;
}

/* ---- slots ------------------------------------------------------------- */

static uint64_t slot_backoff(struct slot *s, const struct worker *w)
{
	uint64_t delay;

	if (w != NULL && w->ready_ms != 0 &&
	    now_ms() - w->ready_ms >= BACKOFF_RESET_MS)
		s->backoff_ms = 0;
	delay = s->backoff_ms ? s->backoff_ms : BACKOFF_MIN_MS;
	s->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	return delay;
}

static void slot_start(struct slot *s)
{
	s->worker = worker_start(s->gen, s->index);
	if (s->worker == NULL) {
		uint64_t delay = slot_backoff(s, NULL);

		log_info("%s: slot %u: retrying in %llu ms", s->gen->conf->name,
			 s->index, (unsigned long long)delay);
		timer_set(&s->restart, delay);
	}
}

static void slot_restart(void *arg)
{
	struct slot *s = arg;

	if (stopping)
		return;
	s->restarts++;
	slot_start(s);
}

/* ---- what workers tell their generation -------------------------------- */

void gen_worker_ready(struct worker *w)
{
	(void)w;
}

void gen_worker_exited(struct worker *w, int status)
{
	struct gen *gen = w->gen;
	struct slot *s = &gen->slots[w->slot];
	uint64_t ran = now_ms() - w->started_ms;
	char how[96];
	uint64_t delay;

	wait_status_str(status, how, sizeof(how));
	if (s->worker == w)
		s->worker = NULL;
	if (stopping) {
		log_info("%s: worker %d (slot %u, generation %u) %s after %llu ms",
			 gen->conf->name, (int)w->pid, w->slot, gen->number, how,
			 (unsigned long long)ran);
		supervisor_check_stopped();
		return;
	}
	delay = slot_backoff(s, w);
	log_warnx("%s: worker %d (slot %u, generation %u) %s after %llu ms; "
		  "restarting in %llu ms",
		  gen->conf->name, (int)w->pid, w->slot, gen->number, how,
		  (unsigned long long)ran, (unsigned long long)delay);
	timer_set(&s->restart, delay);
}

/* ---- the whole supervisor ------------------------------------------------ */

void group_start_all(void)
{
	for (struct wgroup *g = groups; g != NULL; g = g->next) {
		g->current = gen_new(g);
		log_info("%s: starting generation %u with %u worker%s",
			 g->conf->name, g->current->number, g->current->nslots,
			 g->current->nslots == 1 ? "" : "s");
		for (unsigned i = 0; i < g->current->nslots; i++)
			slot_start(&g->current->slots[i]);
	}
}

void group_stop_all(int immediately)
{
	for (struct wgroup *g = groups; g != NULL; g = g->next)
		for (unsigned i = 0; g->current && i < g->current->nslots; i++)
			timer_cancel(&g->current->slots[i].restart);
	for (struct worker *w = worker_first(); w != NULL; w = w->next) {
		if (immediately)
			worker_kill(w);
		else
			worker_stop(w);
	}
	supervisor_check_stopped();
}

void group_free_all(void)
{
	while (groups != NULL) {
		struct wgroup *g = groups;

		groups = g->next;
		if (g->current != NULL)
			gen_free(g->current);
		free(g->listeners);
		free(g);
	}
}
