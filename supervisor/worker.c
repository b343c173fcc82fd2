/*
 * worker.c - one worker process: spawning it, and its state machine.
 *
 * The transitions are the table below, state by event, each a small
 * function; the picture is in rollover.h.  What a worker's exit *means*
 * (a crash to restart, an expected stop, a failed start) is decided by its
 * generation in group.c, which this file tells through gen_worker_ready()
 * and gen_worker_exited().
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollover.h"

extern char **environ;

enum worker_event { EV_READY, EV_TIMER, EV_STOP, EV_NEVENTS };

static struct worker *workers; /* every live worker, of every group */

/* Variables the supervisor sets; inherited values would be lies. */
static const char *const own_vars[] = {
    "LISTEN_FDS",	   "LISTEN_PID",     "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",	   "ROLLOVER_GROUP", "ROLLOVER_SLOT",
    "ROLLOVER_GENERATION", "WATCHDOG_USEC",  "WATCHDOG_PID",
};

const char *worker_state_name(enum worker_state s)
{
	static const char *const names[] = {"starting", "ready", "stopping"};

	return s < W_NSTATES ? names[s] : "?";
}

static const char *wname(const struct worker *w)
{
	static char buf[160];

	snprintf(buf, sizeof(buf), "%s: worker %d (slot %u, generation %u)",
		 w->gen->group->name, (int)w->pid, w->slot, w->gen->number);
	return buf;
}

/* ---- the environment and argv of a new worker -------------------------- */

struct envbuf {
	char **v;
	size_t n, cap;
};

static void env_add(struct envbuf *e, char *s)
{
	if (e->n + 2 > e->cap) {
		e->cap = e->cap ? 2 * e->cap : 64;
		e->v = xrealloc(e->v, e->cap * sizeof(*e->v));
	}
	e->v[e->n++] = s;
	e->v[e->n] = NULL;
}

static int env_key_in(const char *kv, char *const *list, size_t n)
{
	size_t klen = strcspn(kv, "=");

	for (size_t i = 0; i < n; i++)
		if (strncmp(kv, list[i], klen) == 0 &&
		    (list[i][klen] == '=' || list[i][klen] == '\0'))
			return 1;
	return 0;
}

static void env_free(struct envbuf *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
}

/*
 * The supervisor's own environment, minus the variables it owns and the
 * ones the group overrides, plus the group's `env` and the protocol's.
 * Returns where the digits of LISTEN_PID go (the child fills them in).
 */
static char *env_build(struct envbuf *e, const struct gen *g, unsigned slot,
		       size_t nfds)
{
	const struct group_conf *gc = g->conf;
	char *pid_digits = NULL;

	for (char **p = environ; *p != NULL; p++)
		if (!env_key_in(*p, (char *const *)own_vars,
				ARRAY_LEN(own_vars)) &&
		    !env_key_in(*p, gc->env, gc->nenv))
			env_add(e, xstrdup(*p));
	for (size_t i = 0; i < gc->nenv; i++)
		env_add(e, xstrdup(gc->env[i]));
	if (nfds > 0) {
		size_t len =
		    strlen("LISTEN_FDNAMES=") + nfds * (strlen(gc->name) + 1);
		char *names = xmalloc(len + 1);
		char *pidvar = xmalloc(strlen("LISTEN_PID=") + 24);

		strcpy(names, "LISTEN_FDNAMES=");
		for (size_t i = 0; i < nfds; i++) {
			if (i > 0)
				strcat(names, ":");
			strcat(names, gc->name);
		}
		strcpy(pidvar, "LISTEN_PID=");
		pid_digits = pidvar + strlen("LISTEN_PID=");
		strcpy(pid_digits, "0");
		env_add(e, xasprintf("LISTEN_FDS=%zu", nfds));
		env_add(e, pidvar);
		env_add(e, names);
	}
	env_add(e, xasprintf("NOTIFY_SOCKET=%s", notify_path));
	env_add(e, xasprintf("ROLLOVER_GROUP=%s", gc->name));
	env_add(e, xasprintf("ROLLOVER_SLOT=%u", slot));
	env_add(e, xasprintf("ROLLOVER_GENERATION=%u", g->number));
	return pid_digits;
}

static char **argv_build(const struct group_conf *gc)
{
	char **argv = xcalloc(gc->nargs + 2, sizeof(*argv));

	argv[0] = gc->command;
	for (size_t i = 0; i < gc->nargs; i++)
		argv[i + 1] = gc->args[i];
	return argv;
}

/* ---- transitions --------------------------------------------------------- */

static void worker_event(struct worker *w, enum worker_event ev);

static void on_timer(void *arg)
{
	worker_event(arg, EV_TIMER);
}

static void ignore(struct worker *w)
{
	(void)w;
}

static void become_ready(struct worker *w)
{
	timer_cancel(&w->timer);
	w->state = W_READY;
	w->ready_ms = now_ms();
	log_info("%s ready after %llu ms", wname(w),
		 (unsigned long long)(w->ready_ms - w->started_ms));
	gen_worker_ready(w);
	sdnotify_changed(); /* the STATUS= line counts ready workers */
}

static void begin_stop(struct worker *w)
{
	const struct group_conf *gc = w->gen->conf;

	w->state = W_STOPPING;
	w->stop_requested = 1;
	log_info("%s stopping (SIG%s)", wname(w), signal_name(gc->stop_signal));
	if (kill(w->pid, gc->stop_signal) == -1)
		log_warn("%s: kill", wname(w));
	timer_set(&w->timer, gc->stop_timeout_ms);
}

/* In STARTING, the timer is either `ready` seconds or `ready_timeout`. */
static void starting_timer(struct worker *w)
{
	const struct group_conf *gc = w->gen->conf;

	if (!gc->ready_notify) {
		become_ready(w);
		return;
	}
	log_warnx("%s not ready after %llu ms; stopping it", wname(w),
		  (unsigned long long)gc->ready_timeout_ms);
	w->timed_out = 1;
	begin_stop(w);
	gen_worker_not_ready(w);
}

/*
 * SIGKILL goes to the whole process group the worker leads, so that its
 * own children go too; and to the pid, in case it left that group.
 */
static void kill_group(struct worker *w)
{
	log_warnx("%s did not stop within %llu ms; killing it", wname(w),
		  (unsigned long long)w->gen->conf->stop_timeout_ms);
	worker_kill(w);
}

typedef void action_fn(struct worker *w);

static action_fn *const transitions[W_NSTATES][EV_NEVENTS] = {
    /*               EV_READY      EV_TIMER        EV_STOP */
    [W_STARTING] = {become_ready, starting_timer, begin_stop},
    [W_READY] = {ignore, ignore, begin_stop},
    [W_STOPPING] = {ignore, kill_group, ignore},
};

static void worker_event(struct worker *w, enum worker_event ev)
{
	transitions[w->state][ev](w);
}

/* ---- the interface ------------------------------------------------------- */

struct worker *worker_start(struct gen *g, unsigned slot, int *err)
{
	const struct group_conf *gc = g->conf;
	int fds[SPAWN_MAX_FDS];
	size_t nfds = gen_fds(g, slot, fds, ARRAY_LEN(fds));
	struct envbuf env = {0};
	struct spawn sp = {0};
	struct worker *w;
	const char *what;
	pid_t pid;

	sp.path = gc->command;
	/* The pinned binary; scripts need their path (see binary.c). */
	sp.exec_fd = g->bin.fd >= 0 && !g->bin.script ? g->bin.fd : -1;
	sp.argv = argv_build(gc);
	sp.pid_digits = env_build(&env, g, slot, nfds);
	sp.envp = env.v;
	sp.fds = fds;
	sp.nfds = nfds;
	sp.devnull = devnull_fd;
	sp.directory = gc->directory;
	sp.drop_privileges = gc->user != NULL || gc->group != NULL;
	sp.uid = gc->user != NULL ? gc->uid : (uid_t)-1;
	sp.gid = gc->gid;
	sp.groups = gc->supplementary;
	sp.ngroups = gc->nsupplementary;
	sp.umask_set = gc->umask_set;
	sp.umask = gc->umask;
	sp.no_new_privs = gc->no_new_privs;
	sp.limits = gc->limits;
	sp.nlimits = gc->nlimits;
	pid = spawn_process(&sp, &what, err);
	free((void *)sp.argv);
	env_free(&env);
	if (pid == -1) {
		if (*err == ETXTBSY)
			log_info("%s: slot %u, generation %u: %s is busy; "
				 "retrying",
				 g->group->name, slot, g->number, gc->command);
		else
			log_errorx("%s: slot %u, generation %u: cannot start "
				   "%s: %s: %s",
				   g->group->name, slot, g->number, gc->command,
				   what, strerror(*err));
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	w->gen = g;
	w->slot = slot;
	w->pid = pid;
	w->state = W_STARTING;
	w->started_ms = now_ms();
	timer_init(&w->timer, on_timer, w);
	w->next = workers;
	workers = w;
	log_info("%s started", wname(w));
	/*
	 * With ready = 0 too: readiness comes from the loop, once the
	 * caller has put the worker in its slot, where the generation
	 * counts it.
	 */
	timer_set(&w->timer,
		  gc->ready_notify ? gc->ready_timeout_ms : gc->ready_ms);
	return w;
}

void worker_ready(struct worker *w)
{
	worker_event(w, EV_READY);
}

void worker_stop(struct worker *w)
{
	worker_event(w, EV_STOP);
}

void worker_kill(struct worker *w)
{
	w->stop_requested = 1;
	w->state = W_STOPPING;
	timer_cancel(&w->timer);
	if (kill(-w->pid, SIGKILL) == -1 && errno != ESRCH)
		log_warn("%s: kill process group", wname(w));
	(void)kill(w->pid, SIGKILL);
}

void worker_timer_init(struct worker *w)
{
	timer_init(&w->timer, on_timer, w);
}

/* A worker handed over by a self-upgrade: its timer is armed after. */
void worker_install(struct worker *w)
{
	w->next = workers;
	workers = w;
}

struct worker *worker_find(pid_t pid)
{
	for (struct worker *w = workers; w != NULL; w = w->next)
		if (w->pid == pid)
			return w;
	return NULL;
}

struct worker *worker_first(void)
{
	return workers;
}

unsigned worker_count(void)
{
	unsigned n = 0;

	for (struct worker *w = workers; w != NULL; w = w->next)
		n++;
	return n;
}

int worker_reaped(pid_t pid, int status)
{
	struct worker **pp, *w;

	for (pp = &workers; (w = *pp) != NULL; pp = &w->next)
		if (w->pid == pid)
			break;
	if (w == NULL)
		return 0;
	*pp = w->next;
	timer_cancel(&w->timer);
	gen_worker_exited(w, status);
	free(w);
	sdnotify_changed();
	return 1;
}
