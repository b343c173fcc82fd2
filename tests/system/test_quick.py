"""Quick mode: no config file, the developer's edit-build-reload loop.

A small C server that speaks socket activation by hand (as any program
written for systemd would) is compiled with cc, run under
`rollover -w -l ADDR -- ./myserver`, edited and compiled again: the new
code answers, and a broken build is kept out.
"""
import os
import re
import signal
import subprocess

from conftest import BUILD, ROLLOVER, free_port, http_get, wait_for

SERVER = r'''
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (path == NULL || strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa,
	       sizeof(sa.sun_family) + strlen(path));
	close(fd);
}

int main(void)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: "
				    "3\r\nConnection: close\r\n\r\n" VERSION "\n";
	char buf[4096];

	if (EXIT_AT_START)
		return 1;
	if (getenv("LISTEN_FDS") == NULL)
		return 2;
	notify("READY=1");
	for (;;) {
		int c = accept(3, NULL, NULL);

		if (c < 0)
			continue;
		read(c, buf, sizeof(buf));
		write(c, reply, sizeof(reply) - 1);
		shutdown(c, SHUT_WR);
		while (read(c, buf, sizeof(buf)) > 0)
			;
		close(c);
	}
}
'''


def build(tmp_path, version, exit_at_start=0):
    src = tmp_path / "server.c"
    src.write_text('#define VERSION "%s"\n#define EXIT_AT_START %d\n' %
                   (version, exit_at_start) + SERVER)
    subprocess.run(["cc", "-O0", "-o", str(tmp_path / "myserver"), str(src)],
                   check=True, timeout=60)


class Quick:
    def __init__(self, tmp_path, args):
        self.out = open(str(tmp_path / "quick.out"), "wb")
        self.path = str(tmp_path / "quick.out")
        self.proc = subprocess.Popen([ROLLOVER] + args, cwd=str(tmp_path),
                                     stdout=self.out, stderr=subprocess.STDOUT)

    def text(self):
        return open(self.path).read()

    def wait(self, pattern, timeout=10):
        return wait_for(lambda: re.search(pattern, self.text()), timeout,
                        "%r in:\n%s" % (pattern, self.text()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def test_quick_mode_rebuild_loop(tmp_path):
    port = free_port()
    build(tmp_path, "v1")
    q = Quick(tmp_path, ["-w", "-l", "127.0.0.1:%d" % port, "--", "./myserver"])
    try:
        q.wait(r"ready in \d+ ms \(generation 1\)")
        assert "rollover: %s/myserver on 127.0.0.1:%d" % (tmp_path, port) in q.text()
        ctl = q.wait(r"control: rolloverctl -S (\S+) status").group(1)
        assert http_get(port, "/") == (200, "v1\n")

        build(tmp_path, "v2")  # cc writes the binary: the watch rolls over
        q.wait(r"reloaded in \d+ ms \(generation 2\)")
        wait_for(lambda: http_get(port, "/") == (200, "v2\n"), 5, "v2")

        build(tmp_path, "v3", exit_at_start=1)
        q.wait(r"kept generation 2: new binary exited with status 1")
        assert http_get(port, "/") == (200, "v2\n")

        build(tmp_path, "v4")
        q.wait(r"reloaded in \d+ ms \(generation 4\)")
        wait_for(lambda: http_get(port, "/") == (200, "v4\n"), 5, "v4")

        r = subprocess.run([os.path.join(BUILD, "rolloverctl"), "-S", ctl, "status"],
                           capture_output=True, timeout=10)
        assert r.returncode == 0 and b"generation 4" in r.stdout, r
        # Quick mode is quiet: the rollover lines, not the event log.
        assert "worker" not in q.text(), q.text()
    finally:
        q.stop()
    assert q.proc.returncode == 0


def test_quick_mode_usage_errors(tmp_path):
    build(tmp_path, "v1")
    for args, msg in [
            (["--", "./myserver"], "usage:"),
            (["-l", "127.0.0.1:1"], "usage:"),
            (["-l", "1.2.3:80", "--", "./myserver"], "-l 1.2.3:80: not a numeric"),
            (["-l", "127.0.0.1:1", "-c", "x.conf", "--", "./myserver"], "usage:"),
            (["-l", "127.0.0.1:1", "--", "./nothere"], "nothere: No such file"),
            (["-l", "127.0.0.1:1", "--ready", "soon", "--", "./myserver"], "--ready soon"),
            (["-l", "127.0.0.1:1", "-n", "x", "--", "./myserver"], "-n x"),
    ]:
        r = subprocess.run([ROLLOVER] + args, cwd=str(tmp_path), capture_output=True,
                           timeout=10)
        assert r.returncode == 2, (args, r)
        assert msg in r.stderr.decode(), (args, r.stderr)


def test_quick_mode_sighup_and_ready_seconds(tmp_path):
    port = free_port()
    build(tmp_path, "v1")
    q = Quick(tmp_path, ["-l", "127.0.0.1:%d" % port, "-n", "2", "--ready", "0.2",
                         "--", "./myserver"])
    try:
        q.wait(r"ready in \d+ ms \(generation 1\)")
        q.proc.send_signal(signal.SIGHUP)
        q.wait(r"reloaded in \d+ ms \(generation 2\)")
        assert http_get(port, "/") == (200, "v1\n")
    finally:
        q.stop()
    assert q.proc.returncode == 0
