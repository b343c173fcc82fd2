/*
 * notify.c - the NOTIFY_SOCKET every worker reports its readiness to.
 *
 * One datagram socket in the abstract namespace (nothing to clean up on
 * disk), with SO_PASSCRED so that the kernel stamps every message with
 * the sender's pid.  A message counts only for the worker whose pid sent
 * it: a worker cannot declare another one ready, and a stray process
 * cannot at all - unless it has CAP_SYS_ADMIN, as a worker running as
 * root does, with which the kernel lets it claim any pid.  File
 * descriptors sent along are closed unread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include "rollover.h"

#define NOTIFY_MAX 4096

static int notify_fd = -1;
static char notify_name[64];

static void handle_line(struct worker *w, const char *line, size_t len)
{
	if (len == 7 && memcmp(line, "READY=1", 7) == 0)
		worker_ready(w);
	else if (len > 7 && memcmp(line, "STATUS=", 7) == 0)
		log_debug("%s: worker %d: status: %.*s", w->gen->conf->name,
			  (int)w->pid, (int)(len - 7), line + 7);
	else if (len == 10 && memcmp(line, "STOPPING=1", 10) == 0)
		log_debug("%s: worker %d is stopping", w->gen->conf->name,
			  (int)w->pid);
}

/* Returns the sender's pid from SCM_CREDENTIALS; closes passed fds. */
static pid_t scan_cmsgs(struct msghdr *msg)
{
	pid_t pid = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL;
	     c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
			struct ucred cred;

			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			pid = cred.pid;
		} else if (c->cmsg_type == SCM_RIGHTS) {
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < n; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int),
				       sizeof(fd));
				close(fd);
			}
		}
	}
	return pid;
}

static void notify_read(int fd, uint32_t events, void *arg)
{
	char buf[NOTIFY_MAX];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct ucred)) +
			 CMSG_SPACE(sizeof(int) * 16)];
	} cbuf;

	(void)events;
	(void)arg;
	for (;;) {
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = cbuf.buf,
				     .msg_controllen = sizeof(cbuf.buf)};
		struct worker *w;
		ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		pid_t pid;

		if (n == -1) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("notify socket");
			if (errno != EINTR)
				return;
			continue;
		}
		pid = scan_cmsgs(&msg);
		w = pid > 0 ? worker_find(pid) : NULL;
		if (w == NULL || (msg.msg_flags & MSG_TRUNC)) {
			log_debug("notify: ignored %zd bytes from pid %d", n,
				  (int)pid);
			continue;
		}
		for (char *p = buf, *end = buf + n; p < end;) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

			handle_line(w, p, len);
			p += len + 1;
		}
	}
}

const char *notify_init(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	static char path[80];
	unsigned rnd = 0;
	int one = 1;
	socklen_t len;

	notify_fd =
	    socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (notify_fd == -1)
		fatal(1, "notify socket");
	if (setsockopt(notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ==
	    -1)
		fatal(1, "notify socket: SO_PASSCRED");
	(void)!getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
	snprintf(notify_name, sizeof(notify_name), "rollover/%d/%08x/notify",
		 (int)getpid(), rnd);
	memcpy(sa.sun_path + 1, notify_name, strlen(notify_name));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			  strlen(notify_name));
	if (bind(notify_fd, (struct sockaddr *)&sa, len) == -1)
		fatal(1, "notify socket @%s", notify_name);
	loop_add(notify_fd, EPOLLIN, notify_read, NULL);
	snprintf(path, sizeof(path), "@%s", notify_name);
	return path;
}

void notify_save(struct state_out *o)
{
	state_put_fd(o, notify_fd);
	state_put_str(o, notify_name);
}

/* Workers started before the upgrade keep sending to the same socket. */
void notify_load(struct state_in *in)
{
	static char path[80];
	int fd = state_get_fd(in);

	state_get_buf(in, notify_name, sizeof(notify_name));
	if (!in->adopt || in->err != NULL)
		return;
	notify_fd = fd;
	loop_add(notify_fd, EPOLLIN, notify_read, NULL);
	snprintf(path, sizeof(path), "@%s", notify_name);
	notify_path = path;
}
