"""Hostile workers: one that closes its listeners, one that leaves a daemon
behind, one that sends garbage and forgeries to NOTIFY_SOCKET, one that
floods stdout and stderr.  None of them may reach the supervisor or the
other groups: the supervisor still answers `status`, keeps the same
number of fds, and the other group's workers stay the same and serve.

The workers are build/tests/hostile-MODE (tests/workers/hostile.c).
Every test runs its own supervisor on free ports, bounds its waits, and
kills what it started.
"""
import errno
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BUILD, HELLO, ROLLOVER, Supervisor, control, assert_no_sanitizer_report,
                      children, free_port, group_conf, http_get, pid_alive,
                      recv_all, wait_for, write_conf)

TESTS = os.path.join(BUILD, "tests")
HOSTILE_CLOSE = os.path.join(TESTS, "hostile-close")
HOSTILE_DAEMON = os.path.join(TESTS, "hostile-daemon")
HOSTILE_NOTIFY = os.path.join(TESTS, "hostile-notify")
HOSTILE_FLOOD = os.path.join(TESTS, "hostile-flood")
BAD_NOREADY = os.path.join(TESTS, "bad-noready")


# ---- helpers -------------------------------------------------------------


def status(s):
    lines = control(os.path.join(os.path.dirname(s.conf), "control.sock"), "status")
    assert lines[-1] == "ok", lines
    st = json.loads(lines[0])
    assert st["pid"] == s.pid
    return st


def group_of(st, name):
    (g,) = [g for g in st["groups"] if g["name"] == name]
    return g


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def other_group(port, **kw):
    """The bystander: two hello workers that must not notice anything."""
    return group_conf(name="other", command=HELLO, workers=2,
                      listen=["127.0.0.1:%d" % port], **kw)


class Bystander:
    """What the supervisor and the other group look like before the
    hostile worker does its worst, to compare with afterwards."""

    def __init__(self, s, port):
        self.s, self.port = s, port
        self.fds = fd_count(s.pid)
        self.workers = self.other_workers()
        assert len(self.workers) == 2 and all(
            w["state"] == "ready" for w in self.workers.values()), self.workers

    def other_workers(self):
        return {w["pid"]: w for w in group_of(status(self.s), "other")["workers"]}

    def check(self):
        assert self.s.proc.poll() is None, self.s.log()[-3000:]
        now = self.other_workers()
        assert sorted(now) == sorted(self.workers), (now, self.workers)
        assert all(w["state"] == "ready" and w["restarts"] == 0 for w in now.values())
        for _ in range(10):
            st, body = http_get(self.port, "/pid")
            assert st == 200 and json.loads(body)["pid"] in self.workers
        wait_for(lambda: fd_count(self.s.pid) == self.fds, 5,
                 "the supervisor's fds back to %d (now %d)"
                 % (self.fds, fd_count(self.s.pid)))


def read_pid(path):
    def get():
        try:
            with open(path) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None
    return wait_for(get, what=path)


def processes_naming(text):
    """Pids of live processes whose command line holds text."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if text.encode() in cmd and pid_alive(int(d)):
            out.append(int(d))
    return out


def worker_pids(s, group):
    return [int(p) for p in re.findall(r"%s: worker (\d+) \(slot \d+, generation \d+\) "
                                       r"started" % group, s.log())]


def others_ready(s):
    s.wait_log(r"other: worker \d+ \(slot \d, generation 1\) ready after", 2)


def go(s, group):
    """The hostile worker of group waits for SIGUSR1, so that the test can
    see the supervisor as it was before; returns its pid."""
    s.wait_log(r"%s: worker \d+ \(slot 0, generation 1\) started" % group)
    (pid,) = worker_pids(s, group)
    os.kill(pid, signal.SIGUSR1)
    return pid


# ---- a worker that closes its listeners -------------------------------------


def listen_inodes(port):
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    out.add(fields[9])
    return out


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            out.add(target[len("socket:["):-1])
    return out


def test_worker_that_closes_its_listeners(supervisor):
    """Slot 0 closes the shared listener; the socket stays open in the
    supervisor and in slots 1 and 2, so every connection, even many at
    once, queues there and is served by them."""
    port, oport = free_port(), free_port()
    s = supervisor([group_conf(name="web", command=HOSTILE_CLOSE, args=[HELLO],
                               workers=3, listen=["127.0.0.1:%d" % port]),
                    other_group(oport)])
    s.wait_ready(5)
    by = Bystander(s, oport)
    web = {w["slot"]: w["pid"] for w in group_of(status(s), "web")["workers"]}
    closer = web[0]
    inodes = listen_inodes(port)
    assert len(inodes) == 1
    wait_for(lambda: not socket_inodes(closer), 5, "slot 0 to hold no socket")
    assert inodes <= socket_inodes(s.pid)

    served = set()
    for _ in range(50):
        st, body = http_get(port, "/pid")
        assert st == 200
        served.add(json.loads(body)["pid"])
    assert served <= {web[1], web[2]}, served
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(64)]
    try:
        for c in conns:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for c in conns:
            assert recv_all(c).startswith(b"HTTP/1.1 200 "), "a connection was lost"
    finally:
        for c in conns:
            c.close()
    assert pid_alive(closer) and inodes <= socket_inodes(s.pid)
    by.check()


# ---- a worker that leaves a daemon behind ------------------------------------


def test_daemon_left_by_an_exiting_worker_is_adopted_and_reaped(supervisor, tmp_path):
    """The daemon escapes the worker's process group and session, and the
    worker exits: the supervisor, a child subreaper, adopts the daemon
    and reaps it when it exits; the other group sees nothing."""
    oport = free_port()
    pidfile = str(tmp_path / "daemon.pid")
    s = supervisor([group_conf(name="leaver", command=HOSTILE_DAEMON,
                               args=[pidfile, "exit"], ready_timeout=60,
                               stop_timeout=2),
                    other_group(oport)])
    others_ready(s)
    by = Bystander(s, oport)
    first = go(s, "leaver")
    daemon = read_pid(pidfile)
    s.wait_log(r"leaver: worker %d .* exited with status 0" % first)
    s.wait_log(r"leaver: worker \d+ \(slot 0, generation 1\) ready after")
    fields = stat_fields(daemon)
    assert int(fields[1]) == s.pid, "the daemon was not adopted by the supervisor"
    # Out of the worker's process group and session: a session of its own.
    assert fields[2] == fields[3] and int(fields[2]) not in (first, s.pid)
    by.check()

    os.kill(daemon, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % daemon), 10,
             "the daemon to be reaped (not left a zombie)")
    assert daemon not in children(s.pid)
    by.check()
    leaver = group_of(status(s), "leaver")["workers"]
    assert len(leaver) == 1 and leaver[0]["state"] == "ready"


def test_no_process_left_after_stop_even_a_daemon_ignoring_term(supervisor, tmp_path):
    """A worker that stays, with a daemon that ignores SIGTERM: after a
    graceful stop of the supervisor, nothing it ever started is left.
    (What is left behind gets the longest stop_timeout to go.)"""
    oport = free_port()
    pidfile = str(tmp_path / "daemon.pid")
    s = supervisor([group_conf(name="leaver", command=HOSTILE_DAEMON,
                               args=[pidfile, "stay", "ignore-term"],
                               ready_timeout=60, stop_timeout=1),
                    other_group(oport, stop_timeout=1)])
    others_ready(s)
    by = Bystander(s, oport)
    go(s, "leaver")
    daemon = read_pid(pidfile)
    s.wait_ready(3)
    assert int(stat_fields(daemon)[1]) == s.pid
    by.check()
    assert sorted(set(processes_naming(str(tmp_path))) - {s.pid}) == sorted(
        worker_pids(s, "leaver") + [daemon])

    s.signal(signal.SIGTERM)
    assert s.wait_exit(30) == 0
    wait_for(lambda: not processes_naming(str(tmp_path)), 5,
             "every process of the test to be gone")
    assert not pid_alive(daemon)
    for p in worker_pids(s, "leaver") + worker_pids(s, "other"):
        assert not pid_alive(p)


# ---- a worker that writes garbage to NOTIFY_SOCKET -------------------------


def reported(s, what):
    """hostile-notify's own lines in the log: what it sent, and how it went."""
    return re.findall(r"^hostile-notify: %s (.*)$" % what, s.log(), re.M)


def test_notify_garbage_and_forgeries_make_no_one_else_ready(supervisor):
    """Random datagrams, fds, READY=1 from a child and READY=1 with the
    credentials of each sibling and of the supervisor, then a storm of
    garbage: the victim that never said READY=1 stays starting, only the
    hostile worker's own READY=1 counts, and the supervisor keeps
    answering and closes every fd it was sent.

    The pid comes from SCM_CREDENTIALS, which the kernel lets a process
    forge only with CAP_SYS_ADMIN: a worker running as root could claim
    any pid, so this one runs as nobody, as a distrusted worker should."""
    if os.geteuid() != 0:
        pytest.skip("running a worker as another user needs root")
    oport = free_port()
    s = supervisor([
        group_conf(name="victim", command=BAD_NOREADY, ready_timeout=600),
        other_group(oport),
        group_conf(name="hostile", command=HOSTILE_NOTIFY, args=["3"], user="nobody",
                   ready_timeout=60),
    ])
    others_ready(s)
    by = Bystander(s, oport)
    (victim,) = worker_pids(s, "victim")
    hostile = go(s, "hostile")
    # Its messages arrive in the order sent: the last is its own READY=1.
    s.wait_log(r"hostile: worker %d \(slot 0, generation 1\) ready after" % hostile)
    forged = dict(f.split() for f in reported(s, "forged"))
    assert str(victim) in forged and str(s.pid) in forged, forged
    assert set(forged.values()) == {str(errno.EPERM)}, forged
    assert reported(s, "fds") == ["1 0", "16 0", "253 0"]

    # The storm is on: the supervisor answers and the others serve.
    deadline = time.monotonic() + 60
    while not reported(s, "storm done"):
        assert time.monotonic() < deadline, "the storm did not end"
        st = status(s)
        assert [w["state"] for w in group_of(st, "victim")["workers"]] == ["starting"]
        assert http_get(oport, "/")[0] == 200
    (storm,) = reported(s, "storm done")
    print("notify storm: %s datagrams" % storm)
    assert int(storm) > 0

    st = status(s)
    (v,) = group_of(st, "victim")["workers"]
    assert v["pid"] == victim and v["state"] == "starting"
    (h,) = group_of(st, "hostile")["workers"]
    assert h["pid"] == hostile and h["state"] == "ready"
    assert s.ready_pids().count(hostile) == 1
    assert victim not in s.ready_pids() and s.pid not in s.ready_pids()
    by.check()


def test_notify_truncated_ready_is_dropped(supervisor):
    """READY=1 at the start of a datagram too big for the supervisor to
    read whole: the datagram is dropped, so the worker is not ready."""
    s = supervisor([group_conf(name="huge", command=HOSTILE_NOTIFY, args=["huge"],
                               ready_timeout=1, stop_timeout=1)])
    s.wait_log(r"huge: worker \d+ \(slot 0, generation 1\) not ready after 1000 ms")
    assert not re.search(r"\) ready after", s.log())
    assert reported(s, "huge") == ["0"]


# ---- a worker that floods stdout and stderr ----------------------------------


class PipedSupervisor(Supervisor):
    """rollover with stdout and stderr on one pipe, drained as a journal
    would drain it: the flood goes through the same pipe as the daemon's
    own log lines, which are kept; the flood is only counted."""

    FLOOD = b"hostile flood: all work and no play\n"

    def __init__(self, conf, workdir):
        self.conf = conf
        self.seen = set()
        r, w = os.pipe()
        self.proc = subprocess.Popen([ROLLOVER, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=w, stderr=w, cwd=workdir)
        os.close(w)
        self.pid = self.proc.pid
        self.logf = os.fdopen(r, "rb", buffering=0)
        self.lock = threading.Lock()
        self.lines = []
        self.flood = 0
        self.drainer = threading.Thread(target=self.drain, daemon=True)
        self.drainer.start()

    def drain(self):
        rest = b""
        while True:
            try:
                chunk = self.logf.read(1 << 20)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            flood = data.count(self.FLOOD)
            others = data.replace(self.FLOOD, b"")
            with self.lock:
                self.flood += flood
                if others:
                    self.lines.append(others.decode(errors="replace"))

    def log(self):
        with self.lock:
            return "".join(self.lines)

    def flooded(self):
        with self.lock:
            return self.flood


def test_worker_that_floods_stdout_and_stderr(tmp_path):
    """While it floods, the supervisor answers, still logs every event
    whole, scales the other group, and stops cleanly."""
    oport = free_port()
    conf = write_conf(str(tmp_path / "rollover.conf"), [
        group_conf(name="flood", command=HOSTILE_FLOOD, stop_timeout=2),
        other_group(oport)])
    s = PipedSupervisor(conf, str(tmp_path))
    try:
        s.wait_ready(3)
        by = Bystander(s, oport)
        wait_for(lambda: s.flooded() > 100000, 10, "100000 lines of flood")
        by.check()
        sock = os.path.join(str(tmp_path), "control.sock")
        assert control(sock, "scale other 3")[-1] == "ok"
        s.wait_ready(4, timeout=30)
        assert len(group_of(status(s), "other")["workers"]) == 3
        # The daemon's lines come through whole, never mixed with the flood.
        for line in s.log().splitlines():
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} rollover\[%d\]: "
                            % s.pid, line), line
        s.signal(signal.SIGTERM)
        assert s.wait_exit(30) == 0
        print("flood lines drained: %d" % s.flooded())
    finally:
        s.kill_all()
    assert_no_sanitizer_report(s.log())


# ---- a listener shut down for everyone -----------------------------------


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_listener_shut_down_by_a_worker_is_replaced_at_the_next_rollover(
        supervisor, tmp_path):
    """shutdown(2) on a shared listener stops it for every holder, which
    no supervisor can prevent; the next rollover opens a new socket."""
    from conftest import TESTWORKER
    port = free_port()
    strike = tmp_path / "strike"
    strike.touch()
    s = supervisor([group_conf(
        name="web", command=TESTWORKER, workers=1,
        args=["--serve", "--shutdown-if", str(strike)],
        listen=["127.0.0.1:%d" % port])])
    s.wait_ready(1)
    wait_for(lambda: refused(port), what="the socket shut down")
    strike.unlink()
    s.signal(signal.SIGHUP)
    s.wait_log("a worker shut this socket down; opening a new one")
    s.wait_log(r"web: generation 2 serving after")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        pid = int(recv_all(c).decode())
    assert pid in s.workers()
