/*
 * group.c - groups, their generations, and the rollover between them.
 *
 * A group serves through one generation at a time: one configuration
 * and one pinned binary, run in `workers` slots.  A rollover starts a new
 * generation beside the serving one and waits until every one of its
 * slots holds a ready worker; only then does the old generation get the
 * stop signal, so ready capacity never drops below `workers` (promise 2).
 * If any new worker fails before that, the new generation is aborted and
 * the old one has not been touched (promise 3).  A trigger during a
 * rollover aborts the one in flight and starts from the newest state
 * (promise 4).  The states are drawn in rollover.h.
 *
 * In a serving generation a worker that dies unasked is restarted in its
 * slot after 100 ms, doubling up to 30 s; the delay starts over once a
 * worker has stayed ready for BACKOFF_RESET_MS (promise 6).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rollover.h"

#define BACKOFF_MIN_MS	 100
#define BACKOFF_MAX_MS	 30000
#define BACKOFF_RESET_MS 10000
#define BUSY_RETRY_MS	 50 /* exec refused with ETXTBSY: a writer is closing */
#define BUSY_TRIES	 40

struct wgroup *groups;

static void slot_timer(void *arg);
static void gen_abort(struct gen *gen, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *trigger_name(enum trigger t)
{
	static const char *const names[] = {"start", "signal", "watch",
					    "control"};

	return names[t];
}

/* ---- configs are shared by the generations started from them ----------- */

void config_ref(struct config *c)
{
	c->refs++;
}

void config_unref(struct config *c)
{
	if (c != NULL && --c->refs == 0)
		config_free(c);
}

/* ---- listeners ----------------------------------------------------------- */

static int per_worker(const struct group_conf *gc, size_t i)
{
	return gc->listen_mode == LISTEN_PER_WORKER &&
	       gc->listen[i].ss.ss_family != AF_UNIX;
}

/*
 * The sockets of a group's config for `slots` workers, in config order.
 * In per-worker mode every TCP address gets one socket per slot; unix
 * sockets have no SO_REUSEPORT, so they stay shared.
 */
static struct listener **listeners_take(const struct group_conf *gc,
					unsigned slots, size_t *n)
{
	struct listener **v =
	    xcalloc(gc->nlisten * (slots + 1), sizeof(struct listener *));

	*n = 0;
	for (size_t i = 0; i < gc->nlisten; i++) {
		for (unsigned s = 0; s < (per_worker(gc, i) ? slots : 1); s++) {
			struct listener *l = listener_get(
			    &gc->listen[i], per_worker(gc, i) ? (int)s : -1,
			    gc->backlog);

			if (l == NULL) {
				while (*n > 0)
					listener_put(v[--*n]);
				free(v);
				return NULL;
			}
			v[(*n)++] = l;
		}
	}
	return v;
}

static void listeners_drop(struct listener **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		listener_put(v[i]);
	free(v);
}

/* Scaling down: let go of the per-worker sockets of a retired slot. */
static void gen_slot_listeners_drop(struct gen *gen, unsigned slot)
{
	size_t j = 0;

	for (size_t i = 0; i < gen->nlisteners; i++) {
		if (gen->listeners[i]->slot == (int)slot)
			listener_put(gen->listeners[i]);
		else
			gen->listeners[j++] = gen->listeners[i];
	}
	gen->nlisteners = j;
}

/* Scaling up: the per-worker sockets of a new slot; -1 if one fails. */
static int gen_slot_listeners_take(struct gen *gen, unsigned slot)
{
	const struct group_conf *gc = gen->conf;

	for (size_t i = 0; i < gc->nlisten; i++) {
		struct listener *l;

		if (!per_worker(gc, i))
			continue;
		l = listener_get(&gc->listen[i], (int)slot, gc->backlog);
		if (l == NULL)
			return -1;
		gen->listeners =
		    xrealloc(gen->listeners,
			     (gen->nlisteners + 1) * sizeof(struct listener *));
		gen->listeners[gen->nlisteners++] = l;
	}
	return 0;
}

/*
 * A worker's sockets in the order its `listen` entries are written, even
 * after a scale-up appended a slot's sockets at the end of the list.
 */
size_t gen_fds(const struct gen *gen, unsigned slot, int *fds, size_t max)
{
	const struct group_conf *gc = gen->conf;
	size_t n = 0;

	for (size_t i = 0; i < gc->nlisten && n < max; i++) {
		for (size_t j = 0; j < gen->nlisteners; j++) {
			const struct listener *l = gen->listeners[j];

			if (addr_equal(&l->addr, &gc->listen[i]) &&
			    (l->slot == -1 || l->slot == (int)slot)) {
				fds[n++] = l->fd;
				break;
			}
		}
	}
	return n;
}

/* ---- generations --------------------------------------------------------- */

struct slot *gen_slot_new(struct gen *gen)
{
	struct slot *s = xcalloc(1, sizeof(*s));

	s->gen = gen;
	s->index = gen->nslots;
	timer_init(&s->restart, slot_timer, s);
	gen->slots =
	    xrealloc(gen->slots, (gen->nslots + 1) * sizeof(struct slot *));
	gen->slots[gen->nslots++] = s;
	return s;
}

static struct gen *gen_new(struct wgroup *g, struct config *c,
			   const struct group_conf *gc, enum trigger t)
{
	struct gen *gen = xcalloc(1, sizeof(*gen));

	gen->group = g;
	gen->number = ++g->last_gen;
	gen->trigger = t;
	gen->trigger_ms = now_ms();
	gen->config = c;
	config_ref(c);
	gen->conf = gc;
	binary_init(&gen->bin);
	gen->want = g->workers;
	for (unsigned i = 0; i < gen->want; i++)
		(void)gen_slot_new(gen);
	gen->next = g->gens;
	g->gens = gen;
	return gen;
}

static void group_free(struct wgroup *g);

/* Free a generation already unlinked from its group. */
static void gen_destroy(struct gen *gen)
{
	for (unsigned i = 0; i < gen->nslots; i++) {
		timer_cancel(&gen->slots[i]->restart);
		free(gen->slots[i]);
	}
	free(gen->slots);
	listeners_drop(gen->listeners, gen->nlisteners);
	binary_close(&gen->bin);
	config_unref(gen->config);
	free(gen);
}

/* A generation goes once nothing of it runs and nothing will. */
static void gen_release(struct gen *gen)
{
	struct wgroup *g = gen->group;
	struct gen **pp;

	if (gen->nlive > 0 || gen == g->current || gen == g->next_gen)
		return;
	for (pp = &g->gens; *pp != gen; pp = &(*pp)->next)
		;
	*pp = gen->next;
	gen_destroy(gen);
	if (g->removed && g->gens == NULL)
		group_free(g);
}

/* Stop every worker of gen and cancel its pending restarts. */
static void gen_stop(struct gen *gen, enum gen_state state)
{
	gen->state = state;
	for (unsigned i = 0; i < gen->nslots; i++) {
		struct slot *s = gen->slots[i];

		timer_cancel(&s->restart);
		if (s->worker != NULL)
			worker_stop(s->worker);
	}
}

static unsigned gen_ready_count(const struct gen *gen)
{
	unsigned n = 0;

	for (unsigned i = 0; i < gen->want; i++)
		if (gen->slots[i]->worker != NULL &&
		    gen->slots[i]->worker->state == W_READY)
			n++;
	return n;
}

static void record(struct wgroup *g, const struct gen *gen, const char *result)
{
	g->last.generation = gen->number;
	g->last.trigger = gen->trigger;
	g->last.result = result;
	g->last.started_ms = gen->trigger_ms;
	g->last.duration_ms = now_ms() - gen->trigger_ms;
	if (strcmp(result, "aborted") != 0)
		g->last.reason[0] = '\0';
}

static void gen_abort(struct gen *gen, const char *fmt, ...)
{
	struct wgroup *g = gen->group;
	va_list ap;

	record(g, gen, "aborted");
	va_start(ap, fmt);
	vsnprintf(g->last.reason, sizeof(g->last.reason), fmt, ap);
	va_end(ap);
	/* Quick mode says it in a line of its own (quick.c). */
	(quick_mode ? log_info : log_errorx)(
	    "%s: generation %u aborted: %s (trigger: %s, after %llu ms)",
	    g->name, gen->number, g->last.reason, trigger_name(gen->trigger),
	    (unsigned long long)g->last.duration_ms);
	if (g->next_gen == gen)
		g->next_gen = NULL;
	gen_stop(gen, G_ABORTED);
	supervisor_rollover_event(g);
	gen_release(gen);
}

/*
 * Every slot of the new generation is ready: it takes over, and the old
 * one is told to stop.  This is the moment the rollover's time is taken.
 */
static void gen_promote(struct gen *gen)
{
	struct wgroup *g = gen->group;
	struct gen *old = g->current;
	unsigned nold = 0;

	gen->state = G_SERVING;
	g->next_gen = NULL;
	g->current = gen;
	if (old != NULL) {
		for (struct worker *w = worker_first(); w != NULL; w = w->next)
			nold += w->gen == old && w->state != W_STOPPING;
		gen_stop(old, G_DRAINING);
	}
	record(g, gen, "ok");
	log_info("%s: generation %u serving after %llu ms (trigger: %s); "
		 "stopping %u worker%s of generation %u",
		 g->name, gen->number, (unsigned long long)g->last.duration_ms,
		 trigger_name(gen->trigger), nold, nold == 1 ? "" : "s",
		 old != NULL ? old->number : 0);
	supervisor_rollover_event(g);
	if (old != NULL)
		gen_release(old);
}

/* ---- slots --------------------------------------------------------------- */

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

/*
 * Start a worker in s.  A text-busy exec is retried shortly: a writer
 * is about to close the file.  Any other failure aborts a starting
 * generation, and is retried with backoff in a serving one.  Returns -1
 * if the generation was aborted, and may then have been freed.
 */
static int slot_start(struct slot *s)
{
	struct gen *gen = s->gen;
	uint64_t delay;
	int err;

	s->launched = 1;
	s->worker = worker_start(gen, s->index, &err);
	if (s->worker != NULL) {
		gen->nlive++;
		s->busy_tries = 0;
		return 0;
	}
	if (err == ETXTBSY && s->busy_tries < BUSY_TRIES) {
		s->busy_tries++;
		timer_set(&s->restart, BUSY_RETRY_MS);
		return 0;
	}
	s->busy_tries = 0;
	if (gen->state == G_STARTING) {
		gen_abort(gen, "worker %u could not be started: %s", s->index,
			  strerror(err));
		return -1;
	}
	delay = slot_backoff(s, NULL);
	log_info("%s: slot %u: retrying in %llu ms", gen->group->name, s->index,
		 (unsigned long long)delay);
	timer_set(&s->restart, delay);
	return 0;
}

static void slot_timer(void *arg)
{
	struct slot *s = arg;

	if (stopping)
		return;
	if (s->launched && s->busy_tries == 0)
		s->restarts++; /* not a retry of a busy exec */
	(void)slot_start(s);
}

/*
 * Start the slots that are not started yet, keeping at most rollout_batch
 * of a new generation's starting at once.
 */
static void gen_launch(struct gen *gen)
{
	unsigned limit = gen->conf->rollout_batch;
	unsigned starting = 0;

	if (gen->state != G_STARTING || limit == 0)
		limit = gen->want;
	for (unsigned i = 0; i < gen->want; i++) {
		struct slot *s = gen->slots[i];

		if ((s->worker != NULL && s->worker->state == W_STARTING) ||
		    timer_armed(&s->restart))
			starting++;
	}
	for (unsigned i = 0; i < gen->want && starting < limit; i++) {
		struct slot *s = gen->slots[i];

		if (s->launched)
			continue;
		if (slot_start(s) == -1)
			return; /* gen may be gone */
		starting++;
	}
}

/* ---- what workers tell their generation -------------------------------- */

void gen_worker_ready(struct worker *w)
{
	struct gen *gen = w->gen;
	struct wgroup *g = gen->group;

	if (gen->state == G_STARTING) {
		if (gen_ready_count(gen) == gen->want)
			gen_promote(gen);
		else
			gen_launch(gen);
	} else if (gen->state == G_SERVING &&
		   g->last.generation == gen->number &&
		   strcmp(g->last.result, "running") == 0 &&
		   gen_ready_count(gen) == gen->want) {
		record(g, gen, "ok");
		log_info("%s: generation %u ready after %llu ms", g->name,
			 gen->number, (unsigned long long)g->last.duration_ms);
		supervisor_rollover_event(g);
	}
}

void gen_worker_not_ready(struct worker *w)
{
	struct gen *gen = w->gen;

	if (gen->state == G_STARTING)
		gen_abort(gen, "worker %u not ready within %llu ms", w->slot,
			  (unsigned long long)gen->conf->ready_timeout_ms);
}

void gen_worker_exited(struct worker *w, int status)
{
	struct gen *gen = w->gen;
	struct slot *s = gen->slots[w->slot];
	uint64_t ran = now_ms() - w->started_ms;
	char how[96];
	uint64_t delay;

	wait_status_str(status, how, sizeof(how));
	gen->nlive--;
	/*
	 * An expected exit: the supervisor or the generation is stopping, or
	 * the slot was retired by a scale-down or holds another worker now.
	 */
	if (stopping || gen->state == G_DRAINING || gen->state == G_ABORTED ||
	    s->worker != w || w->slot >= gen->want) {
		if (s->worker == w)
			s->worker = NULL;
		log_info("%s: worker %d (slot %u, generation %u) %s after "
			 "%llu ms",
			 gen->group->name, (int)w->pid, w->slot, gen->number,
			 how, (unsigned long long)ran);
		gen_release(gen);
		supervisor_check_stopped();
		return;
	}
	s->worker = NULL;
	if (gen->state == G_STARTING) {
		gen_abort(gen, "worker %u %s %s ready", w->slot, how,
			  w->ready_ms != 0 ? "after it was" : "before");
		return;
	}
	delay = slot_backoff(s, w);
	log_warnx("%s: worker %d (slot %u, generation %u) %s after %llu ms; "
		  "restarting in %llu ms",
		  gen->group->name, (int)w->pid, w->slot, gen->number, how,
		  (unsigned long long)ran, (unsigned long long)delay);
	timer_set(&s->restart, delay);
}

/* ---- rollovers ----------------------------------------------------------- */

/* A group's first generation: serving at once, see rollover.h. */
static void group_first_gen(struct wgroup *g, struct config *c, enum trigger t)
{
	struct gen *gen = gen_new(g, c, g->conf, t);
	const char *why;

	gen->state = G_SERVING;
	g->current = gen;
	record(g, gen, "running");
	if (binary_open(&gen->bin, g->conf->command, &why) == -1)
		log_warnx("%s: %s: %s; starting it by path", g->name,
			  g->conf->command, why);
	else
		g->last_fp = gen->bin;
	g->last_fp.fd = -1;
	gen->listeners = listeners_take(g->conf, gen->want, &gen->nlisteners);
	log_info("%s: starting generation %u with %u worker%s", g->name,
		 gen->number, gen->want, gen->want == 1 ? "" : "s");
	supervisor_rollover_event(g);
	gen_launch(gen);
}

void group_rollover(struct wgroup *g, enum trigger t, const struct binary *bin)
{
	const char *why = NULL;
	struct binary b;
	struct gen *gen;

	if (stopping || g->removed)
		return;
	if (bin != NULL)
		b = *bin;
	else if (binary_open(&b, g->conf->command, &why) == -1)
		b.fd = -1;
	/*
	 * A binary that cannot run does not supersede a rollover in flight:
	 * this attempt is aborted at once and the other one goes on.
	 */
	if (b.fd != -1 && g->next_gen != NULL)
		gen_abort(g->next_gen, "superseded by generation %u",
			  g->last_gen + 1);
	gen = gen_new(g, g->config, g->conf, t);
	gen->state = G_STARTING;
	record(g, gen, "running");
	log_info("%s: rollover to generation %u begun (trigger: %s)", g->name,
		 gen->number, trigger_name(t));
	if (b.fd == -1) {
		gen_abort(gen, "%s: %s", g->conf->command, why);
		return;
	}
	g->next_gen = gen;
	supervisor_rollover_event(g);
	gen->bin = b;
	g->last_fp = b;
	g->last_fp.fd = -1;
	gen->listeners = listeners_take(g->conf, gen->want, &gen->nlisteners);
	if (gen->listeners == NULL && g->conf->nlisten > 0) {
		gen_abort(gen, "cannot open its listeners");
		return;
	}
	gen_launch(gen);
}

/* ---- scaling ------------------------------------------------------------- */

/*
 * Change the number of workers of g's serving generation.  New slots
 * start at once; retired ones are stopped gracefully, and in per-worker
 * mode their sockets closed.  The count holds for later rollovers, until
 * a reload sets it from the config again.
 */
int group_scale(struct wgroup *g, unsigned n, char *err, size_t errlen)
{
	struct gen *gen = g->current;
	unsigned old = gen->want;
	int failed = 0;

	if (stopping) {
		snprintf(err, errlen, "%s: rollover is stopping", g->name);
		return -1;
	}
	if (g->next_gen != NULL) {
		snprintf(err, errlen, "%s: a rollover is in progress", g->name);
		return -1;
	}
	if (n < 1 || n > GROUP_MAX_WORKERS) {
		snprintf(err, errlen, "%s: %u workers: must be 1 to %d",
			 g->name, n, GROUP_MAX_WORKERS);
		return -1;
	}
	for (unsigned i = old; i < n; i++) {
		if (i >= gen->nslots)
			(void)gen_slot_new(gen);
		if (gen_slot_listeners_take(gen, i) == -1) {
			snprintf(err, errlen,
				 "%s: cannot open the sockets of "
				 "slot %u",
				 g->name, i);
			failed = 1;
			n = i;
			break;
		}
		gen->slots[i]->launched = 0;
		gen->slots[i]->backoff_ms = 0;
	}
	for (unsigned i = n; i < old; i++) {
		struct slot *s = gen->slots[i];

		timer_cancel(&s->restart);
		if (s->worker != NULL)
			worker_stop(s->worker);
		gen_slot_listeners_drop(gen, i);
	}
	gen->want = n;
	g->workers = n;
	log_info("%s: scaled from %u to %u worker%s", g->name, old, n,
		 n == 1 ? "" : "s");
	gen_launch(gen);
	return failed ? -1 : 0;
}

/* ---- groups and configs ------------------------------------------------- */

struct wgroup *group_find(const char *name)
{
	for (struct wgroup *g = groups; g != NULL; g = g->next)
		if (!g->removed && strcmp(g->name, name) == 0)
			return g;
	return NULL;
}

static void group_free(struct wgroup *g)
{
	struct wgroup **pp;

	for (pp = &groups; *pp != NULL && *pp != g; pp = &(*pp)->next)
		;
	if (*pp == g)
		*pp = g->next;
	watch_forget(g);
	control_forget(g);
	if (!stopping)
		log_info("%s: removed", g->name);
	free(g->name);
	free(g);
}

/*
 * A group gone from the config drains.  It always has a current
 * generation, which stays listed until released, so g survives the abort
 * and goes with the last release.
 */
static void group_remove(struct wgroup *g)
{
	struct gen *cur = g->current;

	g->removed = 1;
	g->current = NULL;
	gen_stop(cur, G_DRAINING);
	if (g->next_gen != NULL)
		gen_abort(g->next_gen, "the group was removed");
	gen_release(cur); /* may free g */
}

/* A group new in c: appended, so that groups keep the config's order. */
static void group_add(struct config *c, const struct group_conf *gc,
		      enum trigger t)
{
	struct wgroup *g = xcalloc(1, sizeof(*g));
	struct wgroup **tail;

	g->name = xstrdup(gc->name);
	g->config = c;
	g->conf = gc;
	g->workers = gc->workers;
	for (tail = &groups; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = g;
	group_first_gen(g, c, t);
}

int group_apply_config(struct config *c, enum trigger t)
{
	struct listener ***held = xcalloc(c->ngroups, sizeof(*held));
	size_t *nheld = xcalloc(c->ngroups, sizeof(*nheld));
	struct wgroup *g, *next;
	int ok = 1;

	/* Open every new listener first, so that a failure changes nothing. */
	for (size_t i = 0; i < c->ngroups && ok; i++) {
		held[i] = listeners_take(&c->groups[i], c->groups[i].workers,
					 &nheld[i]);
		ok = held[i] != NULL || c->groups[i].nlisten == 0;
	}
	if (ok) {
		config_ref(c);
		for (g = groups; g != NULL; g = next) {
			next = g->next;
			if (!g->removed && config_group(c, g->name) == NULL)
				group_remove(g);
		}
		for (size_t i = 0; i < c->ngroups; i++) {
			const struct group_conf *gc = &c->groups[i];

			g = group_find(gc->name);
			if (g != NULL) {
				g->config = c;
				g->conf = gc;
				g->workers = gc->workers;
				group_rollover(g, t, NULL);
				continue;
			}
			group_add(c, gc, t);
		}
		config_unref(c); /* the generations hold it now */
	}
	for (size_t i = 0; i < c->ngroups; i++)
		if (held[i] != NULL)
			listeners_drop(held[i], nheld[i]);
	free(held);
	free(nheld);
	return ok ? 0 : -1;
}

void group_stop_all(int immediately)
{
	for (struct wgroup *g = groups; g != NULL; g = g->next)
		for (struct gen *gen = g->gens; gen != NULL; gen = gen->next)
			for (unsigned i = 0; i < gen->nslots; i++)
				timer_cancel(&gen->slots[i]->restart);
	for (struct worker *w = worker_first(); w != NULL; w = w->next) {
		if (immediately)
			worker_kill(w);
		else
			worker_stop(w);
	}
	supervisor_check_stopped();
}

/* At exit, when no worker is left. */
void group_free_all(void)
{
	while (groups != NULL) {
		struct wgroup *g = groups;

		while (g->gens != NULL) {
			struct gen *gen = g->gens;

			g->gens = gen->next;
			gen_destroy(gen);
		}
		group_free(g);
	}
}
