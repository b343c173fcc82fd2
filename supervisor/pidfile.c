/*
 * pidfile.c - the pid file: written atomically, locked for our lifetime.
 *
 * The lock (flock) is what makes a second instance refuse to start; the
 * file's content is for `kill -HUP $(cat FILE)`.  To write the content
 * atomically it goes into a locked temporary file that is renamed over
 * the path, so a reader never sees an empty or half-written file.  The
 * rename swaps the inode that carries the lock, hence the order:
 *
 *   1. open the current file and lock it, retrying if it was renamed over
 *      meanwhile: we now exclude every other instance;
 *   2. write a temporary file, lock it too, and rename it into place;
 *   3. drop the first lock.  A racing instance that still holds the old
 *      inode will see, after locking it, that the path moved on, retry,
 *      and find the new inode locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollover.h"

static char *pid_path;
static int pid_fd = -1;
static dev_t pid_dev;
static ino_t pid_ino;

static void __attribute__((noreturn)) refuse(const char *path, int fd)
{
	char buf[32] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n > 0)
		buf[strcspn(buf, "\n")] = '\0';
	fatalx(1, "%s: another instance is running%s%s", path,
	       n > 0 ? " as pid " : "", n > 0 ? buf : "");
}

/* Step 1: a lock on the inode that is at `path` right now. */
static int lock_current(const char *path)
{
	for (;;) {
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

		if (fd == -1)
			fatal(1, "%s", path);
		if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
			if (errno == EWOULDBLOCK)
				refuse(path, fd);
			fatal(1, "%s: flock", path);
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return fd;
		close(fd);
	}
}

void pidfile_acquire(const char *path)
{
	char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
	char buf[32];
	int old, fd, n;
	struct stat st;

	old = lock_current(path);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		fatal(1, "%s", tmp);
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (flock(fd, LOCK_EX | LOCK_NB) == -1 ||
	    write(fd, buf, (size_t)n) != n || fstat(fd, &st) == -1 ||
	    rename(tmp, path) == -1) {
		int saved = errno;

		unlink(tmp);
		errno = saved;
		fatal(1, "%s", path);
	}
	close(old);
	free(tmp);
	pid_path = xstrdup(path);
	pid_fd = fd;
	pid_dev = st.st_dev;
	pid_ino = st.st_ino;
}

/* Remove the file only if it is still ours. */
void pidfile_release(void)
{
	struct stat st;

	if (pid_path == NULL)
		return;
	if (stat(pid_path, &st) == 0 && st.st_dev == pid_dev &&
	    st.st_ino == pid_ino)
		unlink(pid_path);
	close(pid_fd);
	free(pid_path);
	pid_path = NULL;
	pid_fd = -1;
}
