/*
 * main.c - rollover: command line, start-up, signals, shutdown.
 *
 * Start-up allocates and opens everything the supervisor needs (config,
 * pid file, notify socket, listeners) and fails with one line and a
 * documented exit status if it cannot.  From the first worker on, the
 * supervisor must not die: failures are logged and retried instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rollover.h"

#ifndef ROLLOVER_DEFAULT_CONFIG
#define ROLLOVER_DEFAULT_CONFIG "/etc/rollover/rollover.conf"
#endif

const char *notify_path;
int devnull_fd = -1;
int stopping;
static int stopping_now;

static struct config *config;

static const int handled_signals[] = {SIGHUP,  SIGINT,	SIGTERM,
				      SIGQUIT, SIGUSR1, SIGUSR2,
				      SIGTTIN, SIGTTOU, SIGCHLD};

static void __attribute__((noreturn)) usage(int status)
{
	fprintf(
	    status ? stderr : stdout,
	    "usage: rollover [-c FILE]       run the groups in FILE\n"
	    "       rollover -t [-c FILE]    check FILE and exit\n"
	    "       rollover -l ADDR [-l ADDR]... [-n N] [-w] [--watch PATH]..."
	    "\n"
	    "                [--ready notify|SECONDS] -- COMMAND [ARG]...\n"
	    "                                 quick mode: one group, no "
	    "config file\n"
	    "       rollover -V | -h\n"
	    "The default FILE is %s.\n",
	    ROLLOVER_DEFAULT_CONFIG);
	exit(status);
}

static void report_config_error(const char *line)
{
	fprintf(stderr, "%s\n", line);
}

/* So that no fd we open lands on 0, 1 or 2 if we were started without. */
static void ensure_std_fds(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

/* What workers left behind gets as long to stop as workers had. */
static uint64_t longest_stop_timeout(void)
{
	uint64_t ms = 0;

	for (size_t i = 0; i < config->ngroups; i++)
		if (config->groups[i].stop_timeout_ms > ms)
			ms = config->groups[i].stop_timeout_ms;
	return ms;
}

/* Exit once the workers, and whatever they left behind, are gone. */
void supervisor_check_stopped(void)
{
	if (stopping && worker_count() == 0 &&
	    reaper_done(stopping_now, longest_stop_timeout()))
		loop_exit(0);
}

void supervisor_stop(int immediately, const char *why)
{
	if (stopping && !immediately) {
		log_info("%s: already stopping", why);
		return;
	}
	log_info("%s: stopping %s", why, immediately ? "now" : "gracefully");
	if (!stopping) {
		sdnotify_stopping();
		control_stopping();
	}
	stopping = 1;
	stopping_now |= immediately;
	upgrade_stop();
	group_stop_all(immediately);
}

struct config *supervisor_config(void)
{
	return config;
}

const char *supervisor_config_path(void)
{
	return config->path != NULL ? config->path : "the command line";
}

void supervisor_rollover_event(struct wgroup *g)
{
	quick_rollover_done(g);
	if (g->last.result != NULL && strcmp(g->last.result, "running") == 0)
		sdnotify_begun();
	control_rollover_done(g);
	sdnotify_changed();
}

static int strings_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/*
 * Read the config again.  If it is bad, or one of its new listeners
 * cannot be opened, nothing changes; otherwise it replaces the running
 * one and every group rolls over.
 */
int supervisor_reload(enum trigger t, void (*report)(const char *line))
{
	struct config *c;

	if (stopping)
		return -1;
	if (quick_mode) {
		/* No file to read again: roll over with the same settings. */
		for (struct wgroup *g = groups; g != NULL; g = g->next)
			group_rollover(g, t, NULL);
		return 0;
	}
	log_info("%s: reloading %s", t == TRIGGER_SIGNAL ? "SIGHUP" : "control",
		 config->path);
	c = config_load(config->path, report);
	if (c == NULL) {
		log_errorx("%s: not reloaded; still running the previous "
			   "configuration",
			   config->path);
		return -1;
	}
	config_ref(c);
	log_set_level(c->log_level);
	if (group_apply_config(c, t) == -1) {
		log_errorx("%s: not reloaded; still running the previous "
			   "configuration",
			   config->path);
		log_set_level(config->log_level);
		config_unref(c);
		return -1;
	}
	if (strings_differ(c->pid_file, config->pid_file))
		log_warnx("pid_file: a change takes effect at the next start");
	if (strings_differ(c->log_file, config->log_file))
		log_reopen(c->log_file);
	control_reconfigure(c);
	config_unref(config);
	config = c;
	watch_update();
	return 0;
}

/* Errors of a config read on SIGHUP go to the log, one line each. */
static void report_reload_error(const char *line)
{
	log_errorx("%s", line);
}

/* TTIN and TTOU: one worker more or fewer in every group. */
static void scale_all(int delta)
{
	for (struct wgroup *g = groups; g != NULL; g = g->next) {
		char err[256];

		if (g->removed || (delta < 0 && g->workers <= 1))
			continue;
		if (group_scale(g, g->workers + (unsigned)delta, err,
				sizeof(err)) == -1)
			log_warnx("%s", err);
	}
}

static void on_signal(int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;

	(void)events;
	(void)arg;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int sig = (int)si.ssi_signo;
		char name[16];

		snprintf(name, sizeof(name), "SIG%s", signal_name(sig));
		switch (sig) {
		case SIGCHLD:
			reaper_reap();
			supervisor_check_stopped();
			break;
		case SIGTERM:
		case SIGINT:
			supervisor_stop(0, name);
			break;
		case SIGQUIT:
			supervisor_stop(1, name);
			break;
		case SIGHUP:
			if (stopping)
				log_info("SIGHUP: stopping; not reloading");
			else
				(void)supervisor_reload(TRIGGER_SIGNAL,
							report_reload_error);
			break;
		case SIGTTIN:
			scale_all(1);
			break;
		case SIGTTOU:
			scale_all(-1);
			break;
		case SIGUSR1:
			log_info("SIGUSR1: reopening the log");
			log_reopen(config->log_file);
			break;
		case SIGUSR2: {
			char err[512];

			log_info("SIGUSR2: upgrading rollover in place");
			(void)upgrade_start(err, sizeof(err));
			break;
		}
		default:
			log_warnx("SIG%s: not supported yet; ignored",
				  signal_name(sig));
			break;
		}
	}
}

/*
 * Signals arrive through a signalfd, never through handlers: they are
 * blocked here, and spawn.c unblocks them in each child before exec.
 */
static void signals_init(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_LEN(handled_signals); i++)
		sigaddset(&set, handled_signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal(1, "sigprocmask");
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd == -1)
		fatal(1, "signalfd");
	loop_add(fd, EPOLLIN, on_signal, NULL);
	/* Workers that have gone write to a closed pipe; that is not fatal. */
	signal(SIGPIPE, SIG_IGN);
}

static void cleanup(void)
{
	control_close();
	group_free_all();
	reaper_free();
	pidfile_release();
	config_unref(config);
	config = NULL;
}

/* What every start needs, fresh or after an upgrade. */
static void process_init(char **argv)
{
	devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull_fd == -1)
		fatal(1, "/dev/null");
	loop_init();
	signals_init();
	reaper_init();
	upgrade_init(argv);
}

static int run(void)
{
	int status;

	watch_update();
	status = loop_run();
	log_info("stopped");
	cleanup();
	return status;
}

/*
 * After the exec of a self-upgrade (SIGUSR2): the state handed over
 * replaces the config file and the start-up; the workers run on.
 */
static int resume(int fd, char **argv)
{
	sdnotify_init();
	watch_init();
	process_init(argv);
	config = upgrade_resume(fd, argv);
	config_ref(config);
	log_set_level(config->log_level);
	if (config->pid_file != NULL)
		pidfile_acquire(config->pid_file);
	log_reopen(config->log_file);
	log_info("rollover %s running as pid %d, upgraded in place",
		 ROLLOVER_VERSION, (int)getpid());
	reaper_reap(); /* workers that exited during the exec */
	sdnotify_changed();
	return run();
}

static uint64_t parse_count(const char *opt, const char *v, uint64_t max)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno != 0 || n > max)
		fatalx(EXIT_USAGE, "%s %s: not a number from 0 to %llu", opt, v,
		       (unsigned long long)max);
	return n;
}

/* --ready notify, or a number of seconds (with decimals). */
static void parse_ready(struct quick *q, const char *v)
{
	char *end;
	double s;

	if (strcmp(v, "notify") == 0) {
		q->ready_notify = 1;
		return;
	}
	errno = 0;
	s = strtod(v, &end);
	if (*v == '\0' || *end != '\0' || errno != 0 || s < 0 || s > 3600)
		fatalx(EXIT_USAGE,
		       "--ready %s: \"notify\" or seconds from 0 to 3600", v);
	q->ready_notify = 0;
	q->ready_ms = (uint64_t)(s * 1000 + 0.5);
}

static void add_arg(const char **v, size_t *n, const char *opt, const char *a)
{
	if (*n == QUICK_MAX)
		fatalx(EXIT_USAGE, "too many %s options", opt);
	v[(*n)++] = a;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"workers", required_argument, NULL, 'n'},
	    {"watch", required_argument, NULL, 'W'},
	    {"ready", required_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = ROLLOVER_DEFAULT_CONFIG;
	const char *state = getenv("ROLLOVER_STATE_FD");
	struct quick q = {.workers = 1, .ready_notify = 1};
	int test = 0, quick = 0, given_c = 0, ch;

	while ((ch = getopt_long(argc, argv, "+c:tl:n:whV", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			given_c = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'l':
			add_arg(q.listen, &q.nlisten, "-l", optarg);
			quick = 1;
			break;
		case 'n':
			q.workers = (unsigned)parse_count("-n", optarg,
							  GROUP_MAX_WORKERS);
			if (q.workers == 0)
				q.workers =
				    (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
			quick = 1;
			break;
		case 'w':
			q.watch = 1;
			quick = 1;
			break;
		case 'W':
			add_arg((const char **)q.watch_paths, &q.nwatch_paths,
				"--watch", optarg);
			quick = 1;
			break;
		case 'R':
			parse_ready(&q, optarg);
			quick = 1;
			break;
		case 'V':
			printf("rollover %s\n", ROLLOVER_VERSION);
			return 0;
		case 'h':
			usage(0);
		default:
			usage(EXIT_USAGE);
		}
	}
	if (optind < argc)
		quick = 1;
	if (quick && (given_c || test || q.nlisten == 0 || optind == argc))
		usage(EXIT_USAGE);
	q.argv = argv + optind;
	q.argc = (size_t)(argc - optind);

	if (state != NULL && getenv("ROLLOVER_STATE_CHECK") != NULL)
		return upgrade_check(atoi(state));
	ensure_std_fds();
	log_init(LOG_INFO);
	if (state != NULL)
		return resume(atoi(state), argv);
	if (!test) {
		listener_take_activated();
		sdnotify_init();
		watch_init();
	}
	config =
	    quick ? quick_config(&q) : config_load(path, report_config_error);
	if (config == NULL)
		return EXIT_CONFIG;
	config_ref(config);
	if (test) {
		fprintf(stderr, "%s: ok\n", path);
		config_unref(config);
		return 0;
	}
	log_set_level(config->log_level);
	process_init(argv);
	if (config->pid_file != NULL)
		pidfile_acquire(config->pid_file);
	control_init(config);
	notify_path = notify_init();
	log_info("rollover %s running as pid %d with %s", ROLLOVER_VERSION,
		 (int)getpid(), quick ? "the command line" : path);
	if (quick)
		quick_started(config);
	listener_adopt(config);
	if (group_apply_config(config, TRIGGER_START) == -1) {
		cleanup();
		return 1;
	}
	/* Only now: a failure to start is said on stderr, where it is seen. */
	log_reopen(config->log_file);
	return run();
}
