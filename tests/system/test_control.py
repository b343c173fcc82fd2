"""The control socket and rolloverctl, sd_notify, socket activation, and the
signals that scale and reopen the log.

Every test starts its own daemon on its own free port and control socket,
bounds every wait, and kills what it started.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

from conftest import (BUILD, HELLO, ROLLOVER, ROLLOVERCTL, children, ctl, free_port, group_conf,
                      http_get, recv_all, Supervisor, wait_for, wait_gone, write_conf,
                      WrkLoad)

TESTS = os.path.join(BUILD, "tests")
HELLO_A = os.path.join(TESTS, "hello-a")
HELLO_B = os.path.join(TESTS, "hello-b")
BAD_EXIT = os.path.join(TESTS, "bad-exit")
BAD_NOREADY = os.path.join(TESTS, "bad-noready")
VARIANT_A = "variant a\n"
VARIANT_B = "variant b\n"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# ---- helpers ---------------------------------------------------------------


def sock_of(s):
    return os.path.join(os.path.dirname(s.conf), "control.sock")


def ctl_ok(*args, **kw):
    r = ctl(*args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def status(sock):
    r = ctl_ok("status", "--json", sock=sock)
    return json.loads(r.stdout)


def group_of(st, name):
    (g,) = [g for g in st["groups"] if g["name"] == name]
    return g


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        items = f.read().split(b"\0")
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def copy_exec(src, dst):
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)


def install(src, dst):
    subprocess.run(["install", "-m755", src, dst], check=True, timeout=10)


def try_get(port, path="/", timeout=3.0):
    try:
        return http_get(port, path, timeout=timeout)
    except OSError as e:
        return None, repr(e)


def unix_connect(path, timeout=10.0):
    """A connected unix stream socket.  While the daemon's accept backlog
    is full a non-blocking unix connect fails with EAGAIN at once (there
    is no EINPROGRESS for unix sockets): try again until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def raw(sock, data, timeout=10.0, shut=False):
    """Send data on a fresh connection, read to end of file."""
    s = unix_connect(sock, timeout)
    try:
        if data:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon may close first: its answer is still there
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = recv_all(s)
        return out
    finally:
        s.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def slots_seen(port, want, timeout=8.0):
    """GET /pid from many connections at once until every slot in want has
    answered (a shared socket spreads them unevenly); returns
    {slot: (pid, generation)} seen."""
    seen = {}
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def one():
        while time.monotonic() < deadline:
            with lock:
                if set(want) <= set(seen):
                    return
            st, body = try_get(port, "/pid")
            if st == 200:
                info = json.loads(body)
                with lock:
                    seen[info["slot"]] = (info["pid"], info["generation"])

    ts = [threading.Thread(target=one) for _ in range(32)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout + 5)
    return seen


def web(supervisor, command=HELLO, workers=2, port=None, extra_groups=(), top=None,
        **kw):
    port = port or free_port()
    s = supervisor([group_conf(name="web", command=command, workers=workers,
                               listen=["127.0.0.1:%d" % port], **kw)]
                   + list(extra_groups), **(top or {}))
    s.wait_ready(workers)
    return s, port


# ---- 1. every command against a real daemon --------------------------------------


def test_every_command(supervisor):
    port, aport = free_port(), free_port()
    s, _ = web(supervisor, port=port, extra_groups=[group_conf(
        name="api", command=HELLO, workers=1, listen=["127.0.0.1:%d" % aport])])
    s.wait_ready(3)
    sock = sock_of(s)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

    # status: the table names the groups and every worker.
    r = ctl_ok("status", sock=sock)
    kids = s.workers()
    assert len(kids) == 3
    assert re.search(r"pid %d\b" % s.pid, r.stdout), r.stdout
    assert re.search(r"^web: generation 1, 2/2 ready", r.stdout, re.M), r.stdout
    assert re.search(r"^api: generation 1, 1/1 ready", r.stdout, re.M), r.stdout
    for pid in kids:
        assert re.search(r"^\s*%d\s+\d+\s+1\s+ready\b" % pid, r.stdout, re.M), r.stdout

    # status --json, against the real processes.
    st = status(sock)
    assert st["pid"] == s.pid
    assert [g["name"] for g in st["groups"]] == ["web", "api"]
    listed = []
    for g in st["groups"]:
        assert {"name", "generation", "workers", "last_rollover"} <= set(g), g
        assert g["generation"] == 1
        for w in g["workers"]:
            assert {"pid", "slot", "generation", "state", "restarts"} <= set(w), w
            assert w["state"] == "ready" and w["restarts"] == 0 and w["generation"] == 1
            env = environ(w["pid"])
            assert env["ROLLOVER_GROUP"] == g["name"]
            assert env["ROLLOVER_SLOT"] == str(w["slot"])
            assert env["ROLLOVER_GENERATION"] == str(w["generation"])
            listed.append(w["pid"])
        assert sorted(w["slot"] for w in g["workers"]) == list(range(len(g["workers"])))
        last = g["last_rollover"]
        assert {"generation", "trigger", "result", "reason", "duration_ms"} <= set(last)
        assert last["generation"] == 1 and last["trigger"] == "start"
        assert last["result"] == "ok" and last["reason"] == ""
        assert isinstance(last["duration_ms"], int) and 0 <= last["duration_ms"] < 10000
    assert sorted(listed) == children(s.pid)

    # reload: waits, prints each group's end, exits 0; every pid changes.
    old = set(listed)
    r = ctl_ok("reload", sock=sock)
    assert re.search(r"^web: generation 2 serving after \d+ ms$", r.stdout, re.M), r.stdout
    assert re.search(r"^api: generation 2 serving after \d+ ms$", r.stdout, re.M), r.stdout
    st = status(sock)
    for g in st["groups"]:
        assert g["generation"] == 2
        assert g["last_rollover"]["trigger"] == "control"
        assert g["last_rollover"]["result"] == "ok"
    wait_gone(old)
    # Right after the reload the old workers may still be listed, stopping.
    new = {w["pid"] for g in st["groups"] for w in g["workers"]
           if w["generation"] == 2}
    assert len(new) == 3 and not new & old
    assert http_get(port, "/pid")[0] == 200 and json.loads(http_get(port, "/pid")[1])["generation"] == 2

    # reload GROUP: only that group rolls over.  (st may still list a
    # stopping worker of generation 1.)
    web_pids = {w["pid"] for w in group_of(st, "web")["workers"] if w["generation"] == 2}
    r = ctl_ok("reload", "api", sock=sock)
    assert r.stdout.strip().splitlines() == [l for l in r.stdout.strip().splitlines()
                                             if l.startswith("api: generation 3 serving")]
    st = status(sock)
    assert group_of(st, "api")["generation"] == 3
    assert group_of(st, "web")["generation"] == 2
    assert {w["pid"] for w in group_of(st, "web")["workers"]} == web_pids

    # reload --no-wait: answers at once; the generation serves later.
    t0 = time.monotonic()
    r = ctl_ok("reload", "web", "--no-wait", sock=sock)
    assert time.monotonic() - t0 < 2.0
    assert "web: rollover to generation 3 begun" in r.stdout, r.stdout
    wait_for(lambda: (lambda g: g["generation"] == 3 and g["last_rollover"]["result"] == "ok"
                      and g["last_rollover"]["generation"] == 3)(group_of(status(sock), "web")),
             10, "web generation 3 serving")
    wait_gone(web_pids)

    # scale up: slots 2 and 3 appear, serve and are listed.
    r = ctl_ok("scale", "web", "4", sock=sock)
    assert "web: 2 -> 4 workers" in r.stdout, r.stdout
    wait_for(lambda: len([w for w in group_of(status(sock), "web")["workers"]
                          if w["state"] == "ready"]) == 4, 10, "4 ready web workers")
    g = group_of(status(sock), "web")
    assert sorted(w["slot"] for w in g["workers"]) == [0, 1, 2, 3]
    assert all(w["generation"] == 3 for w in g["workers"])
    assert len(children(s.pid)) == 5
    seen = slots_seen(port, [0, 1, 2, 3])
    assert set(seen) == {0, 1, 2, 3}, seen
    by_slot = {w["slot"]: w["pid"] for w in g["workers"]}
    assert all(seen[k] == (by_slot[k], 3) for k in seen), (seen, by_slot)

    # scale down: the extra slots go, slot 0 stays.
    r = ctl_ok("scale", "web", "1", sock=sock)
    assert "web: 4 -> 1 workers" in r.stdout, r.stdout
    wait_gone([by_slot[1], by_slot[2], by_slot[3]])
    g = group_of(status(sock), "web")
    assert [(w["slot"], w["pid"]) for w in g["workers"]] == [(0, by_slot[0])]
    assert len(children(s.pid)) == 2
    assert json.loads(http_get(port, "/pid")[1])["slot"] == 0

    # stop: the daemon exits 0 and no worker is left.
    everyone = set(s.workers()) | s.seen
    r = ctl_ok("stop", sock=sock)
    assert s.wait_exit(10) == 0
    wait_gone(everyone)
    assert not os.path.exists(sock)
    assert "control: stopping gracefully" in s.log()


# ---- 2. errors -----------------------------------------------------------------


def test_no_daemon(tmp_path):
    sock = str(tmp_path / "absent.sock")
    r = ctl("status", sock=sock)
    assert r.returncode == 1
    assert "cannot connect to %s" % sock in r.stderr and "(is rollover running?)" in r.stderr, r.stderr
    # A socket file whose daemon is gone refuses: the same hint.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "dead.sock"))
    dead.close()
    r = ctl("reload", sock=str(tmp_path / "dead.sock"))
    assert r.returncode == 1 and "(is rollover running?)" in r.stderr, r.stderr
    # -c with a config whose socket is absent.
    conf = write_conf(str(tmp_path / "r.conf"), [group_conf(name="web", command=HELLO,
                                                           listen=["127.0.0.1:1"])])
    r = ctl("status", conf=conf)
    assert r.returncode == 1 and "(is rollover running?)" in r.stderr, r.stderr
    assert str(tmp_path / "control.sock") in r.stderr


def test_other_user_is_refused(supervisor, tmp_path):
    # The socket must be reachable by nobody for its own mode, and the
    # daemon's SO_PEERCRED check, to be what refuses.
    d = tempfile.mkdtemp(prefix="rollover-ctl-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        sock = os.path.join(d, "control.sock")
        port = free_port()
        groups = [group_conf(name="web", command=HELLO, workers=1,
                             listen=["127.0.0.1:%d" % port])]
        s = supervisor(groups, control=sock)
        s.wait_ready(1)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        r = ctl("status", sock=sock, prefix=NOBODY)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "cannot connect to %s: Permission denied" % sock in r.stderr, r.stderr
        assert r.stdout == ""

        # control_mode = "0666" (applied by a reload): the file lets nobody
        # connect, the daemon refuses it by its credentials.
        write_conf(s.conf, groups, control=sock, control_mode="0666")
        r = ctl_ok("reload", sock=sock)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o666
        for cmd in (["status"], ["status", "--json"], ["stop"], ["reload"], ["scale", "web", "3"]):
            r = ctl(*cmd, sock=sock, prefix=NOBODY)
            assert r.returncode == 1, (cmd, r.stdout, r.stderr)
            assert "permission denied" in r.stderr, r.stderr
            assert r.stdout == ""
        code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(5); "
                "s.connect(sys.argv[1]); d=b''\n"
                "try: s.sendall(b'stop\\n')\nexcept OSError: pass\n"
                "while True:\n try: b=s.recv(100)\n except ConnectionResetError: break\n"
                " if not b: break\n d+=b\n"
                "sys.stdout.write(repr(d))")
        out = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", code, sock],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=10, universal_newlines=True)
        assert out.stdout == repr(b"error: permission denied\n"), (out.stdout, out.stderr)
        # Nothing of that reached the daemon: it still runs, generation 2.
        assert s.proc.poll() is None
        assert group_of(status(sock), "web")["workers_wanted"] == 1
        assert group_of(status(sock), "web")["generation"] == 2
        assert http_get(port)[0] == 200
        ctl_ok("stop", sock=sock)
        assert s.wait_exit(10) == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_usage_and_daemon_errors(supervisor):
    s, port = web(supervisor, workers=1)
    sock = sock_of(s)
    usage = [
        [],                          # no command
        ["frobnicate"],              # unknown command
        ["scale", "web"],            # scale without N
        ["scale"],
        ["scale", "web", "x"],
        ["scale", "web", "-1"],
        ["scale", "web", "2", "3"],
        ["status", "--yaml"],
        ["status", "--json", "x"],
        ["stop", "now"],
        ["reload", "web", "api"],
        ["reload", "--bogus"],
    ]
    for args in usage:
        r = ctl(*args, sock=sock)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "usage: rolloverctl" in r.stderr, (args, r.stderr)
    # -c and -S together; an unknown option.
    r = subprocess.run([ROLLOVERCTL, "-c", s.conf, "-S", sock, "status"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert r.returncode == 2
    r = subprocess.run([ROLLOVERCTL, "-x", "status"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert r.returncode == 2

    # The daemon's errors: exit 1 with its message.
    r = ctl("reload", "nosuch", sock=sock)
    assert r.returncode == 1 and "no group named 'nosuch'" in r.stderr, r.stderr
    r = ctl("reload", "nosuch", "--no-wait", sock=sock)
    assert r.returncode == 1 and "no group named 'nosuch'" in r.stderr, r.stderr
    r = ctl("scale", "nosuch", "2", sock=sock)
    assert r.returncode == 1 and "no group named 'nosuch'" in r.stderr, r.stderr
    r = ctl("scale", "web", "0", sock=sock)
    assert r.returncode == 1 and "web: 0 workers: must be 1 to" in r.stderr, r.stderr
    r = ctl("scale", "web", "100000", sock=sock)
    assert r.returncode == 1 and "must be 1 to" in r.stderr, r.stderr
    assert "scaled" not in s.log()

    # -c FILE finds the socket the config names.
    st = json.loads(ctl_ok("status", "--json", conf=s.conf).stdout)
    assert st["pid"] == s.pid and group_of(st, "web")["workers_wanted"] == 1
    r = ctl_ok("reload", "web", conf=s.conf)
    assert "web: generation 2 serving" in r.stdout
    assert http_get(port)[0] == 200
    assert s.proc.poll() is None


# ---- 3. reload's exit status ------------------------------------------------------


def test_reload_exit_status_follows_the_rollover(supervisor, tmp_path):
    app = str(tmp_path / "app")
    copy_exec(HELLO_A, app)
    s, port = web(supervisor, command=app, watch=False, ready_timeout=2, stop_timeout=2)
    sock = sock_of(s)

    r = ctl_ok("reload", sock=sock)
    assert "web: generation 2 serving" in r.stdout
    s.wait_workers(2)
    wait_for(lambda: len(s.workers()) == 2, 10, "generation 1 gone")
    serving = set(s.workers())

    install(BAD_EXIT, app)
    r = ctl("reload", sock=sock)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"web: generation 3 aborted: worker \d exited with status 1 before ready",
                     r.stdout + r.stderr), (r.stdout, r.stderr)
    assert "1 of 1 rollover aborted" in r.stderr, r.stderr
    # The old generation was never touched and still serves; the aborted
    # one's workers (told to stop as the reply went out) go.
    assert serving <= set(s.workers())
    wait_for(lambda: set(s.workers()) == serving, 5, "only generation 2 left")
    assert http_get(port)[1] == VARIANT_A
    assert json.loads(http_get(port, "/pid")[1])["generation"] == 2
    g = group_of(status(sock), "web")
    assert g["generation"] == 2
    assert g["last_rollover"]["generation"] == 3 and g["last_rollover"]["result"] == "aborted"
    assert "exited with status 1 before ready" in g["last_rollover"]["reason"]
    # The table shows the reason too.
    assert "exited with status 1 before ready" in ctl_ok("status", sock=sock).stdout

    # reload GROUP and --no-wait report the abort as well (exit 1).
    r = ctl("reload", "web", sock=sock)
    assert r.returncode == 1 and "generation 4 aborted" in r.stdout + r.stderr, (r.stdout, r.stderr)
    r = ctl("reload", "web", "--no-wait", sock=sock)
    # --no-wait answers before the outcome is known: it must not claim it.
    assert "generation 5" in r.stdout + r.stderr, (r.stdout, r.stderr)
    s.wait_log(r"web: generation 5 aborted")

    # A good binary again: exit 0.
    install(HELLO_B, app)
    r = ctl_ok("reload", sock=sock)
    assert "web: generation 6 serving" in r.stdout
    wait_for(lambda: try_get(port)[1] == VARIANT_B, 10, "variant b")
    wait_gone(serving)

    # A config that does not load: exit 1 with FILE:LINE, nothing changes.
    good = open(s.conf).read()
    with open(s.conf, "a") as f:
        f.write("bogus_key = 1;\n")
    r = ctl("reload", sock=sock)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(re.escape(s.conf) + r":\d+: .*bogus_key", r.stdout + r.stderr), (r.stdout, r.stderr)
    assert "not reloaded" in r.stderr, r.stderr
    g = group_of(status(sock), "web")
    assert g["generation"] == 6 and g["last_rollover"]["generation"] == 6
    with open(s.conf, "w") as f:
        f.write(good)

    # A reload that is waiting when the daemon is told to stop ends, with
    # exit 1, rather than hanging; so does a scale during the rollover.
    install(BAD_NOREADY, app)
    p = subprocess.Popen([ROLLOVERCTL, "-S", sock, "reload"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    try:
        s.wait_log(r"web: rollover to generation 7 begun")
        r = ctl("scale", "web", "3", sock=sock)
        assert r.returncode == 1 and "rollover is in progress" in r.stderr, r.stderr
        ctl_ok("stop", sock=sock)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1, (out, err)
    assert "generation 7 serving" not in out
    assert s.wait_exit(10) == 0


# ---- 4. scaling under load ------------------------------------------------------------


def test_scale_under_load(supervisor):
    s, port = web(supervisor, workers=2, listen_mode="shared")
    sock = sock_of(s)
    with WrkLoad(port, conns=32, settle=0.7) as wrk:
        for n in (4, 1, 3, 2, 1, 2):
            ctl_ok("scale", "web", str(n), sock=sock)
            wait_for(lambda: (lambda g: len(g["workers"]) == n and
                              all(w["state"] == "ready" for w in g["workers"]))(
                                  group_of(status(sock), "web")),
                     10, "%d ready workers" % n)
            time.sleep(0.3)
    wrk.assert_clean(1000)
    assert s.count(r"web: scaled from") == 6
    s.wait_workers(2)


# ---- 5. the control socket under abuse -----------------------------------------------


def test_control_socket_abuse(supervisor):
    s, port = web(supervisor, workers=2)
    sock = sock_of(s)
    base_fds = fd_count(s.pid)
    errors = []
    results = {}

    def guard(name, fn):
        def run():
            try:
                results[name] = fn()
            except Exception as e:  # reported below
                errors.append((name, repr(e)))
        t = threading.Thread(target=run, name=name)
        t.start()
        return t

    def slow():
        c = unix_connect(sock)
        t0 = time.monotonic()
        out = recv_all(c)
        c.close()
        return out, time.monotonic() - t0

    def garbage():
        rnd = random.Random(1234)
        bad = []
        for i in range(200):
            line = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
            line = b"\xfe" + line.replace(b"\n", b"") + b"\n"
            out = raw(sock, line)
            if not (out.startswith(b"error: ") and out.endswith(b"\n") and out.count(b"\n") == 1):
                bad.append((line, out))
        return bad

    def oversized():
        for _ in range(50):  # a refusal for too many clients is not the point
            out = raw(sock, b"x" * 100000)
            if out != b"error: too many clients\n":
                return out
            time.sleep(0.05)
        return out

    def quick_close():
        for _ in range(50):
            c = unix_connect(sock)
            c.close()
        for part in (b"stat", b"reload", b"scale web 1", b"stop"):
            c = unix_connect(sock)
            c.sendall(part)  # half a request, then gone
            c.close()
        return True

    def many_status():
        outs = [None] * 100
        barrier = threading.Barrier(100, timeout=10)

        def one(i):
            try:
                c = unix_connect(sock)
            finally:
                barrier.wait()
            try:
                c.sendall(b"status\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            out = recv_all(c)
            c.close()
            outs[i] = out
        ts = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        return outs

    t_slow = guard("slow", slow)
    time.sleep(0.1)
    threads = [guard("garbage", garbage), guard("oversized", oversized),
               guard("quick_close", quick_close)]
    # quick_close's 54 connections hold client slots until the daemon has
    # read their end: the burst of 100 starts once they are gone, so that
    # how many of it are served does not depend on who was faster.  What
    # else holds a slot or a descriptor meanwhile: slow, garbage,
    # oversized, and a rollover's new workers.
    threads[-1].join(30)
    wait_for(lambda: fd_count(s.pid) <= base_fds + 8, 10,
             "quick_close's connections closed by the daemon")
    threads.append(guard("many_status", many_status))
    # Meanwhile the daemon keeps serving and rolling over.
    for gen in (2, 3, 4):
        s.signal(signal.SIGHUP)
        s.wait_log(r"web: generation %d serving after" % gen)
        assert http_get(port)[0] == 200
        time.sleep(0.2)
    for t in threads:
        t.join(30)
    t_slow.join(15)
    assert not t_slow.is_alive() and not any(t.is_alive() for t in threads)
    assert errors == [], errors

    assert results["garbage"] == [], results["garbage"][:5]
    assert results["oversized"] == b"error: request too long\n"
    out, waited = results["slow"]
    assert out == b"error: request timed out\n"
    assert 4.5 <= waited <= 7.0, waited
    full = busy = 0
    for o in results["many_status"]:
        if o == b"error: too many clients\n":
            busy += 1
            continue
        lines = o.split(b"\n")
        assert len(lines) == 3 and lines[1] == b"ok" and lines[2] == b"", o[:200]
        st = json.loads(lines[0])
        assert st["pid"] == s.pid and group_of(st, "web")["workers_wanted"] == 2
        full += 1
    print("status clients: %d full, %d busy" % (full, busy))
    assert full + busy == 100 and full >= 40, (full, busy)

    # Still responsive, no rollover missed, no client left behind: all of
    # the 64 slots are free again, and no fd leaked.
    assert s.proc.poll() is None
    assert group_of(status(sock), "web")["generation"] == 4
    assert "aborted" not in s.log()
    idle = []
    for _ in range(64):
        c = unix_connect(sock)
        idle.append(c)
    time.sleep(0.2)
    for c in idle:
        c.sendall(b"status\n")
    for c in idle:
        out = recv_all(c)
        c.close()
        assert out.endswith(b"\nok\n"), out[:200]
    wait_for(lambda: fd_count(s.pid) == base_fds, 5,
             "fds back to %d (now %d)" % (base_fds, fd_count(s.pid)))
    ctl_ok("reload", sock=sock)
    assert http_get(port)[0] == 200


# ---- 6. sd_notify --------------------------------------------------------------------


class NotifyListener:
    """The service manager's side of NOTIFY_SOCKET: datagrams with the
    sender's credentials and the time they arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.msgs = []  # (monotonic, sender pid, {VAR: value}, raw text)
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.done:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            now = time.monotonic()
            pid = None
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            text = data.decode()
            fields = dict(l.split("=", 1) for l in text.split("\n") if "=" in l)
            with self.lock:
                self.msgs.append((now, pid, fields, text))

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()

    def events(self):
        """Everything but WATCHDOG=1 and bare STATUS= updates."""
        with self.lock:
            return [m for m in self.msgs
                    if set(m[2]) - {"STATUS"} and "WATCHDOG" not in m[2]]

    def wait_event(self, key, n=1, timeout=10.0):
        return wait_for(lambda: (lambda ev: ev if len(ev) >= n else None)(
            [m for m in self.events() if key in m[2]]), timeout,
            "%d x %s in %r" % (n, key, [m[3] for m in self.events()]))


def test_sd_notify_sequence(supervisor, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    nl = NotifyListener(path)
    try:
        app = str(tmp_path / "app")
        copy_exec(HELLO_A, app)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        port = free_port()
        s = supervisor([group_conf(name="web", command=app, workers=2, watch=False,
                                   listen=["127.0.0.1:%d" % port])])
        monkeypatch.delenv("NOTIFY_SOCKET")
        monkeypatch.delenv("WATCHDOG_USEC")

        (ready,) = nl.wait_event("READY")
        assert ready[2]["READY"] == "1" and "STATUS" in ready[2], ready
        assert "web: generation 1, 2/2 ready" in ready[2]["STATUS"], ready
        assert ready[1] == s.pid
        assert "web: generation 1 ready after" in s.log()
        assert [m[3] for m in nl.events()] == [ready[3]]

        # Workers get the supervisor's own notify socket, never ours.
        for pid in s.wait_workers(2):
            env = environ(pid)
            assert env["NOTIFY_SOCKET"].startswith("@"), env
            assert "WATCHDOG_USEC" not in env and "WATCHDOG_PID" not in env

        # WATCHDOG=1 about every 200 ms, from the supervisor.
        time.sleep(1.3)
        with nl.lock:
            dogs = [m for m in nl.msgs if m[2].get("WATCHDOG") == "1"]
        assert all(m[1] == s.pid for m in dogs)
        gaps = [b[0] - a[0] for a, b in zip(dogs, dogs[1:])]
        # Never faster than half of WATCHDOG_USEC; how much slower depends
        # on the machine's load, so only a generous count is asked for.
        assert len(dogs) >= 3, [m[0] for m in dogs]
        assert all(g >= 0.15 for g in gaps[1:]), gaps

        # SIGHUP: RELOADING=1 with the monotonic time it began, then READY=1.
        t0 = time.monotonic()
        s.signal(signal.SIGHUP)
        s.wait_log(r"web: generation 2 serving after")
        nl.wait_event("READY", 2)
        after = [m for m in nl.events() if m[0] >= t0]
        assert [sorted(set(m[2]) - {"STATUS"}) for m in after] == [
            ["MONOTONIC_USEC", "RELOADING"], ["READY"]], [m[3] for m in after]
        rel = after[0]
        usec = int(rel[2]["MONOTONIC_USEC"])
        assert t0 * 1e6 - 2000 <= usec <= rel[0] * 1e6 + 2000, (t0, usec, rel[0])
        assert rel[1] == s.pid and after[1][1] == s.pid

        # SIGTERM: STOPPING=1, then the daemon exits 0.
        s.signal(signal.SIGTERM)
        nl.wait_event("STOPPING")
        assert s.wait_exit(10) == 0
        last = nl.events()[-1]
        assert last[2].get("STOPPING") == "1" and last[1] == s.pid, last
        assert [m for m in nl.events() if "STOPPING" in m[2]] == [last]
    finally:
        nl.close()


def reload_bracket(s, nl, gen, timeout=5.0):
    """SIGHUP; once generation gen has ended, what the supervisor told the
    service manager meanwhile: (kinds of event, events, every raw message)."""
    t0 = time.monotonic()
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation %d (aborted|serving after)" % gen, timeout=timeout)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # READY=1 follows within a loop turn
        after = [m for m in nl.events() if m[0] >= t0]
        if after and "READY" in after[-1][2]:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    after = [m for m in nl.events() if m[0] >= t0]
    with nl.lock:
        everything = [m[3] for m in nl.msgs if m[0] >= t0 and "WATCHDOG" not in m[2]]
    return [sorted(set(m[2]) - {"STATUS"}) for m in after], after, everything


def test_sd_notify_aborted_reload_is_bracketed(supervisor, tmp_path, monkeypatch):
    """RELOADING=1 then READY=1 around every rollover, aborted ones too:
    the old generation serves again once it is over."""
    path = str(tmp_path / "notify.sock")
    nl = NotifyListener(path)
    try:
        app = str(tmp_path / "app")
        copy_exec(HELLO_A, app)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        port = free_port()
        # Four workers: the rollover's first worker has exited before the
        # last one is started.
        s = supervisor([group_conf(name="web", command=app, workers=4, watch=False,
                                   ready_timeout=1, listen=["127.0.0.1:%d" % port])])
        monkeypatch.delenv("NOTIFY_SOCKET")
        nl.wait_event("READY")
        expected = [["MONOTONIC_USEC", "RELOADING"], ["READY"]]

        # Aborted after ready_timeout: bracketed.
        install(BAD_NOREADY, app)
        kinds, msgs, everything = reload_bracket(s, nl, 2)
        s.wait_log(r"web: generation 2 aborted: worker \d not ready within 1000 ms")
        assert kinds == expected, everything
        assert "generation 1, 4/4 ready" in msgs[-1][2].get("STATUS", ""), msgs[-1][3]

        # Aborted within milliseconds (the new worker exits at once), asked
        # for by rolloverctl: bracketed.
        install(BAD_EXIT, app)
        t0 = time.monotonic()
        r = ctl("reload", sock=sock_of(s))
        assert r.returncode == 1 and "generation 3 aborted" in r.stdout, (r.stdout, r.stderr)
        wait_for(lambda: [m for m in nl.events() if m[0] >= t0 and "READY" in m[2]], 2,
                 "READY=1 after the aborted generation 3")
        after = [m for m in nl.events() if m[0] >= t0]
        assert [sorted(set(m[2]) - {"STATUS"}) for m in after] == expected, \
            [m[3] for m in after]

        # The same, asked for by SIGHUP: the same pair is owed.
        kinds, msgs, everything = reload_bracket(s, nl, 4)
        s.wait_log(r"web: generation 4 aborted: worker \d exited with status 1 before ready")
        assert http_get(port)[0] == 200
        assert kinds == expected, ("SIGHUP, generation 4 aborted at once: "
                                   "no RELOADING=1 then READY=1", everything)
    finally:
        nl.close()


def test_watchdog_pid_of_another_process_is_ignored(supervisor, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    nl = NotifyListener(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.setenv("WATCHDOG_PID", "1")
        s, port = web(supervisor, workers=1)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            monkeypatch.delenv(k)
        nl.wait_event("READY")
        time.sleep(0.6)
        with nl.lock:
            assert not [m for m in nl.msgs if "WATCHDOG" in m[2]]
        env = environ(s.workers()[0])
        assert env["NOTIFY_SOCKET"].startswith("@") and "WATCHDOG_PID" not in env
    finally:
        nl.close()


# ---- 7. socket activation -------------------------------------------------------------


class Activated(Supervisor):
    """systemd-socket-activate -l ADDR rollover -c CONF (it execs the daemon
    at the first connection, so the pids are the same)."""

    def __init__(self, tmp_path, listen_port, conf):
        super().__init__(conf, str(tmp_path), logname="activated.log", argv=[
            "systemd-socket-activate", "-l", "127.0.0.1:%d" % listen_port,
            ROLLOVER, "-c", conf])
        wait_for(lambda: "Listening on" in self.log() or self.proc.poll() is not None,
                 10, "systemd-socket-activate to listen")

    def kill(self):
        self.kill_all()


def test_socket_activation_uses_the_given_socket(tmp_path):
    port = free_port()
    conf = write_conf(str(tmp_path / "r.conf"), [group_conf(
        name="web", command=HELLO, workers=2, listen=["127.0.0.1:%d" % port])])
    a = Activated(tmp_path, port, conf)
    try:
        # The first connection is what makes it exec the daemon; it is
        # queued on the socket meanwhile and must be answered.
        st, body = http_get(port, "/pid", timeout=10)
        assert st == 200 and json.loads(body)["generation"] == 1
        a.wait_log(r"listening on 127\.0\.0\.1:%d \(from the service manager\)" % port)
        assert not re.search(r"listening on 127\.0\.0\.1:%d\n" % port, a.log())
        assert re.search(r"rollover \S+ running as pid %d " % a.pid, a.log())
        kids = wait_for(lambda: (lambda k: k if len(k) == 2 else None)(children(a.pid)),
                        10, "2 workers")
        a.seen.update(kids)
        sock = str(tmp_path / "control.sock")
        assert status(sock)["pid"] == a.pid
        # The activation variables were the daemon's, not the workers'.
        for pid in kids:
            env = environ(pid)
            assert env["LISTEN_FDS"] == "1" and env["LISTEN_PID"] == str(pid)
            assert env.get("LISTEN_FDNAMES") == "web", env.get("LISTEN_FDNAMES")
        # The same socket serves across a rollover.
        ino = socket_inode_of_port(port)
        ctl_ok("reload", sock=sock)
        a.seen.update(children(a.pid))
        for _ in range(10):
            assert http_get(port)[0] == 200
        assert json.loads(http_get(port, "/pid")[1])["generation"] == 2
        assert socket_inode_of_port(port) == ino
        ctl_ok("stop", sock=sock)
        assert a.proc.wait(10) == 0
    finally:
        a.kill()


def socket_inode_of_port(port):
    """The inode of the LISTEN socket on 127.0.0.1:port (from /proc/net/tcp)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return fields[9]
    return None


def test_socket_activation_unmatched_socket_is_closed(tmp_path):
    port, other = free_port(), free_port()
    conf = write_conf(str(tmp_path / "r.conf"), [group_conf(
        name="web", command=HELLO, workers=1, listen=["127.0.0.1:%d" % port])])
    a = Activated(tmp_path, other, conf)
    try:
        c = socket.create_connection(("127.0.0.1", other), timeout=5)  # exec it
        c.close()
        a.wait_log(r"fd 3 from the service manager matches no listen address; closing it")
        a.wait_log(r"listening on 127\.0\.0\.1:%d\n" % port)
        a.wait_log(r"web: generation 1 ready")
        assert "(from the service manager)" not in a.log()
        assert http_get(port)[0] == 200
        # The unmatched port is closed everywhere: the daemon and its workers.
        wait_for(lambda: socket_inode_of_port(other) is None, 5, "port %d closed" % other)
        try:
            socket.create_connection(("127.0.0.1", other), timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused
        kids = children(a.pid)
        a.seen.update(kids)
        env = environ(kids[0])
        assert env["LISTEN_FDS"] == "1"
        ctl_ok("stop", sock=str(tmp_path / "control.sock"))
        assert a.proc.wait(10) == 0
    finally:
        a.kill()


# ---- 8. signals: TTIN, TTOU, USR1 --------------------------------------------------------


def test_ttin_ttou_scale_every_group(supervisor):
    aport = free_port()
    s, port = web(supervisor, workers=2, extra_groups=[group_conf(
        name="api", command=HELLO, workers=1, listen=["127.0.0.1:%d" % aport])])
    s.wait_ready(3)
    sock = sock_of(s)

    def wanted():
        st = status(sock)
        return tuple((g["workers_wanted"], len(g["workers"])) for g in st["groups"])

    def expect(web_n, api_n, sig, scaled):
        before = s.count(r"scaled from")
        s.signal(sig)
        s.wait_log(r"scaled from", before + scaled)
        wait_for(lambda: wanted() == ((web_n, web_n), (api_n, api_n)), 10,
                 "web %d, api %d (now %r)" % (web_n, api_n, wanted()))
        s.wait_workers(web_n + api_n)

    expect(3, 2, signal.SIGTTIN, 2)
    expect(4, 3, signal.SIGTTIN, 2)
    expect(3, 2, signal.SIGTTOU, 2)
    expect(2, 1, signal.SIGTTOU, 2)
    expect(1, 1, signal.SIGTTOU, 1)   # api is at 1 already: left alone
    n = s.count(r"scaled from")
    s.signal(signal.SIGTTOU)          # both at 1: nothing happens
    time.sleep(0.3)
    assert wanted() == ((1, 1), (1, 1))
    assert s.count(r"scaled from") == n
    assert s.proc.poll() is None
    assert http_get(port)[0] == 200 and http_get(aport)[0] == 200


def test_usr1_reopens_the_log_file(supervisor, tmp_path):
    logfile = str(tmp_path / "rollover-file.log")
    port = free_port()
    s = supervisor([group_conf(name="web", command=HELLO, workers=1,
                               listen=["127.0.0.1:%d" % port])], log_file=logfile)
    sock = sock_of(s)

    def text(p):
        with open(p, errors="replace") as f:
            return f.read()

    wait_for(lambda: os.path.exists(logfile) and "generation 1 ready" in text(logfile),
             10, "the log file")
    rotated = logfile + ".1"
    os.rename(logfile, rotated)
    s.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(logfile), 5, "a new log file at the path")
    assert "SIGUSR1: reopening the log" in text(rotated)
    ctl_ok("reload", sock=sock)
    wait_for(lambda: "generation 2 serving" in text(logfile), 5, "rollover in the new file")
    assert "generation 2" not in text(rotated)
    assert stat.S_IMODE(os.stat(logfile).st_mode) & 0o007 == 0
    # Without a rename, USR1 keeps appending to the same file.
    size = os.path.getsize(logfile)
    s.signal(signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1" in text(logfile), 5, "USR1 logged")
    assert os.path.getsize(logfile) > size and text(logfile).count("generation 2 serving") == 1
