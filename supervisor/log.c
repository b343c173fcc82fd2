/*
 * log.c - one line per event on stderr.
 *
 * Each line goes out in a single write(2) so that lines from the
 * supervisor and from workers sharing stderr do not interleave.  Under
 * systemd (JOURNAL_STREAM names our stderr) lines carry a "<N>" priority
 * prefix instead of a timestamp, since journald stamps them itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rollover.h"

static enum log_level log_max = LOG_INFO;
static int log_journal;
static int log_fd = STDERR_FILENO;
static int log_socket;		  /* log_fd is a socket: journald's stream */
static unsigned long log_dropped; /* lines the socket had no room for */

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_words[] = {"error: ", "warning: ", "",
					  "debug: "};
static const int level_prio[] = {3, 4, 6, 7};

/* JOURNAL_STREAM is "DEV:INO" of the stream systemd connected to stderr. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

static int is_socket(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

void log_init(enum log_level level)
{
	log_max = level;
	log_journal = stderr_is_journal();
	log_socket = is_socket(STDERR_FILENO);
}

void log_set_level(enum log_level level)
{
	log_max = level;
}

/*
 * Log to path (appending), or to stderr if path is NULL.  On SIGUSR1 the
 * file is opened again, for log rotation; if that fails the old one is
 * kept.  Workers keep the supervisor's stderr either way.
 */
void log_reopen(const char *path)
{
	int fd = STDERR_FILENO;

	if (path != NULL) {
		fd =
		    open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd == -1) {
			log_warn("log_file %s", path);
			return;
		}
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	log_journal = path == NULL && stderr_is_journal();
	log_socket = is_socket(fd);
}

int log_level_parse(const char *name, enum log_level *level)
{
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static size_t stamp(char *buf, size_t len, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	if (log_journal)
		return (size_t)snprintf(buf, len, "<%d>%s", level_prio[level],
					level_words[level]);
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, len - n, ".%03ld rollover[%d]: %s",
			      ts.tv_nsec / 1000000, (int)getpid(),
			      level_words[level]);
	return n;
}

/*
 * Workers write to the stream the supervisor logs to.  One that floods
 * it must not stall the supervisor: on a socket (journald's stream) a
 * line that finds no room is dropped, never waited for, and the drops
 * are counted in the next line that goes through.  A pipe or a file
 * cannot be written without blocking but by making the stream
 * non-blocking for the workers too, so there a line waits.
 */
static void log_write(const char *line, size_t n)
{
	if (!log_socket) {
		(void)!write(log_fd, line, n);
		return;
	}
	if (log_dropped > 0) {
		char note[96];
		int k = snprintf(note, sizeof(note),
				 "%s%lu log lines dropped: the log stream was "
				 "full\n",
				 log_journal ? "<4>" : "", log_dropped);

		if (send(log_fd, note, (size_t)k,
			 MSG_DONTWAIT | MSG_NOSIGNAL) == -1) {
			log_dropped++;
			return;
		}
		log_dropped = 0;
	}
	if (send(log_fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL) == -1)
		log_dropped++;
}

static void vlog(enum log_level level, int with_errno, const char *fmt,
		 va_list ap) __attribute__((format(printf, 3, 0)));

static void vlog(enum log_level level, int with_errno, const char *fmt,
		 va_list ap)
{
	char line[2048];
	size_t n, room = sizeof(line) - 1;
	int saved = errno;
	int r;

	if (level > log_max)
		return;
	n = stamp(line, room, level);
	if (n >= room)
		n = room - 1;
	r = vsnprintf(line + n, room - n, fmt, ap);
	n = r < 0 ? n : n + (size_t)r;
	if (n >= room)
		n = room - 1;
	if (with_errno)
		n += (size_t)snprintf(line + n, room - n, ": %s",
				      strerror(saved));
	if (n >= room)
		n = room - 1;
	line[n++] = '\n';
	log_write(line, n);
	errno = saved;
}

#define LOG_FN(name, level, with_errno)                                        \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		vlog(level, with_errno, fmt, ap);                              \
		va_end(ap);                                                    \
	}

LOG_FN(log_error, LOG_ERROR, 1)
LOG_FN(log_errorx, LOG_ERROR, 0)
LOG_FN(log_warn, LOG_WARN, 1)
LOG_FN(log_warnx, LOG_WARN, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug, LOG_DEBUG, 0)

/*
 * Start-up failures print "rollover: what: why" with no timestamp: the
 * user is looking at a terminal or at systemctl status, not at a log.
 */
static void vfatal(int with_errno, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void vfatal(int with_errno, const char *fmt, va_list ap)
{
	int saved = errno;

	fputs("rollover: ", stderr);
	vfprintf(stderr, fmt, ap);
	if (with_errno)
		fprintf(stderr, ": %s", strerror(saved));
	fputc('\n', stderr);
}

void fatal(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfatal(1, fmt, ap);
	va_end(ap);
	exit(status);
}

void fatalx(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfatal(0, fmt, ap);
	va_end(ap);
	exit(status);
}
