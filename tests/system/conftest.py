"""Shared helpers for the system tests: they start the real binaries.

Every test gets its own directory, config and free port on 127.0.0.1,
bounds every wait in time, and kills what it started by pid.
"""
import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ROLLOVER_BUILD", os.path.join(ROOT, "build"))
ROLLOVER = os.path.join(BUILD, "rollover")
HELLO = os.path.join(BUILD, "rollover-hello")
ROLLOVERCTL = os.path.join(BUILD, "rolloverctl")
TESTWORKER = os.path.join(ROOT, "tests", "system", "testworker.py")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False  # gone, possibly between open and read


def wait_gone(pids, timeout=10.0):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout,
             "pids %s to exit" % sorted(pids))


def children(pid, zombies=False):
    """Direct children of pid (from /proc/*/stat): the live ones, or with
    zombies=True the ones that exited and are not reaped yet."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and (fields[0] == "Z") == zombies:
            out.append(int(d))
    return sorted(out)


def http_get(port, path="/", host="127.0.0.1", timeout=5.0, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def recv_all(sock):
    """Read a stream socket to end of file; a reset ends it too (a daemon
    that refuses a client may close before reading its request)."""
    out = b""
    while True:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    return out


def control(sock_path, line, timeout=10.0):
    """One request on the control socket, read to the end: the reply's
    lines, the last of which is "ok" or "error: ..."."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout)
    try:
        c.connect(sock_path)
        c.sendall(line.encode() + b"\n")
        out = recv_all(c).decode()
    finally:
        c.close()
    return out.splitlines()


def ctl(*args, sock=None, conf=None, timeout=20.0, prefix=()):
    """Run rolloverctl; returns the CompletedProcess (text)."""
    cmd = list(prefix) + [ROLLOVERCTL]
    if sock is not None:
        cmd += ["-S", sock]
    if conf is not None:
        cmd += ["-c", conf]
    cmd += list(args)
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout,
                          universal_newlines=True)


def wrk_errors(out):
    """(socket errors, non-2xx responses) from wrk's report."""
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return socket_errors, int(m.group(1)) if m else 0


class WrkLoad:
    """wrk keeps `conns` connections busy on port while the with-block
    runs; then it is interrupted (it prints its totals on SIGINT) and
    .out holds its report.  -d only bounds it if the test goes wrong."""

    def __init__(self, port, conns=64, close=False, settle=1.0):
        self.cmd = ["wrk", "-t2", "-c%d" % conns, "-d120s", "--timeout", "5s",
                    "http://127.0.0.1:%d/" % port]
        if close:
            self.cmd[1:1] = ["-H", "Connection: close"]
        self.settle = settle
        self.out = ""

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        time.sleep(self.settle)  # let wrk open its connections first
        return self

    def __exit__(self, *exc):
        try:
            self.proc.send_signal(signal.SIGINT)
            self.out = self.proc.communicate(timeout=30)[0].decode()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return False

    def requests(self):
        m = re.search(r"(\d+) requests in", self.out)
        assert m, self.out
        return int(m.group(1))

    def assert_clean(self, min_requests):
        """At least min_requests, no socket error and no non-2xx."""
        assert self.requests() >= min_requests, self.out
        assert wrk_errors(self.out) == (0, 0), self.out


def conf_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def group_conf(**kw):
    """libconfig text for one group; lists become arrays."""
    lines = []
    for k, v in kw.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, str):
            v = conf_str(v)
        elif isinstance(v, (list, tuple)):
            v = "[ " + ", ".join(conf_str(x) for x in v) + " ]"
        elif isinstance(v, dict):
            v = "{ " + " ".join("%s = %s;" % (a, conf_str(b)) for a, b in v.items()) + " }"
        lines.append("    %s = %s;" % (k, v))
    return "  {\n" + "\n".join(lines) + "\n  }"


def write_conf(path, groups, **top):
    """A config file at path; its control socket goes beside it unless
    given, so that tests never share the default one."""
    top.setdefault("control", os.path.join(os.path.dirname(path), "control.sock"))
    text = ""
    for k, v in top.items():
        text += "%s = %s;\n" % (k, conf_str(v) if isinstance(v, str) else v)
    text += "groups = (\n" + ",\n".join(groups) + "\n);\n"
    with open(path, "w") as f:
        f.write(text)
    return path


class Supervisor:
    """A running `rollover -c CONF` (or argv, which execs it), its log,
    and what it started."""

    def __init__(self, conf, workdir, argv=None, logname="rollover.log"):
        self.conf = conf
        self.logpath = os.path.join(workdir, logname)
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            argv or [ROLLOVER, "-c", conf], stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=subprocess.STDOUT, cwd=workdir)
        self.pid = self.proc.pid
        self.seen = set()

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def count(self, pattern):
        return len(re.findall(pattern, self.log()))

    def wait_log(self, pattern, n=1, timeout=10.0):
        return wait_for(lambda: self.count(pattern) >= n, timeout,
                        "%d x %r in log:\n%s" % (n, pattern, self.log()[-3000:]))

    def workers(self):
        ws = children(self.pid)
        self.seen.update(ws)
        return ws

    def wait_workers(self, n, timeout=10.0):
        return wait_for(lambda: (lambda w: w if len(w) == n else None)(self.workers()),
                        timeout, "%d workers" % n)

    def ready_pids(self):
        return [int(p) for p in re.findall(r"worker (\d+) \(slot \d+, generation \d+\) ready", self.log())]

    def wait_ready(self, n, timeout=10.0):
        self.wait_log(r"\) ready after", n, timeout)
        return self.ready_pids()

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def kill_all(self):
        if self.proc.poll() is None:
            self.workers()
            self.proc.kill()
            self.proc.wait(timeout=10)
        for p in self.seen:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.logf.close()


@pytest.fixture
def supervisor(tmp_path):
    """Factory: supervisor(groups, **top) starts rollover on a config."""
    started = []

    def start(groups, conf_name="rollover.conf", **top):
        conf = write_conf(str(tmp_path / conf_name), groups, **top)
        s = Supervisor(conf, str(tmp_path))
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill_all()
    for s in started:
        assert_no_sanitizer_report(s.log())


def assert_no_sanitizer_report(log):
    """Under `make check-asan` the binaries report memory errors, leaks and
    undefined behaviour in the log.  A SEGV is not one of them: the test
    workers that crash on purpose are built with the sanitizers too."""
    reports = [m for m in re.findall(r"ERROR: (\w+Sanitizer): ([\w-]+)", log)
               if m[1] != "SEGV"]
    assert not reports and "runtime error:" not in log, log[-4000:]
