/*
 * rollover.h - the supervisor's types and the prototypes of every file.
 *
 * One section per source file, in the order a reader meets them: a function
 * named foo_bar() lives in foo.c.  Everything not listed here is static.
 */
#ifndef ROLLOVER_H
#define ROLLOVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct state_in;
struct state_out;

#define ROLLOVER_VERSION "0.1.0"

/* Exit statuses, as the design card fixes them. */
#define EXIT_USAGE  2
#define EXIT_CONFIG 78 /* EX_CONFIG */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- log.c ------------------------------------------------------------ */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(enum log_level level);
void log_set_level(enum log_level level);
void log_reopen(const char *path);
int log_level_parse(const char *name, enum log_level *level);
/* The _x variants do not append strerror(errno); the others do. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print one line and exit(status): for failures before the loop runs. */
void fatal(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void fatalx(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* ---- util.c ----------------------------------------------------------- */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void strv_free(char **v); /* NULL-terminated, each string malloc'd */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ms(void); /* CLOCK_MONOTONIC */
/* Where the control socket is when the config does not say (malloc'd). */
char *control_default_path(void);
const char *signal_name(int sig);   /* "TERM"; "SIG42" for unknown ones */
int signal_parse(const char *name); /* "TERM", "SIGTERM", "term"; -1 */
/* "exited with status 1" / "killed by signal 9 (KILL)" into buf. */
const char *wait_status_str(int status, char *buf, size_t len);

/* ---- addr.c ----------------------------------------------------------- */

/*
 * A listening address as written in the config:
 *   "127.0.0.1:8080", "*:8080" (any IPv4), "[::1]:8080", "[::]:8080",
 *   "unix:/run/app.sock", "unix:@abstract-name".
 * Hosts are numeric; names are not resolved (no DNS at start-up).
 */
struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[128]; /* canonical form, used in logs and errors */
};

/* 0 on success; -1 with *why set to a static message on failure. */
int addr_parse(const char *s, struct addr *a, const char **why);
int addr_equal(const struct addr *a, const struct addr *b);

/* ---- config.c --------------------------------------------------------- */

enum listen_mode { LISTEN_SHARED, LISTEN_PER_WORKER };

/* Where a setting was written, for error messages. */
struct origin {
	char *file;
	int line;
};

/* One resource limit of a group's workers, set between fork and exec. */
#define LIMIT_INFINITY UINT64_MAX
struct limit_conf {
	int resource;  /* RLIMIT_NOFILE, RLIMIT_CORE, ... */
	uint64_t soft; /* the soft limit; LIMIT_INFINITY: unlimited */
	uint64_t hard; /* the hard limit; LIMIT_INFINITY: unlimited */
};

struct group_conf {
	struct origin at;
	char *name;
	char *command; /* absolute path (relative ones resolved) */
	char **args;   /* NULL-terminated; args[0] is the first argument */
	size_t nargs;
	char **env; /* NULL-terminated "KEY=VALUE" */
	size_t nenv;
	char *directory;      /* NULL: the supervisor's working directory */
	char *user;	      /* NULL: no privilege drop */
	char *group;	      /* NULL: the user's primary group */
	uid_t uid;	      /* resolved when user is set */
	gid_t gid;	      /* resolved when user or group is set */
	gid_t *supplementary; /* the user's groups (getgrouplist) */
	size_t nsupplementary;
	int umask_set;		   /* 0: the supervisor's umask is inherited */
	mode_t umask;		   /* the workers' umask, if umask_set */
	int no_new_privs;	   /* 1: PR_SET_NO_NEW_PRIVS before exec */
	struct limit_conf *limits; /* nlimits of them, one per resource */
	size_t nlimits;		   /* 0: the supervisor's limits */
	unsigned workers;	   /* resolved: never 0 */
	unsigned rollout_batch;	   /* 0: start every new worker at once */
	struct addr *listen;
	struct origin *listen_at;
	size_t nlisten;
	int backlog; /* 0: the kernel's somaxconn */
	enum listen_mode listen_mode;
	int ready_notify; /* 1: wait for READY=1; 0: ready after ready_ms */
	uint64_t ready_ms;
	uint64_t ready_timeout_ms;
	int stop_signal;
	uint64_t stop_timeout_ms;
	int watch;
	char **watch_paths; /* NULL-terminated */
	size_t nwatch_paths;
	uint64_t settle_ms;
	uint64_t settle_max_ms;
};

struct config {
	unsigned refs;	     /* config_ref()/config_unref(), in group.c */
	char *path;	     /* as given on the command line */
	char *control;	     /* always set: the default place if not given */
	mode_t control_mode; /* 0600 unless control_mode widens it */
	gid_t control_gid;   /* (gid_t)-1 unless control_group is set */
	char *pid_file;	     /* NULL: none */
	char *log_file;	     /* NULL: stderr */
	enum log_level log_level;
	struct group_conf *groups;
	size_t ngroups;
};

/*
 * Read and validate the config file at path.  Every problem found is
 * passed to report() as one "FILE:LINE: message" line; returns NULL if
 * there was any, the config otherwise.
 */
struct config *config_load(const char *path, void (*report)(const char *line));
void config_free(struct config *c);
const struct group_conf *config_group(const struct config *c, const char *name);
/* The name of an RLIMIT_* in `limits`: "nofile"; "?" if not one. */
const char *config_limit_name(int resource);

/* ---- loop.c ----------------------------------------------------------- */

typedef void loop_fn(int fd, uint32_t events, void *arg);

struct timer {
	uint64_t when; /* now_ms() deadline */
	void (*fn)(void *arg);
	void *arg;
	struct timer *next;
	int armed;
};

void loop_init(void);
void loop_add(int fd, uint32_t events, loop_fn *fn, void *arg);
void loop_mod(int fd, uint32_t events);
void loop_del(int fd);
int loop_run(void); /* returns the status given to loop_exit() */
void loop_exit(int status);
void timer_init(struct timer *t, void (*fn)(void *), void *arg);
void timer_set(struct timer *t, uint64_t ms_from_now);
void timer_cancel(struct timer *t);
int timer_armed(const struct timer *t);

/* ---- spawn.c ---------------------------------------------------------- */

#define SPAWN_MAX_FDS 256

struct spawn {
	const char *path; /* execve(path), unless exec_fd >= 0 */
	int exec_fd;	  /* execveat(exec_fd, "", AT_EMPTY_PATH) */
	char *const *argv;
	char *const *envp;
	char *pid_digits; /* filled with the child's pid, or NULL */
	const int *fds;	  /* become fds 3, 4, ... in the child */
	size_t nfds;
	int devnull;	       /* becomes stdin */
	const char *directory; /* NULL: stay */
	int drop_privileges;
	uid_t uid; /* (uid_t)-1: keep */
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	int umask_set;			 /* 0: keep the umask */
	mode_t umask;			 /* if umask_set */
	int no_new_privs;		 /* 1: PR_SET_NO_NEW_PRIVS */
	const struct limit_conf *limits; /* set before the drop */
	size_t nlimits;
};

/*
 * Fork and exec.  Returns the pid once the exec has succeeded, or -1
 * with *what naming the step that failed ("exec", "chdir", ...) and
 * *err its errno; a child that failed has already been reaped.
 */
pid_t spawn_process(const struct spawn *sp, const char **what, int *err);

/* ---- binary.c --------------------------------------------------------- */

#include <time.h>

/* A validated, pinned worker binary, and its fingerprint. */
struct binary {
	int fd;	    /* O_RDONLY|O_CLOEXEC; -1 when closed */
	int script; /* starts with #!: exec'd by path */
	int busy;   /* after a failure: may just be mid-write */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

void binary_init(struct binary *b);
/* Open and check path; -1 with *why (static) if it is not runnable. */
int binary_open(struct binary *b, const char *path, const char **why);
int binary_same(const struct binary *a, const struct binary *b);
void binary_close(struct binary *b);

/* ---- listener.c ------------------------------------------------------- */

struct listener {
	struct listener *next;
	struct addr addr;
	int slot; /* -1: shared by every worker; else a worker slot */
	int fd;
	unsigned refs; /* generations (and reloads in progress) using it */
};

/*
 * Take a reference on the socket for (addr, slot), opening it if no one
 * holds it yet; NULL after logging why.  An address kept across a reload
 * thus stays the very same socket.
 */
struct listener *listener_get(const struct addr *a, int slot, int backlog);
void listener_put(struct listener *l);
/* Self-upgrade: every socket held, and one handed over to install. */
struct listener *listener_first(void);
void listener_install(struct listener *l);
/* Socket activation: take LISTEN_FDS early, adopt them once c is read. */
void listener_take_activated(void);
void listener_adopt(const struct config *c);

/* ---- notify.c --------------------------------------------------------- */

/* Bind the NOTIFY_SOCKET; returns its address as workers should see it. */
const char *notify_init(void);
/* Self-upgrade: the socket is handed over, since workers know its name. */
void notify_save(struct state_out *o);
void notify_load(struct state_in *in);

/* ---- worker.c --------------------------------------------------------- */

/*
 * A worker's life, the one state machine of a process:
 *
 *            spawn                ready (READY=1, or `ready` seconds)
 *   (none) --------> STARTING ---------------------------------> READY
 *                      |  \  ready_timeout                         |
 *                      |   `-------------------.                   |
 *                      | stop                  v         stop      |
 *                      `---------------------> STOPPING <----------'
 *                                                |  stop_timeout: SIGKILL
 *                                                |  to the process group
 *        exit in any state: reaped, reported to its generation, freed
 */
enum worker_state { W_STARTING, W_READY, W_STOPPING, W_NSTATES };

struct gen;

struct worker {
	struct worker *next; /* all live workers */
	struct gen *gen;
	unsigned slot;
	pid_t pid;
	enum worker_state state;
	uint64_t started_ms;
	uint64_t ready_ms;
	int stop_requested; /* the exit is expected, not a crash */
	int timed_out;	    /* stopped for not being ready in time */
	struct timer timer;
};

/* NULL with *err set (and logged) if the worker could not be started. */
struct worker *worker_start(struct gen *g, unsigned slot, int *err);
void worker_ready(struct worker *w);
void worker_stop(struct worker *w);
void worker_kill(struct worker *w);
struct worker *worker_find(pid_t pid);
struct worker *worker_first(void);
/* Self-upgrade: a worker read from the state, then made live. */
void worker_timer_init(struct worker *w);
void worker_install(struct worker *w);
/* Called for each reaped child; returns 0 if the pid was not a worker. */
int worker_reaped(pid_t pid, int status);
unsigned worker_count(void);
const char *worker_state_name(enum worker_state s);

/* ---- group.c ---------------------------------------------------------- */

/*
 * A generation's life, and so a rollover's:
 *
 *              all slots ready: the old SERVING one starts DRAINING
 *   STARTING -------------------------------------------------> SERVING
 *      |  a worker exits, fails to exec or is not ready in time,   |
 *      |  or a newer trigger supersedes it                         |
 *      v                                                           v
 *   ABORTED (its workers stopped)          DRAINING (when a newer one serves)
 *      `------------ freed once its last worker has exited --------'
 *
 * A group's first generation (at start, or when a reload adds the group)
 * is SERVING at once: there is nothing to fall back to, so its workers
 * are restarted with backoff instead of aborting it.
 */
enum gen_state { G_STARTING, G_SERVING, G_DRAINING, G_ABORTED };
enum trigger { TRIGGER_START, TRIGGER_SIGNAL, TRIGGER_WATCH, TRIGGER_CONTROL };

/* One slot of a generation: which worker runs there, and its backoff. */
struct slot {
	struct gen *gen;
	unsigned index;
	struct worker *worker;
	int launched; /* a worker was started here at least once */
	unsigned restarts;
	unsigned busy_tries; /* exec refused with ETXTBSY */
	uint64_t backoff_ms;
	struct timer restart;
};

struct gen {
	struct gen *next; /* the group's generations, newest first */
	struct wgroup *group;
	unsigned number;
	enum gen_state state;
	enum trigger trigger;
	uint64_t trigger_ms;
	struct config *config; /* a reference: conf points into it */
	const struct group_conf *conf;
	struct binary bin; /* pinned */
	struct listener **listeners;
	size_t nlisteners;
	struct slot **slots; /* never shrinks: timers point into slots */
	unsigned nslots;
	unsigned want;	/* slots in use; the others are retired */
	unsigned nlive; /* workers alive */
};

struct rollover_record {
	unsigned generation;
	enum trigger trigger;
	const char *result; /* "running", "ok", "aborted" */
	char reason[256];
	uint64_t started_ms;
	uint64_t duration_ms;
};

/* A group at run time (struct group is taken by <grp.h>). */
struct wgroup {
	struct wgroup *next;
	char *name;
	struct config *config;	       /* the running config */
	const struct group_conf *conf; /* the group in it */
	struct gen *gens;	       /* every generation with live workers */
	struct gen *current;	       /* SERVING */
	struct gen *next_gen;	       /* STARTING, at most one */
	unsigned last_gen;
	unsigned workers;      /* the count new generations get */
	struct binary last_fp; /* fingerprint of the newest attempt (no fd) */
	struct rollover_record last;
	int removed;	     /* gone from the config; freed once drained */
	struct watch *watch; /* watch.c's state */
};

extern struct wgroup *groups;

const char *trigger_name(enum trigger t);
void config_ref(struct config *c);
void config_unref(struct config *c);
/*
 * Make c the running config: open its new listeners (all or nothing),
 * start new groups, drain removed ones and roll every other one over.
 * Returns -1, having changed nothing, if a listener cannot be opened.
 */
int group_apply_config(struct config *c, enum trigger t);
/* Roll g over; bin is a validated binary to pin, or NULL to check now. */
void group_rollover(struct wgroup *g, enum trigger t, const struct binary *bin);
struct wgroup *group_find(const char *name);
#define GROUP_MAX_WORKERS 1024
/* 0, or -1 with err set; refused while a rollover is in flight. */
int group_scale(struct wgroup *g, unsigned n, char *err, size_t errlen);
void group_stop_all(int immediately);
size_t gen_fds(const struct gen *gen, unsigned slot, int *fds, size_t max);
/* Append a slot to gen (a scale-up, or a state being read). */
struct slot *gen_slot_new(struct gen *gen);
void gen_worker_ready(struct worker *w);
void gen_worker_not_ready(struct worker *w);
void gen_worker_exited(struct worker *w, int status);
void group_free_all(void);

/* ---- watch.c ---------------------------------------------------------- */

/* Before any other fd is opened: libinotifytools uses select(). */
void watch_init(void);
/* (Re)compute the watches of every group from its current config. */
void watch_update(void);
void watch_forget(struct wgroup *g);

/* ---- request.c -------------------------------------------------------- */

/*
 * The control protocol's verbs, one line each: the verb, the fewest and
 * the most arguments it takes, and, for a verb that takes the --no-wait
 * option, its usage line (NULL: no option).  control.c carries verb V out
 * in cmd_V(), so adding a verb is one line here and that function.
 * A verb takes at most REQUEST_ARGS_MAX words, --no-wait included.
 */
#define REQUEST_VERBS(X)                                                       \
	X(status, 0, 0, NULL)                                                  \
	X(reload, 0, 1, "reload [GROUP] [--no-wait]")                          \
	X(scale, 2, 2, NULL)                                                   \
	X(stop, 0, 0, NULL)                                                    \
	X(upgrade, 0, 0, NULL)

enum request_verb {
#define REQUEST_VERB_ENUM(name, min, max, usage) VERB_##name,
	REQUEST_VERBS(REQUEST_VERB_ENUM)
#undef REQUEST_VERB_ENUM
};

#define REQUEST_ARGS_MAX 3

struct request {
	enum request_verb verb;
	const char *args[REQUEST_ARGS_MAX]; /* point into the line */
	int nargs;
	int nowait;	/* --no-wait was given */
	char error[96]; /* the answer, after "error: ", to a bad line */
};

/*
 * Parse one request line, without its newline, splitting it in place.
 * 0 with *r filled in, or -1 with r->error set; no I/O, no state.
 */
int request_parse(char *line, struct request *r);

/* ---- control.c -------------------------------------------------------- */

/* Bind the control socket; exits with a clear line if another has it. */
void control_init(const struct config *c);
void control_reconfigure(const struct config *c);
/* g's newest rollover has ended: answer the clients waiting for it. */
void control_rollover_done(const struct wgroup *g);
/* g is being freed: clients still waiting on it are told it is gone. */
void control_forget(const struct wgroup *g);
void control_close(void);
/* The supervisor stops: clients waiting for a rollover are told so. */
void control_stopping(void);
/* Self-upgrade: the socket, and the client that asked for the upgrade. */
void control_save(struct state_out *o);
void control_load(struct state_in *in);
/* Just before the exec: clients that cannot be handed over are told. */
void control_upgrading(void);
/* The upgrade failed (why), before the exec: tell whoever asked. */
void control_upgrade_done(const char *why);

/* ---- sdnotify.c ------------------------------------------------------- */

void sdnotify_init(void);
/* Some rollover began or ended: READY/RELOADING/STATUS as they now are. */
void sdnotify_changed(void);
void sdnotify_begun(void);
void sdnotify_stopping(void);
/* Self-upgrade: the manager's socket and what it was told. */
void sdnotify_save(struct state_out *o);
void sdnotify_load(struct state_in *in);

/* ---- quick.c ---------------------------------------------------------- */

#define QUICK_MAX 64 /* -l and --watch options */

struct quick {
	const char *listen[QUICK_MAX];
	size_t nlisten;
	char *watch_paths[QUICK_MAX];
	size_t nwatch_paths;
	unsigned workers;
	int watch;
	int ready_notify;
	uint64_t ready_ms;
	char **argv; /* the command and its arguments */
	size_t argc;
};

extern int quick_mode;
/* The config of quick mode; exits with status 2 on a bad argument. */
struct config *quick_config(const struct quick *q);
void quick_started(const struct config *c);
void quick_rollover_done(const struct wgroup *g);

/* ---- state.c ---------------------------------------------------------- */

/* The state being written for a self-upgrade, and the fds it hands over. */
struct state_out {
	unsigned char *p;
	size_t len, cap;
	int *fds;
	size_t nfds;
};

/* A state being read; err is the first thing found wrong, if any. */
struct state_in {
	const unsigned char *p;
	size_t len, off;
	const char *err;
	int adopt; /* install what is read (else only check it) */
	int quick;
	int *fds;
	size_t nfds;
};

/* Every group, generation, worker and socket, with running first. */
void state_save(struct state_out *o, struct config *running);
/*
 * Read a state from fd.  Checking (adopt 0) returns NULL, with *err
 * NULL if the state is good.  Adopting installs it and returns the
 * running config (the caller takes a reference); NULL with *err if the
 * state is bad, and then nothing was installed.
 */
struct config *state_load(int fd, int adopt, const char **err);
/* For the other files' own parts of the state, read and written in place. */
void state_put_u64(struct state_out *o, uint64_t v);
void state_put_str(struct state_out *o, const char *s);
void state_put_fd(struct state_out *o, int fd);
uint64_t state_get_u64(struct state_in *in);
uint64_t state_get_max(struct state_in *in, uint64_t max);
char *state_get_str(struct state_in *in); /* malloc'd; NULL is NULL */
void state_get_buf(struct state_in *in, char *buf, size_t size);
int state_get_fd(struct state_in *in);
/* The state is bad (the first reason is kept): reads fail from now on. */
void state_fail(struct state_in *in, const char *what);

/* ---- upgrade.c -------------------------------------------------------- */

void upgrade_init(char **argv);
/* SIGUSR2 or `upgrade`: 0 once begun (it ends in an exec, or in
 * control_upgrade_done()), -1 with err if it cannot begin. */
int upgrade_start(char *err, size_t errlen);
/* Called for each reaped child; 0 if it was not the check run. */
int upgrade_reaped(pid_t pid, int status);
void upgrade_stop(void);
/* The new program: ROLLOVER_STATE_CHECK set, and then not. */
int upgrade_check(int fd);
struct config *upgrade_resume(int fd, char **argv);

/* ---- reaper.c --------------------------------------------------------- */

/* Become a child subreaper, so that what workers abandon stays ours. */
void reaper_init(void);
/* SIGCHLD: reap every child that has exited, workers or not. */
void reaper_reap(void);
/*
 * The workers are gone: 1 if no child is left; otherwise stop the ones
 * left behind (SIGTERM, SIGKILL after grace_ms, or SIGKILL at once) and
 * return 0 until they are gone.
 */
int reaper_done(int immediately, uint64_t grace_ms);
void reaper_free(void);

/* ---- pidfile.c -------------------------------------------------------- */

/* Lock and write the pid file; exits with a clear line if it is held. */
void pidfile_acquire(const char *path);
void pidfile_release(void);

/* ---- main.c ----------------------------------------------------------- */

extern const char *notify_path; /* NOTIFY_SOCKET value for workers */
extern int devnull_fd;
extern int stopping; /* a stop was requested */
void supervisor_check_stopped(void);
void supervisor_stop(int immediately, const char *why);
/* Re-read the config and apply it; -1 (errors to report) if it is bad. */
int supervisor_reload(enum trigger t, void (*report)(const char *line));
const char *supervisor_config_path(void);
struct config *supervisor_config(void);
/* From group.c: a rollover began or ended. */
void supervisor_rollover_event(struct wgroup *g);

#endif
