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
#include <sys/wait.h>
#include <unistd.h>

#include "rollover.h"

#ifndef ROLLOVER_DEFAULT_CONFIG
#define ROLLOVER_DEFAULT_CONFIG "/etc/rollover/rollover.conf"
#endif

const char *notify_path;
int devnull_fd = -1;
int stopping;

static struct config *config;

static const int handled_signals[] = {SIGHUP,  SIGINT,	SIGTERM,
				      SIGQUIT, SIGUSR1, SIGUSR2,
				      SIGTTIN, SIGTTOU, SIGCHLD};

static void __attribute__((noreturn)) usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: rollover [-c FILE]       run the groups in FILE\n"
		"       rollover -t [-c FILE]    check FILE and exit\n"
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

void supervisor_check_stopped(void)
{
	if (stopping && worker_count() == 0)
		loop_exit(0);
}

static void reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (!worker_reaped(pid, status))
			log_debug("reaped process %d", (int)pid);
}

static void begin_stop(int sig, int immediately)
{
	if (stopping && !immediately) {
		log_info("SIG%s: already stopping", signal_name(sig));
		return;
	}
	log_info("SIG%s: stopping %s", signal_name(sig),
		 immediately ? "now" : "gracefully");
	stopping = 1;
	group_stop_all(immediately);
}

static int strings_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* Errors of a config read on SIGHUP go to the log, one line each. */
static void report_reload_error(const char *line)
{
	log_errorx("%s", line);
}

/*
 * SIGHUP: read the config again.  If it is bad, or one of its new
 * listeners cannot be opened, nothing changes; otherwise it replaces the
 * running one and every group rolls over.
 */
static void reload(void)
{
	struct config *c;

	if (stopping) {
		log_info("SIGHUP: stopping; not reloading");
		return;
	}
	log_info("SIGHUP: reloading %s", config->path);
	c = config_load(config->path, report_reload_error);
	if (c == NULL) {
		log_errorx("%s: not reloaded; still running the previous "
			   "configuration",
			   config->path);
		return;
	}
	config_ref(c);
	log_set_level(c->log_level);
	if (group_apply_config(c, TRIGGER_SIGNAL) == -1) {
		log_errorx("%s: not reloaded; still running the previous "
			   "configuration",
			   config->path);
		log_set_level(config->log_level);
		config_unref(c);
		return;
	}
	if (strings_differ(c->pid_file, config->pid_file))
		log_warnx("pid_file: a change takes effect at the next start");
	config_unref(config);
	config = c;
	watch_update();
}

static void on_signal(int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;

	(void)events;
	(void)arg;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int sig = (int)si.ssi_signo;

		switch (sig) {
		case SIGCHLD:
			reap();
			break;
		case SIGTERM:
		case SIGINT:
			begin_stop(sig, 0);
			break;
		case SIGQUIT:
			begin_stop(sig, 1);
			break;
		case SIGHUP:
			reload();
			break;
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
	group_free_all();
	pidfile_release();
	config_unref(config);
	config = NULL;
}

int main(int argc, char **argv)
{
	const char *path = ROLLOVER_DEFAULT_CONFIG;
	int test = 0, ch, status;

	while ((ch = getopt(argc, argv, "c:thV")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
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
	if (optind != argc)
		usage(EXIT_USAGE);

	ensure_std_fds();
	log_init(LOG_INFO);
	if (!test)
		watch_init();
	config = config_load(path, report_config_error);
	if (config == NULL)
		return EXIT_CONFIG;
	config_ref(config);
	if (test) {
		fprintf(stderr, "%s: ok\n", path);
		config_unref(config);
		return 0;
	}
	log_set_level(config->log_level);

	devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull_fd == -1)
		fatal(1, "/dev/null");
	if (config->pid_file != NULL)
		pidfile_acquire(config->pid_file);
	loop_init();
	signals_init();
	notify_path = notify_init();
	log_info("rollover %s running as pid %d with %s", ROLLOVER_VERSION,
		 (int)getpid(), path);
	if (group_apply_config(config, TRIGGER_START) == -1) {
		cleanup();
		return 1;
	}
	watch_update();
	status = loop_run();
	log_info("stopped");
	cleanup();
	return status;
}
