"""Self-upgrade (SIGUSR2, `rolloverctl upgrade`): the supervisor re-execs
its own binary in place.  Its pid, its workers and its sockets stay; the
clients see nothing; a broken new binary is refused and the old one runs on.
"""
import json
import os
import shutil
import signal
import socket
import time

from conftest import (HELLO, ROLLOVER, TESTWORKER, Supervisor, ctl,
                      WrkLoad, assert_no_sanitizer_report, free_port,
                      group_conf, http_get, recv_all, wait_for, write_conf)

def install(src, dst):
    """Replace dst the way a package manager does: copy, then rename."""
    shutil.copy2(src, dst + ".new")
    os.rename(dst + ".new", dst)


def status(sock):
    r = ctl("status", "--json", sock=sock)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def worker_pids(st):
    return sorted(w["pid"] for g in st["groups"] for w in g["workers"])


class Upgradable:
    """rollover run from a copy of its binary, which a test can replace."""

    def __init__(self, tmp_path, groups):
        self.dir = str(tmp_path)
        self.bin = os.path.join(self.dir, "rollover")
        install(ROLLOVER, self.bin)
        self.sock = os.path.join(self.dir, "control.sock")
        self.conf = write_conf(os.path.join(self.dir, "rollover.conf"), groups)
        self.s = Supervisor(self.conf, self.dir, argv=[self.bin, "-c", self.conf])

    def close(self):
        self.s.kill_all()
        assert_no_sanitizer_report(self.s.log())


def hello_group(port, **kw):
    return group_conf(name="web", command=HELLO, workers=2,
                      listen=["127.0.0.1:%d" % port], **kw)


def test_upgrade_under_load_keeps_pid_workers_and_connections(tmp_path):
    port = free_port()
    u = Upgradable(tmp_path, [hello_group(port)])
    try:
        u.s.wait_ready(2)
        before = status(u.sock)
        pids = worker_pids(before)
        with WrkLoad(port) as load:
            for i in range(6):
                install(ROLLOVER, u.bin)  # a new file at the same path
                if i % 2 == 0:
                    r = ctl("upgrade", sock=u.sock, timeout=60)
                    assert r.returncode == 0, r.stderr
                    assert "upgraded from rollover" in r.stdout
                else:
                    u.s.signal(signal.SIGUSR2)
                    u.s.wait_log("upgraded in place", n=i + 1)
                time.sleep(0.2)
        load.assert_clean(1000)
        after = status(u.sock)
        assert after["pid"] == u.s.pid == before["pid"]
        assert worker_pids(after) == pids
        assert after["started"] > before["started"]
        assert after["upgraded_from"] == before["version"]
        assert before["upgraded_from"] is None
        assert after["groups"][0]["generation"] == 1
        assert u.s.count("upgraded in place") == 6
        # Still a supervisor: a rollover works, and a stop is clean.
        assert ctl("reload", sock=u.sock, timeout=60).returncode == 0
        assert http_get(port, "/pid")[0] == 200
        u.s.signal(signal.SIGTERM)
        assert u.s.wait_exit() == 0
    finally:
        u.close()


def test_broken_new_binary_is_refused_and_the_old_one_runs_on(tmp_path):
    port = free_port()
    u = Upgradable(tmp_path, [hello_group(port)])
    try:
        u.s.wait_ready(2)
        pids = worker_pids(status(u.sock))
        script = os.path.join(u.dir, "fails.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho 'new build is broken' >&2\nexit 1\n")
        os.chmod(script, 0o755)
        with open(ROLLOVER, "rb") as f:
            half = f.read(4096)  # an ELF cut short
        cases = [
            ("/bin/false", "exited with status 1 while checking the state"),
            (script, "exited with status 1 while checking the state"),
            (None, "incomplete ELF"),
        ]
        for src, why in cases:
            if src is None:
                with open(u.bin + ".new", "wb") as f:
                    f.write(half)
                os.chmod(u.bin + ".new", 0o755)
                os.rename(u.bin + ".new", u.bin)
            else:
                install(src, u.bin)
            r = ctl("upgrade", sock=u.sock, timeout=60)
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert why in r.stderr, r.stderr
            assert http_get(port, "/")[0] == 200
        st = status(u.sock)
        assert st["pid"] == u.s.pid and st["upgraded_from"] is None
        assert worker_pids(st) == pids
        assert u.s.count("upgrade failed") == 3
        # A good binary at the path again: the upgrade goes through.
        install(ROLLOVER, u.bin)
        assert ctl("upgrade", sock=u.sock, timeout=60).returncode == 0
        assert worker_pids(status(u.sock)) == pids
    finally:
        u.close()


def test_upgrade_in_the_middle_of_a_rollover(tmp_path):
    """A generation still starting is handed over: it is promoted after
    the upgrade, once its workers are ready, and the old one drains then."""
    port = free_port()
    u = Upgradable(tmp_path, [group_conf(
        name="slow", command=TESTWORKER, workers=2, ready_timeout=60,
        args=["--serve", "--ready-when", str(tmp_path / "go")],
        listen=["127.0.0.1:%d" % port])])
    go = tmp_path / "go"
    try:
        go.touch()
        u.s.wait_log(r"generation 1 ready after")
        go.unlink()
        old = worker_pids(status(u.sock))
        assert ctl("reload", "--no-wait", sock=u.sock, timeout=60).returncode == 0
        u.s.wait_log(r"generation 2\) started", n=2)
        r = ctl("upgrade", sock=u.sock, timeout=60)
        assert r.returncode == 0, r.stderr
        st = status(u.sock)
        assert st["groups"][0]["last_rollover"]["result"] == "running"
        new = [w["pid"] for w in st["groups"][0]["workers"] if w["generation"] == 2]
        assert len(new) == 2 and not set(new) & set(old)
        go.touch()  # READY=1, to the notify socket handed over
        u.s.wait_log(r"generation 2 serving after")
        log = u.s.log()
        assert log.index("upgraded in place") < log.index("generation 2 serving")
        wait_for(lambda: worker_pids(status(u.sock)) == sorted(new),
                 what="generation 1 gone")
        assert status(u.sock)["groups"][0]["generation"] == 2
    finally:
        u.close()


def test_upgrade_in_quick_mode(tmp_path, monkeypatch):
    """No config file: the command line's settings are handed over too."""
    port = free_port()
    binary = os.path.join(str(tmp_path), "rollover")
    install(ROLLOVER, binary)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    s = Supervisor(None, str(tmp_path),
                   argv=[binary, "-l", "127.0.0.1:%d" % port, "--", HELLO])
    try:
        sock = os.path.join(str(tmp_path), "rollover-%d.sock" % s.pid)
        # The socket file exists a moment before it listens.
        wait_for(lambda: ctl("status", sock=sock).returncode == 0 and
                 worker_pids(status(sock)), what="a worker")
        pids = worker_pids(status(sock))
        s.signal(signal.SIGUSR2)
        wait_for(lambda: status(sock)["upgraded_from"] is not None,
                 what="the upgrade")
        assert worker_pids(status(sock)) == pids
        assert http_get(port, "/")[0] == 200
        s.signal(signal.SIGHUP)  # quick mode: roll over, same settings
        s.wait_log("reloaded in")
        assert worker_pids(status(sock)) != pids
    finally:
        s.kill_all()
        assert_no_sanitizer_report(s.log())


def test_control_clients_connected_during_the_upgrade_are_served(tmp_path):
    """A client connected across the exec, its request not sent yet, is
    handed over and answered by the new program."""
    port = free_port()
    u = Upgradable(tmp_path, [hello_group(port)])
    try:
        u.s.wait_ready(2)
        early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        early.settimeout(10)
        early.connect(u.sock)
        u.s.signal(signal.SIGUSR2)
        u.s.wait_log("upgraded in place")
        early.sendall(b"status\n")
        lines = recv_all(early).decode().splitlines()
        early.close()
        assert lines[-1] == "ok", lines
        assert json.loads(lines[0])["upgraded_from"] is not None
    finally:
        u.close()
