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

#define ROLLOVER_VERSION "0.1.0"

/* Exit statuses, as the design card fixes them. */
#define EXIT_USAGE 2
#define EXIT_CONFIG 78 /* EX_CONFIG */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- log.c ------------------------------------------------------------ */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(enum log_level level);
void log_set_level(enum log_level level);
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
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ms(void); /* CLOCK_MONOTONIC */
const char *signal_name(int sig); /* "TERM"; "SIG42" for unknown ones */
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

struct group_conf {
	struct origin at;
	char *name;
	char *command;     /* absolute path (relative ones resolved) */
	char **args;       /* NULL-terminated; args[0] is the first argument */
	size_t nargs;
	char **env;        /* NULL-terminated "KEY=VALUE" */
	size_t nenv;
	char *directory;   /* NULL: the supervisor's working directory */
	char *user;        /* NULL: no privilege drop */
	char *group;       /* NULL: the user's primary group */
	uid_t uid;         /* resolved when user is set */
	gid_t gid;         /* resolved when user or group is set */
	gid_t *supplementary; /* the user's groups (getgrouplist) */
	size_t nsupplementary;
	unsigned workers;  /* resolved: never 0 */
	struct addr *listen;
	struct origin *listen_at;
	size_t nlisten;
	int backlog;       /* 0: the kernel's somaxconn */
	enum listen_mode listen_mode;
	int ready_notify;  /* 1: wait for READY=1; 0: ready after ready_ms */
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
	char *path;        /* as given on the command line */
	char *control;     /* NULL: the default place */
	char *pid_file;    /* NULL: none */
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
	const char *path;      /* execve(path), unless exec_fd >= 0 */
	int exec_fd;           /* execveat(exec_fd, "", AT_EMPTY_PATH) */
	char *const *argv;
	char *const *envp;
	char *pid_digits;      /* filled with the child's pid, or NULL */
	const int *fds;        /* become fds 3, 4, ... in the child */
	size_t nfds;
	int devnull;           /* becomes stdin */
	const char *directory; /* NULL: stay */
	int drop_privileges;
	uid_t uid;             /* (uid_t)-1: keep */
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
};

/*
 * Fork and exec.  Returns the pid once the exec has succeeded, or -1
 * with *what naming the step that failed ("exec", "chdir", ...) and
 * *err its errno; a child that failed has already been reaped.
 */
pid_t spawn_process(const struct spawn *sp, const char **what, int *err);

/* ---- listener.c ------------------------------------------------------- */

struct listener {
	struct listener *next;
	struct addr addr;
	int slot;       /* -1: shared by every worker; else a worker slot */
	int fd;
	int mark;       /* reload bookkeeping */
};

/* Open or reuse the socket for (addr, slot); NULL after logging why. */
struct listener *listener_get(const struct addr *a, int slot, int backlog);
void listener_close_all(void);

/* ---- notify.c --------------------------------------------------------- */

/* Bind the NOTIFY_SOCKET; returns its address as workers should see it. */
const char *notify_init(void);

/* ---- worker.c --------------------------------------------------------- */

/*
 * A worker's life, the one state machine of this program:
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
	struct timer timer;
};

struct worker *worker_start(struct gen *g, unsigned slot);
void worker_ready(struct worker *w);
void worker_stop(struct worker *w);
void worker_kill(struct worker *w);
struct worker *worker_find(pid_t pid);
struct worker *worker_first(void);
/* Called for each reaped child; returns 0 if the pid was not a worker. */
int worker_reaped(pid_t pid, int status);
unsigned worker_count(void);
const char *worker_state_name(enum worker_state s);

/* ---- group.c ---------------------------------------------------------- */

/* One slot of a generation: which worker runs there, and its backoff. */
struct slot {
	struct gen *gen;
	unsigned index;
	struct worker *worker;
	unsigned restarts;
	uint64_t backoff_ms;
	struct timer restart;
};

struct gen {
	struct wgroup *group;
	unsigned number;
	const struct group_conf *conf;
	struct slot *slots;
	unsigned nslots;
};

/* A group at run time (struct group is taken by <grp.h>). */
struct wgroup {
	struct wgroup *next;
	const struct group_conf *conf;
	struct listener **listeners;
	size_t nlisteners;
	struct gen *current;
	unsigned last_gen;
};

extern struct wgroup *groups;

int group_create_all(const struct config *c);
void group_start_all(void);
void group_stop_all(int immediately);
/* The fds a worker in `slot` of group g gets, in config order. */
size_t group_fds(const struct wgroup *g, unsigned slot, int *fds, size_t max);
void gen_worker_ready(struct worker *w);
void gen_worker_exited(struct worker *w, int status);
void group_free_all(void);

/* ---- pidfile.c -------------------------------------------------------- */

/* Lock and write the pid file; exits with a clear line if it is held. */
void pidfile_acquire(const char *path);
void pidfile_release(void);

/* ---- main.c ----------------------------------------------------------- */

extern const char *notify_path; /* NOTIFY_SOCKET value for workers */
extern int devnull_fd;
extern int stopping;            /* a stop was requested */
void supervisor_check_stopped(void);

#endif
