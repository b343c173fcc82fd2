/*
 * watch.c - rolling a group over when its binary or watched paths change.
 *
 * How a binary gets replaced varies (install, cp then mv, a linker that
 * unlinks first or renames before closing, a symlink swap, a slow copy),
 * and a watch on the file itself follows the old inode after the first
 * replacement.  So the *directory* is watched and events are filtered by
 * name; for a symlink, the target's directory too, recomputed after each
 * check.  No event is taken to mean "complete": any matching event only
 * (re)arms a settle timer, and when it fires the file is opened and
 * checked (binary.c): nobody writing it, a complete ELF or a #! script,
 * and a fingerprint other than the newest generation's.  If it is not
 * ready yet nothing is re-armed: the writer's close, the chmod or the
 * rename that completes it is itself an event.  settle_max bounds how
 * long a stream of events can put the check off.
 *
 * libinotifytools owns the inotify fd and parses the events; rollover
 * drives it from its epoll loop.  The library neither exposes the fd nor
 * offers a non-blocking read of one event (next_event(0) blocks), and its
 * wd-to-name map goes stale when directories move.  So, as measured on
 * Debian 12's 3.22: the fd is located (it is the lowest free fd when the
 * library initialises, which is checked in /proc), made close-on-exec,
 * and watches are added and removed on it directly with our own table;
 * on readiness inotifytools_next_events(0, 1) is called until it returns
 * NULL, because one call reads everything queued into the library's
 * buffer and level-triggered epoll would not fire again for the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inotifytools/inotify.h>
#include <inotifytools/inotifytools.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollover.h"

#define WATCH_MASK                                                             \
	(IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |            \
	 IN_DELETE | IN_ATTRIB | IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF |   \
	 IN_ONLYDIR)
#define WATCH_MAX 8192 /* directories watched, in all */

/*
 * One (directory, name) a group cares about; name NULL: anything in it.
 * An ancestor entry stands in for a path whose directory does not exist
 * yet: it watches the deepest existing ancestor for the next component,
 * and its appearance rebuilds the watches.
 */
struct entry {
	int wd;
	struct wgroup *g;
	char *name;
	int is_command;
	int ancestor;
};

struct watch {
	struct wgroup *g;
	struct timer settle;
	struct timer settle_max;
	int command_changed;
	int path_changed;
};

static int ifd = -1;
static int registered;
static struct entry *entries;
static size_t nentries;
static void watch_read(int fd, uint32_t events, void *arg);

void watch_init(void)
{
	char want[64], got[64] = "";
	int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (probe == -1)
		fatal(1, "/dev/null");
	close(probe);
	if (!inotifytools_initialize())
		fatalx(1, "inotify: %s", strerror(inotifytools_error()));
	snprintf(want, sizeof(want), "/proc/self/fd/%d", probe);
	n = readlink(want, got, sizeof(got) - 1);
	if (n <= 0 || strncmp(got, "anon_inode:inotify", (size_t)n) != 0)
		fatalx(1, "inotify: libinotifytools' fd is not at %d", probe);
	ifd = probe;
	if (fcntl(ifd, F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(ifd, F_SETFL, O_NONBLOCK) == -1)
		fatal(1, "inotify: fcntl");
}

/* Free the old entries, and remove the watches no current entry uses. */
static void entries_drop(struct entry *old, size_t nold)
{
	for (size_t i = 0; i < nold; i++) {
		int kept = 0;

		for (size_t j = 0; j < i; j++)
			kept |= old[j].wd == old[i].wd;
		for (size_t j = 0; j < nentries; j++)
			kept |= entries[j].wd == old[i].wd;
		if (!kept)
			(void)inotify_rm_watch(ifd, old[i].wd);
		free(old[i].name);
	}
	free(old);
}

static int entry_add(const char *dir, const char *name, struct wgroup *g,
		     int is_command, int ancestor)
{
	int wd;

	if (nentries >= WATCH_MAX) {
		errno = ENOSPC;
		return -1;
	}
	wd = inotify_add_watch(ifd, dir, WATCH_MASK);
	if (wd == -1)
		return -1;
	entries = xrealloc(entries, (nentries + 1) * sizeof(*entries));
	entries[nentries].wd = wd;
	entries[nentries].g = g;
	entries[nentries].name = name != NULL ? xstrdup(name) : NULL;
	entries[nentries].is_command = is_command;
	entries[nentries].ancestor = ancestor;
	nentries++;
	return 0;
}

/*
 * Watch the directory of path for the name path has in it; if that
 * directory does not exist, its deepest existing ancestor, for the next
 * component on the way down.
 */
static int watch_file(struct wgroup *g, const char *path, int is_command)
{
	char *copy = xstrdup(path);
	int ancestor = 0, r = -1;
	char *slash;

	errno = EINVAL;
	while ((slash = strrchr(copy, '/')) != NULL && slash[1] != '\0') {
		*slash = '\0';
		r = entry_add(copy[0] != '\0' ? copy : "/", slash + 1, g,
			      is_command, ancestor);
		if (r == 0 || errno != ENOENT)
			break;
		ancestor = 1;
	}
	free(copy);
	return r;
}

static struct wgroup *tree_group;
static int tree_failed;

static int tree_dir(const char *path, const struct stat *st, int type,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_D && entry_add(path, NULL, tree_group, 0, 0) == -1) {
		tree_failed = errno;
		return 1;
	}
	return 0;
}

static int watch_tree(struct wgroup *g, const char *path)
{
	tree_group = g;
	tree_failed = 0;
	if (nftw(path, tree_dir, 16, FTW_PHYS) == -1 && tree_failed == 0)
		tree_failed = errno;
	errno = tree_failed;
	return tree_failed ? -1 : 0;
}

/* The command, and for a symlink the file it points to now. */
static int watch_command(struct wgroup *g)
{
	const char *cmd = g->conf->command;
	char real[PATH_MAX];
	struct stat st;

	if (watch_file(g, cmd, 1) == -1)
		return -1;
	if (lstat(cmd, &st) == 0 && S_ISLNK(st.st_mode) &&
	    realpath(cmd, real) != NULL)
		return watch_file(g, real, 1);
	return 0;
}

static int watch_group(struct wgroup *g)
{
	const struct group_conf *gc = g->conf;
	int failed = 0;

	if (gc->watch && watch_command(g) == -1) {
		log_warn("%s: cannot watch %s", g->name, gc->command);
		failed = 1;
	}
	for (size_t i = 0; i < gc->nwatch_paths; i++) {
		const char *p = gc->watch_paths[i];
		struct stat st;
		int r = stat(p, &st) == 0 && S_ISDIR(st.st_mode)
			    ? watch_tree(g, p)
			    : watch_file(g, p, 0);

		if (r == -1) {
			log_warn("%s: cannot watch %s", g->name, p);
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

static void watch_changed(struct wgroup *g, int is_command);
static void watch_check(void *arg);

static struct watch *watch_state(struct wgroup *g)
{
	if (g->watch == NULL) {
		g->watch = xcalloc(1, sizeof(*g->watch));
		g->watch->g = g;
		timer_init(&g->watch->settle, watch_check, g->watch);
		timer_init(&g->watch->settle_max, watch_check, g->watch);
	}
	return g->watch;
}

/*
 * Rebuild every watch.  Nothing is retried on a timer: a path missing now
 * is covered by an ancestor entry, whose event brings us back here.
 */
void watch_update(void)
{
	struct entry *old = entries;
	size_t nold = nentries;

	if (!registered && ifd >= 0) {
		loop_add(ifd, EPOLLIN, watch_read, NULL);
		registered = 1;
	}
	entries = NULL;
	nentries = 0;
	for (struct wgroup *g = groups; g != NULL; g = g->next) {
		if (g->removed)
			continue;
		if (g->conf->watch || g->conf->nwatch_paths > 0)
			(void)watch_state(g);
		(void)watch_group(g);
	}
	/*
	 * Only now are the old watches removed: adding a directory watched
	 * already gives back its descriptor, so that an event queued on it
	 * before this rebuild (a rename while a reload started workers)
	 * still finds its entry, instead of a new descriptor that it does
	 * not match.
	 */
	entries_drop(old, nold);
}

void watch_forget(struct wgroup *g)
{
	size_t j = 0;

	for (size_t i = 0; i < nentries; i++) {
		int shared = 0;

		if (entries[i].g != g) {
			entries[j++] = entries[i];
			continue;
		}
		for (size_t k = 0; k < nentries; k++)
			shared |=
			    entries[k].g != g && entries[k].wd == entries[i].wd;
		if (!shared)
			(void)inotify_rm_watch(ifd, entries[i].wd);
		free(entries[i].name);
	}
	nentries = j;
	if (g->watch != NULL) {
		timer_cancel(&g->watch->settle);
		timer_cancel(&g->watch->settle_max);
		free(g->watch);
		g->watch = NULL;
	}
}

/* ---- events ---------------------------------------------------------------- */

static void watch_changed(struct wgroup *g, int is_command)
{
	struct watch *w = watch_state(g);

	if (is_command)
		w->command_changed = 1;
	else
		w->path_changed = 1;
	if (!timer_armed(&w->settle_max))
		timer_set(&w->settle_max, g->conf->settle_max_ms);
	timer_set(&w->settle, g->conf->settle_ms);
}

/* Returns 1 if the watches need to be rebuilt. */
static int watch_event(const struct inotify_event *e)
{
	int rebuild = 0;

	if (e->mask & IN_Q_OVERFLOW) {
		log_warnx("inotify: queue overflow; checking every group");
		for (struct wgroup *g = groups; g != NULL; g = g->next) {
			if (g->watch != NULL && !g->removed) {
				watch_changed(g, 1);
				watch_changed(g, 0);
			}
		}
		return 1;
	}
	for (size_t i = 0; i < nentries; i++) {
		const struct entry *en = &entries[i];

		if (en->wd != e->wd)
			continue;
		if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
			/* The directory went: events may have been missed. */
			rebuild = 1;
			watch_changed(en->g, en->is_command);
		} else if (en->name == NULL ||
			   (e->len > 0 && strcmp(e->name, en->name) == 0)) {
			log_debug("%s: %s %s", en->g->name,
				  inotifytools_event_to_str((int)e->mask),
				  e->len > 0 ? e->name : "");
			watch_changed(en->g, en->is_command);
			/* A missing directory appeared, or a subdirectory. */
			if (en->ancestor || (e->mask & IN_ISDIR))
				rebuild = 1;
		}
	}
	return rebuild;
}

static void watch_read(int fd, uint32_t events, void *arg)
{
	struct inotify_event *e;
	int rebuild = 0;

	(void)fd;
	(void)events;
	(void)arg;
	while ((e = inotifytools_next_events(0, 1)) != NULL)
		rebuild |= watch_event(e);
	if (inotifytools_error() != 0 && inotifytools_error() != EAGAIN &&
	    inotifytools_error() != EINTR)
		log_warnx("inotify: %s", strerror(inotifytools_error()));
	if (rebuild)
		watch_update();
}

/*
 * The settle time is over (or settle_max): roll over if the command is
 * runnable and differs from the newest generation's, or if a watched path
 * changed.  If the command is not runnable yet, wait for the next event.
 */
static void watch_check(void *arg)
{
	struct watch *w = arg;
	struct wgroup *g = w->g;
	const char *why;
	struct binary b;
	struct stat st;

	timer_cancel(&w->settle);
	timer_cancel(&w->settle_max);
	/* A symlink may point elsewhere now: watch the new target's dir. */
	if (lstat(g->conf->command, &st) == 0 && S_ISLNK(st.st_mode))
		watch_update();
	if (binary_open(&b, g->conf->command, &why) == -1) {
		if (b.busy)
			log_info("%s: %s: %s; waiting", g->name,
				 g->conf->command, why);
		else
			log_warnx("%s: %s: %s; not rolling over", g->name,
				  g->conf->command, why);
		return;
	}
	if (!w->path_changed && binary_same(&b, &g->last_fp)) {
		log_debug("%s: %s: unchanged", g->name, g->conf->command);
		binary_close(&b);
		w->command_changed = 0;
		return;
	}
	w->command_changed = 0;
	w->path_changed = 0;
	group_rollover(g, TRIGGER_WATCH, &b);
}
