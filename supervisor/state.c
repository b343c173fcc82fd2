/*
 * state.c - the supervisor's state as bytes, for a self-upgrade.
 *
 * A self-upgrade (upgrade.c) re-execs the supervisor's binary, and the
 * new program must carry on exactly where the old one was: the same
 * configs, groups, generations, slots and workers, and the same sockets
 * and pinned binaries, whose fds survive the exec.  This file writes all
 * of that into a memfd and reads it back.  The format is private to one
 * build and the next: a magic, a version that both sides must know, the
 * fields in a fixed order, and a checksum; every read is bounds-checked,
 * so a state from a different build is rejected, never half-applied.
 *
 * Reading builds everything off to the side first; only a state read
 * whole is installed ("adopt").  The upgrade's check run reads the same
 * bytes without adopting, so a new binary that cannot read them is found
 * out before the old one execs it.
 *
 * Timers hold CLOCK_MONOTONIC deadlines, which an exec does not reset:
 * they are handed over as they are.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollover.h"

#define STATE_MAGIC   0x524f4c4c53544154ULL /* "ROLLSTAT" */
#define STATE_VERSION 1
#define STATE_MAX     (64u << 20)
#define COUNT_MAX     (1u << 20) /* of anything in a list */
#define NONE	      UINT64_MAX /* a NULL string, no index */

/* ---- writing ------------------------------------------------------------- */

void state_put_u64(struct state_out *o, uint64_t v)
{
	if (o->len + 8 > o->cap) {
		o->cap = o->cap ? 2 * o->cap : 4096;
		o->p = xrealloc(o->p, o->cap);
	}
	for (int i = 0; i < 8; i++)
		o->p[o->len++] = (unsigned char)(v >> (8 * i));
}

void state_put_str(struct state_out *o, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	state_put_u64(o, s != NULL ? n : NONE);
	if (o->len + n > o->cap) {
		o->cap = 2 * (o->len + n);
		o->p = xrealloc(o->p, o->cap);
	}
	if (n > 0)
		memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* An fd to hand over: the exec must keep it open. */
void state_put_fd(struct state_out *o, int fd)
{
	state_put_u64(o, (uint64_t)(int64_t)fd);
	if (fd < 0)
		return;
	o->fds = xrealloc(o->fds, (o->nfds + 1) * sizeof(*o->fds));
	o->fds[o->nfds++] = fd;
}

/* ---- reading ------------------------------------------------------------- */

void state_fail(struct state_in *in, const char *what)
{
	if (in->err == NULL)
		in->err = what;
	in->off = in->len; /* every later read fails too */
}

uint64_t state_get_u64(struct state_in *in)
{
	uint64_t v = 0;

	if (in->len - in->off < 8) {
		state_fail(in, "truncated");
		return 0;
	}
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)in->p[in->off++] << (8 * i);
	return v;
}

/* A number that must be at most max. */
uint64_t state_get_max(struct state_in *in, uint64_t max)
{
	uint64_t v = state_get_u64(in);

	if (v > max) {
		state_fail(in, "a value out of range");
		return 0;
	}
	return v;
}

char *state_get_str(struct state_in *in)
{
	uint64_t n = state_get_u64(in);
	char *s;

	if (n == NONE || in->err != NULL)
		return NULL;
	if (n > in->len - in->off) {
		state_fail(in, "truncated");
		return NULL;
	}
	s = xmalloc(n + 1);
	memcpy(s, in->p + in->off, n);
	s[n] = '\0';
	in->off += n;
	return s;
}

/* Into a buffer of its own size; a longer string is an error. */
void state_get_buf(struct state_in *in, char *buf, size_t size)
{
	char *s = state_get_str(in);

	buf[0] = '\0';
	if (s != NULL && strlen(s) < size)
		strcpy(buf, s);
	else if (s != NULL)
		state_fail(in, "a string too long");
	free(s);
}

/*
 * An fd handed over.  When adopting, it must be open (the exec kept it);
 * it gets FD_CLOEXEC back only once the whole state is read, since a
 * state that fails is handed back to the old binary by another exec.
 */
int state_get_fd(struct state_in *in)
{
	int64_t v = (int64_t)state_get_u64(in);

	if (v < -1 || v > INT32_MAX) {
		state_fail(in, "a bad fd");
		return -1;
	}
	if (!in->adopt || v == -1 || in->err != NULL)
		return (int)v;
	if (fcntl((int)v, F_GETFD) == -1) {
		state_fail(in, "an fd that did not survive the exec");
		return -1;
	}
	in->fds = xrealloc(in->fds, (in->nfds + 1) * sizeof(*in->fds));
	in->fds[in->nfds++] = (int)v;
	return (int)v;
}

/* ---- configs ------------------------------------------------------------- */

static void put_strv(struct state_out *o, char *const *v, size_t n)
{
	state_put_u64(o, n);
	for (size_t i = 0; i < n; i++)
		state_put_str(o, v[i]);
}

static char **get_strv(struct state_in *in, size_t *n)
{
	char **v;

	*n = state_get_max(in, COUNT_MAX);
	v = xcalloc(*n + 1, sizeof(*v));
	for (size_t i = 0; i < *n; i++)
		v[i] = state_get_str(in);
	for (size_t i = 0; i < *n && in->err == NULL; i++)
		if (v[i] == NULL)
			state_fail(in, "a NULL in a list of strings");
	return v;
}

static void put_addr(struct state_out *o, const struct addr *a)
{
	state_put_u64(o, a->len);
	for (size_t i = 0; i < sizeof(a->ss); i++)
		state_put_u64(o, ((const unsigned char *)&a->ss)[i]);
	state_put_str(o, a->text);
}

static void get_addr(struct state_in *in, struct addr *a)
{
	a->len = (socklen_t)state_get_max(in, sizeof(a->ss));
	for (size_t i = 0; i < sizeof(a->ss); i++)
		((unsigned char *)&a->ss)[i] =
		    (unsigned char)state_get_max(in, 255);
	state_get_buf(in, a->text, sizeof(a->text));
}

static void put_group_conf(struct state_out *o, const struct group_conf *g)
{
	state_put_str(o, g->at.file);
	state_put_u64(o, (uint64_t)g->at.line);
	state_put_str(o, g->name);
	state_put_str(o, g->command);
	put_strv(o, g->args, g->nargs);
	put_strv(o, g->env, g->nenv);
	state_put_str(o, g->directory);
	state_put_str(o, g->user);
	state_put_str(o, g->group);
	state_put_u64(o, g->uid);
	state_put_u64(o, g->gid);
	state_put_u64(o, g->nsupplementary);
	for (size_t i = 0; i < g->nsupplementary; i++)
		state_put_u64(o, g->supplementary[i]);
	state_put_u64(o, g->workers);
	state_put_u64(o, g->rollout_batch);
	state_put_u64(o, g->nlisten);
	for (size_t i = 0; i < g->nlisten; i++) {
		put_addr(o, &g->listen[i]);
		state_put_str(o, g->listen_at[i].file);
		state_put_u64(o, (uint64_t)g->listen_at[i].line);
	}
	state_put_u64(o, (uint64_t)g->backlog);
	state_put_u64(o, g->listen_mode);
	state_put_u64(o, (uint64_t)g->ready_notify);
	state_put_u64(o, g->ready_ms);
	state_put_u64(o, g->ready_timeout_ms);
	state_put_u64(o, (uint64_t)g->stop_signal);
	state_put_u64(o, g->stop_timeout_ms);
	state_put_u64(o, (uint64_t)g->watch);
	put_strv(o, g->watch_paths, g->nwatch_paths);
	state_put_u64(o, g->settle_ms);
	state_put_u64(o, g->settle_max_ms);
	state_put_u64(o, (uint64_t)g->umask_set);
	state_put_u64(o, g->umask);
	state_put_u64(o, (uint64_t)g->no_new_privs);
	state_put_u64(o, g->nlimits);
	for (size_t i = 0; i < g->nlimits; i++) {
		state_put_u64(o, (uint64_t)g->limits[i].resource);
		state_put_u64(o, g->limits[i].soft);
		state_put_u64(o, g->limits[i].hard);
	}
}

static void get_group_conf(struct state_in *in, struct group_conf *g)
{
	g->at.file = state_get_str(in);
	g->at.line = (int)state_get_max(in, INT32_MAX);
	g->name = state_get_str(in);
	g->command = state_get_str(in);
	g->args = get_strv(in, &g->nargs);
	g->env = get_strv(in, &g->nenv);
	g->directory = state_get_str(in);
	g->user = state_get_str(in);
	g->group = state_get_str(in);
	g->uid = (uid_t)state_get_max(in, UINT32_MAX);
	g->gid = (gid_t)state_get_max(in, UINT32_MAX);
	g->nsupplementary = state_get_max(in, COUNT_MAX);
	g->supplementary =
	    xcalloc(g->nsupplementary + 1, sizeof(*g->supplementary));
	for (size_t i = 0; i < g->nsupplementary; i++)
		g->supplementary[i] = (gid_t)state_get_max(in, UINT32_MAX);
	g->workers = (unsigned)state_get_max(in, GROUP_MAX_WORKERS);
	g->rollout_batch = (unsigned)state_get_max(in, GROUP_MAX_WORKERS);
	g->nlisten = state_get_max(in, SPAWN_MAX_FDS);
	g->listen = xcalloc(g->nlisten + 1, sizeof(*g->listen));
	g->listen_at = xcalloc(g->nlisten + 1, sizeof(*g->listen_at));
	for (size_t i = 0; i < g->nlisten; i++) {
		get_addr(in, &g->listen[i]);
		g->listen_at[i].file = state_get_str(in);
		g->listen_at[i].line = (int)state_get_max(in, INT32_MAX);
	}
	g->backlog = (int)state_get_max(in, INT32_MAX);
	g->listen_mode = (enum listen_mode)state_get_max(in, LISTEN_PER_WORKER);
	g->ready_notify = (int)state_get_max(in, 1);
	g->ready_ms = state_get_u64(in);
	g->ready_timeout_ms = state_get_u64(in);
	g->stop_signal = (int)state_get_max(in, 64);
	g->stop_timeout_ms = state_get_u64(in);
	g->watch = (int)state_get_max(in, 1);
	g->watch_paths = get_strv(in, &g->nwatch_paths);
	g->settle_ms = state_get_u64(in);
	g->settle_max_ms = state_get_u64(in);
	g->umask_set = (int)state_get_max(in, 1);
	g->umask = (mode_t)state_get_max(in, 0777);
	g->no_new_privs = (int)state_get_max(in, 1);
	g->nlimits = state_get_max(in, RLIM_NLIMITS);
	g->limits = xcalloc(g->nlimits + 1, sizeof(*g->limits));
	for (size_t i = 0; i < g->nlimits; i++) {
		g->limits[i].resource =
		    (int)state_get_max(in, RLIM_NLIMITS - 1);
		g->limits[i].soft = state_get_u64(in);
		g->limits[i].hard = state_get_u64(in);
	}
	if (in->err == NULL && (g->name == NULL || g->command == NULL ||
				g->workers == 0 || g->stop_signal == 0))
		state_fail(in, "a group without a name, command or workers");
}

static void put_config(struct state_out *o, const struct config *c)
{
	state_put_str(o, c->path);
	state_put_str(o, c->control);
	state_put_u64(o, c->control_mode);
	state_put_u64(o, c->control_gid);
	state_put_str(o, c->pid_file);
	state_put_str(o, c->log_file);
	state_put_u64(o, c->log_level);
	state_put_u64(o, c->ngroups);
	for (size_t i = 0; i < c->ngroups; i++)
		put_group_conf(o, &c->groups[i]);
}

static struct config *get_config(struct state_in *in)
{
	struct config *c = xcalloc(1, sizeof(*c));

	c->path = state_get_str(in);
	c->control = state_get_str(in);
	c->control_mode = (mode_t)state_get_max(in, 07777);
	c->control_gid = (gid_t)state_get_max(in, UINT32_MAX);
	c->pid_file = state_get_str(in);
	c->log_file = state_get_str(in);
	c->log_level = (enum log_level)state_get_max(in, LOG_DEBUG);
	c->ngroups = state_get_max(in, COUNT_MAX);
	c->groups = xcalloc(c->ngroups + 1, sizeof(*c->groups));
	for (size_t i = 0; i < c->ngroups && in->err == NULL; i++)
		get_group_conf(in, &c->groups[i]);
	if (in->err == NULL && c->control == NULL)
		state_fail(in, "a config without a control socket");
	return c;
}

/* ---- what runs ----------------------------------------------------------- */

/*
 * Lists are written once and referred to by index: configs (the running
 * one first), listeners, generations (group by group, in order) and
 * workers (a slot may point at a worker, and a retired slot reused by a
 * scale-up may not point at the one still stopping there).
 */
struct lists {
	void **configs, **listeners, **gens, **workers;
	size_t nconfigs, nlisteners, ngens, nworkers;
};

/* All that state_load() builds before it installs any of it. */
struct loaded {
	struct lists x;
	struct wgroup *groups;
	struct slot **slots; /* with the index of their worker, to resolve */
	uint64_t *slot_worker;
	size_t nslots;
};

static void list_add(void ***v, size_t *n, void *p)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = p;
}

static uint64_t index_of(void *const *v, size_t n, const void *p)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == p)
			return i;
	return NONE;
}

static void put_ref(struct state_out *o, void *const *v, size_t n,
		    const void *p)
{
	state_put_u64(o, p != NULL ? index_of(v, n, p) : NONE);
}

/* A pointer to something in a list, by its index; NULL for NONE. */
static void *get_ref(struct state_in *in, void *const *v, size_t n)
{
	uint64_t i = state_get_u64(in);

	if (i == NONE)
		return NULL;
	if (i >= n) {
		state_fail(in, "a bad reference");
		return NULL;
	}
	return v[i];
}

static void put_timer(struct state_out *o, const struct timer *t)
{
	state_put_u64(o, t->armed ? t->when : NONE);
}

static void get_timer(struct state_in *in, struct timer *t)
{
	uint64_t when = state_get_u64(in);

	t->when = when;
	t->armed = when != NONE; /* armed for real by arm() once installed */
}

static void arm(struct timer *t)
{
	uint64_t now = now_ms();

	if (!t->armed)
		return;
	t->armed = 0;
	timer_set(t, t->when > now ? t->when - now : 0);
}

static void put_binary(struct state_out *o, const struct binary *b)
{
	state_put_fd(o, b->fd);
	state_put_u64(o, (uint64_t)b->script);
	state_put_u64(o, (uint64_t)b->busy);
	state_put_u64(o, b->dev);
	state_put_u64(o, b->ino);
	state_put_u64(o, (uint64_t)b->size);
	state_put_u64(o, (uint64_t)b->mtime.tv_sec);
	state_put_u64(o, (uint64_t)b->mtime.tv_nsec);
}

static void get_binary(struct state_in *in, struct binary *b)
{
	b->fd = state_get_fd(in);
	b->script = (int)state_get_max(in, 1);
	b->busy = (int)state_get_max(in, 1);
	b->dev = (dev_t)state_get_u64(in);
	b->ino = (ino_t)state_get_u64(in);
	b->size = (off_t)state_get_u64(in);
	b->mtime.tv_sec = (time_t)state_get_u64(in);
	b->mtime.tv_nsec = (long)state_get_max(in, 999999999);
}

static uint64_t conf_index(const struct config *c, const struct group_conf *gc)
{
	return gc != NULL ? (uint64_t)(gc - c->groups) : NONE;
}

static const struct group_conf *get_conf(struct state_in *in,
					 const struct config *c)
{
	uint64_t i = state_get_u64(in);

	if (c == NULL || i >= c->ngroups) {
		state_fail(in, "a bad group reference");
		return NULL;
	}
	return &c->groups[i];
}

static void put_slot(struct state_out *o, const struct lists *x,
		     const struct slot *s)
{
	state_put_u64(o, (uint64_t)s->launched);
	state_put_u64(o, s->restarts);
	state_put_u64(o, s->busy_tries);
	state_put_u64(o, s->backoff_ms);
	put_timer(o, &s->restart);
	put_ref(o, x->workers, x->nworkers, s->worker);
}

static void get_slot(struct state_in *in, struct loaded *l, struct gen *gen)
{
	struct slot *s = gen_slot_new(gen);

	s->launched = (int)state_get_max(in, 1);
	s->restarts = (unsigned)state_get_max(in, UINT32_MAX);
	s->busy_tries = (unsigned)state_get_max(in, UINT32_MAX);
	s->backoff_ms = state_get_u64(in);
	get_timer(in, &s->restart);
	l->slots = xrealloc(l->slots, (l->nslots + 1) * sizeof(struct slot *));
	l->slot_worker =
	    xrealloc(l->slot_worker, (l->nslots + 1) * sizeof(*l->slot_worker));
	l->slots[l->nslots] = s;
	l->slot_worker[l->nslots++] = state_get_u64(in);
}

static void put_gen(struct state_out *o, const struct lists *x,
		    const struct gen *gen)
{
	state_put_u64(o, gen->number);
	state_put_u64(o, gen->state);
	state_put_u64(o, gen->trigger);
	state_put_u64(o, gen->trigger_ms);
	put_ref(o, x->configs, x->nconfigs, gen->config);
	state_put_u64(o, conf_index(gen->config, gen->conf));
	put_binary(o, &gen->bin);
	state_put_u64(o, gen->nlisteners);
	for (size_t i = 0; i < gen->nlisteners; i++)
		put_ref(o, x->listeners, x->nlisteners, gen->listeners[i]);
	state_put_u64(o, gen->want);
	state_put_u64(o, gen->nlive);
	state_put_u64(o, gen->nslots);
	for (unsigned i = 0; i < gen->nslots; i++)
		put_slot(o, x, gen->slots[i]);
}

static struct gen *get_gen(struct state_in *in, struct loaded *l,
			   struct wgroup *g)
{
	struct gen *gen = xcalloc(1, sizeof(*gen));
	unsigned nslots;

	gen->group = g;
	gen->number = (unsigned)state_get_max(in, UINT32_MAX);
	gen->state = (enum gen_state)state_get_max(in, G_ABORTED);
	gen->trigger = (enum trigger)state_get_max(in, TRIGGER_CONTROL);
	gen->trigger_ms = state_get_u64(in);
	gen->config = get_ref(in, l->x.configs, l->x.nconfigs);
	if (gen->config != NULL)
		config_ref(gen->config);
	gen->conf = get_conf(in, gen->config);
	binary_init(&gen->bin);
	get_binary(in, &gen->bin);
	gen->nlisteners = state_get_max(in, COUNT_MAX);
	gen->listeners =
	    xcalloc(gen->nlisteners + 1, sizeof(struct listener *));
	for (size_t i = 0; i < gen->nlisteners; i++)
		if ((gen->listeners[i] =
			 get_ref(in, l->x.listeners, l->x.nlisteners)) == NULL)
			state_fail(in, "a generation without its listener");
	gen->want = (unsigned)state_get_max(in, GROUP_MAX_WORKERS);
	gen->nlive = (unsigned)state_get_max(in, COUNT_MAX);
	nslots = (unsigned)state_get_max(in, COUNT_MAX);
	for (unsigned i = 0; i < nslots && in->err == NULL; i++)
		get_slot(in, l, gen);
	if (in->err == NULL && gen->want > gen->nslots)
		state_fail(in, "a generation with too few slots");
	list_add(&l->x.gens, &l->x.ngens, gen);
	return gen;
}

static void put_group(struct state_out *o, const struct lists *x,
		      const struct wgroup *g)
{
	size_t ngens = 0;

	for (const struct gen *gen = g->gens; gen != NULL; gen = gen->next)
		ngens++;
	state_put_str(o, g->name);
	put_ref(o, x->configs, x->nconfigs, g->config);
	state_put_u64(o, conf_index(g->config, g->conf));
	state_put_u64(o, g->last_gen);
	state_put_u64(o, g->workers);
	put_binary(o, &g->last_fp);
	state_put_u64(o, g->last.generation);
	state_put_u64(o, g->last.trigger);
	state_put_str(o, g->last.result);
	state_put_str(o, g->last.reason);
	state_put_u64(o, g->last.started_ms);
	state_put_u64(o, g->last.duration_ms);
	state_put_u64(o, (uint64_t)g->removed);
	state_put_u64(o, ngens);
	for (const struct gen *gen = g->gens; gen != NULL; gen = gen->next)
		put_gen(o, x, gen);
	put_ref(o, x->gens, x->ngens, g->current);
	put_ref(o, x->gens, x->ngens, g->next_gen);
}

/* The result strings are static in group.c: map back to them. */
static const char *get_result(struct state_in *in)
{
	static const char *const results[] = {"running", "ok", "aborted"};
	char *s = state_get_str(in);
	const char *r = NULL;

	for (size_t i = 0; s != NULL && i < ARRAY_LEN(results); i++)
		if (strcmp(s, results[i]) == 0)
			r = results[i];
	if (s != NULL && r == NULL)
		state_fail(in, "an unknown rollover result");
	free(s);
	return r;
}

/* current or next_gen: one of this group's own generations, or none. */
static struct gen *get_own_gen(struct state_in *in, struct loaded *l,
			       const struct wgroup *g)
{
	struct gen *gen = get_ref(in, l->x.gens, l->x.ngens);

	if (gen != NULL && gen->group != g)
		state_fail(in, "a generation of another group");
	return gen;
}

static struct wgroup *get_group(struct state_in *in, struct loaded *l)
{
	struct wgroup *g = xcalloc(1, sizeof(*g));
	struct gen **tail = &g->gens;
	size_t ngens;

	g->name = state_get_str(in);
	g->config = get_ref(in, l->x.configs, l->x.nconfigs);
	g->conf = get_conf(in, g->config);
	g->last_gen = (unsigned)state_get_max(in, UINT32_MAX);
	g->workers = (unsigned)state_get_max(in, GROUP_MAX_WORKERS);
	binary_init(&g->last_fp);
	get_binary(in, &g->last_fp);
	g->last.generation = (unsigned)state_get_max(in, UINT32_MAX);
	g->last.trigger = (enum trigger)state_get_max(in, TRIGGER_CONTROL);
	g->last.result = get_result(in);
	state_get_buf(in, g->last.reason, sizeof(g->last.reason));
	g->last.started_ms = state_get_u64(in);
	g->last.duration_ms = state_get_u64(in);
	g->removed = (int)state_get_max(in, 1);
	ngens = state_get_max(in, COUNT_MAX);
	for (size_t i = 0; i < ngens && in->err == NULL; i++) {
		*tail = get_gen(in, l, g);
		tail = &(*tail)->next;
	}
	g->current = get_own_gen(in, l, g);
	g->next_gen = get_own_gen(in, l, g);
	if (in->err == NULL && g->name == NULL)
		state_fail(in, "a group without a name");
	return g;
}

static void put_worker(struct state_out *o, const struct lists *x,
		       const struct worker *w)
{
	put_ref(o, x->gens, x->ngens, w->gen);
	state_put_u64(o, w->slot);
	state_put_u64(o, (uint64_t)w->pid);
	state_put_u64(o, w->state);
	state_put_u64(o, w->started_ms);
	state_put_u64(o, w->ready_ms);
	state_put_u64(o, (uint64_t)w->stop_requested);
	state_put_u64(o, (uint64_t)w->timed_out);
	put_timer(o, &w->timer);
}

static struct worker *get_worker(struct state_in *in, struct loaded *l)
{
	struct worker *w = xcalloc(1, sizeof(*w));

	w->gen = get_ref(in, l->x.gens, l->x.ngens);
	w->slot = (unsigned)state_get_max(in, COUNT_MAX);
	w->pid = (pid_t)state_get_max(in, INT32_MAX);
	w->state = (enum worker_state)state_get_max(in, W_NSTATES - 1);
	w->started_ms = state_get_u64(in);
	w->ready_ms = state_get_u64(in);
	w->stop_requested = (int)state_get_max(in, 1);
	w->timed_out = (int)state_get_max(in, 1);
	worker_timer_init(w);
	get_timer(in, &w->timer);
	if (in->err == NULL &&
	    (w->gen == NULL || w->slot >= w->gen->nslots || w->pid <= 1))
		state_fail(in, "a worker that does not add up");
	list_add(&l->x.workers, &l->x.nworkers, w);
	return w;
}

/* ---- the whole ----------------------------------------------------------- */

static uint64_t checksum(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static void lists_build(struct lists *x, struct config *running)
{
	list_add(&x->configs, &x->nconfigs, running);
	for (struct listener *ls = listener_first(); ls != NULL; ls = ls->next)
		list_add(&x->listeners, &x->nlisteners, ls);
	for (struct wgroup *g = groups; g != NULL; g = g->next) {
		if (index_of(x->configs, x->nconfigs, g->config) == NONE)
			list_add(&x->configs, &x->nconfigs, g->config);
		for (struct gen *gen = g->gens; gen != NULL; gen = gen->next) {
			if (index_of(x->configs, x->nconfigs, gen->config) ==
			    NONE)
				list_add(&x->configs, &x->nconfigs,
					 gen->config);
			list_add(&x->gens, &x->ngens, gen);
		}
	}
	for (struct worker *w = worker_first(); w != NULL; w = w->next)
		list_add(&x->workers, &x->nworkers, w);
}

static void lists_free(struct lists *x)
{
	free(x->configs);
	free(x->listeners);
	free(x->gens);
	free(x->workers);
}

void state_save(struct state_out *o, struct config *running)
{
	struct lists x = {0};
	size_t ngroups = 0;

	lists_build(&x, running);
	state_put_u64(o, STATE_MAGIC);
	state_put_u64(o, STATE_VERSION);
	state_put_u64(o, (uint64_t)quick_mode);
	state_put_u64(o, x.nconfigs);
	for (size_t i = 0; i < x.nconfigs; i++)
		put_config(o, x.configs[i]);
	state_put_u64(o, x.nlisteners);
	for (size_t i = 0; i < x.nlisteners; i++) {
		const struct listener *ls = x.listeners[i];

		put_addr(o, &ls->addr);
		state_put_u64(o, (uint64_t)(int64_t)ls->slot);
		state_put_fd(o, ls->fd);
		state_put_u64(o, ls->refs);
	}
	notify_save(o);
	control_save(o);
	sdnotify_save(o);
	for (struct wgroup *g = groups; g != NULL; g = g->next)
		ngroups++;
	state_put_u64(o, ngroups);
	for (struct wgroup *g = groups; g != NULL; g = g->next)
		put_group(o, &x, g);
	state_put_u64(o, x.nworkers);
	for (size_t i = 0; i < x.nworkers; i++)
		put_worker(o, &x, x.workers[i]);
	state_put_u64(o, checksum(o->p, o->len));
	lists_free(&x);
}

static struct listener *get_listener(struct state_in *in)
{
	struct listener *ls = xcalloc(1, sizeof(*ls));

	get_addr(in, &ls->addr);
	ls->slot = (int)(int64_t)state_get_u64(in);
	ls->fd = state_get_fd(in);
	ls->refs = (unsigned)state_get_max(in, UINT32_MAX);
	if (in->err == NULL && (ls->slot < -1 || ls->fd < 0))
		state_fail(in, "a bad listener");
	return ls;
}

/* Everything read, none of it installed: free it (fds stay open). */
static void loaded_free(struct loaded *l)
{
	while (l->groups != NULL) {
		struct wgroup *g = l->groups;

		l->groups = g->next;
		while (g->gens != NULL) {
			struct gen *gen = g->gens;

			g->gens = gen->next;
			for (unsigned i = 0; i < gen->nslots; i++)
				free(gen->slots[i]);
			free(gen->slots);
			free(gen->listeners);
			free(gen);
		}
		free(g->name);
		free(g);
	}
	for (size_t i = 0; i < l->x.nworkers; i++)
		free(l->x.workers[i]);
	for (size_t i = 0; i < l->x.nlisteners; i++)
		free(l->x.listeners[i]);
	for (size_t i = 0; i < l->x.nconfigs; i++)
		config_free(l->x.configs[i]);
	lists_free(&l->x);
	free(l->slots);
	free(l->slot_worker);
}

static void loaded_install(struct loaded *l)
{
	struct wgroup **tail = &groups;

	/* Both lists are built by prepending: keep their order. */
	for (size_t i = l->x.nlisteners; i-- > 0;)
		listener_install(l->x.listeners[i]);
	for (size_t i = l->x.nworkers; i-- > 0;) {
		worker_install(l->x.workers[i]);
		arm(&((struct worker *)l->x.workers[i])->timer);
	}
	for (size_t i = 0; i < l->nslots; i++)
		arm(&l->slots[i]->restart);
	while (*tail != NULL)
		tail = &(*tail)->next;
	*tail = l->groups;
	/* Generations hold references; the running config gets the caller's. */
	for (size_t i = 1; i < l->x.nconfigs; i++)
		if (((struct config *)l->x.configs[i])->refs == 0)
			config_free(l->x.configs[i]);
	lists_free(&l->x);
	free(l->slots);
	free(l->slot_worker);
}

static uint64_t get_checksum(const struct state_in *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)in->p[in->len - 8 + (size_t)i] << (8 * i);
	return v;
}

static void read_all(struct state_in *in, struct loaded *l)
{
	struct wgroup **tail = &l->groups;
	size_t n;

	if (state_get_u64(in) != STATE_MAGIC) {
		state_fail(in, "not a rollover state");
		return;
	}
	if (state_get_u64(in) != STATE_VERSION) {
		state_fail(in, "a state of another version");
		return;
	}
	if (checksum(in->p, in->len - 8) != get_checksum(in)) {
		state_fail(in, "a bad checksum");
		return;
	}
	in->len -= 8; /* the checksum is not data */
	in->quick = (int)state_get_max(in, 1);
	n = state_get_max(in, COUNT_MAX);
	for (size_t i = 0; i < n && in->err == NULL; i++)
		list_add(&l->x.configs, &l->x.nconfigs, get_config(in));
	n = state_get_max(in, COUNT_MAX);
	for (size_t i = 0; i < n && in->err == NULL; i++)
		list_add(&l->x.listeners, &l->x.nlisteners, get_listener(in));
	notify_load(in);
	control_load(in);
	sdnotify_load(in);
	n = state_get_max(in, COUNT_MAX);
	for (size_t i = 0; i < n && in->err == NULL; i++) {
		*tail = get_group(in, l);
		tail = &(*tail)->next;
	}
	n = state_get_max(in, COUNT_MAX);
	for (size_t i = 0; i < n && in->err == NULL; i++)
		(void)get_worker(in, l);
	for (size_t i = 0; i < l->nslots && in->err == NULL; i++)
		if (l->slot_worker[i] != NONE) {
			struct worker *w = l->slot_worker[i] < l->x.nworkers
					       ? l->x.workers[l->slot_worker[i]]
					       : NULL;

			if (w == NULL || w->gen != l->slots[i]->gen)
				state_fail(in, "a slot with a bad worker");
			else
				l->slots[i]->worker = w;
		}
	if (in->err == NULL && in->off != in->len)
		state_fail(in, "trailing bytes");
	if (in->err == NULL && l->x.nconfigs == 0)
		state_fail(in, "no config");
}

/* The handed-over fds are inherited no further than this program. */
static void fds_cloexec(const struct state_in *in)
{
	for (size_t i = 0; i < in->nfds; i++)
		(void)fcntl(in->fds[i], F_SETFD, FD_CLOEXEC);
}

struct config *state_load(int fd, int adopt, const char **err)
{
	struct state_in in = {.adopt = adopt};
	struct loaded l = {0};
	struct config *running;
	struct stat st;
	void *map;

	if (fstat(fd, &st) == -1 || st.st_size < 24 ||
	    (uint64_t)st.st_size > STATE_MAX) {
		*err = "the state is missing, short or too large";
		return NULL;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		*err = "the state cannot be mapped";
		return NULL;
	}
	in.p = map;
	in.len = (size_t)st.st_size;
	read_all(&in, &l);
	munmap(map, (size_t)st.st_size);
	if (in.err != NULL || !adopt) {
		*err = in.err;
		loaded_free(&l);
		free(in.fds);
		return NULL;
	}
	quick_mode = in.quick;
	running = l.x.configs[0];
	loaded_install(&l);
	fds_cloexec(&in);
	free(in.fds);
	*err = NULL;
	return running;
}
