"""Rollovers: SIGHUP reloads, binary watching, pinned binaries, aborts.

Each test runs the real supervisor on its own free port with the hello
worker variants built by the Makefile (build/tests/hello-a answers
"variant a\\n", hello-b "variant b\\n") and the misbehaving workers
(bad-exit, bad-noready, bad-crash).  Watch tests copy hello-a to
tmp_path/app, run that path with `watch = true` and a small `settle`, and
replace it the ways deployers, compilers and linkers do.

Every wait is bounded and waits on a log line or a condition.  The only
fixed sleeps are observation windows ("nothing more happens for N ms")
and the pauses of the slow writers being simulated.
"""
import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BUILD, TESTWORKER, free_port, group_conf, http_get,
                      pid_alive, recv_all, wait_for, wait_gone, write_conf)

TESTS = os.path.join(BUILD, "tests")
HELLO_A = os.path.join(TESTS, "hello-a")
HELLO_B = os.path.join(TESTS, "hello-b")
BAD_EXIT = os.path.join(TESTS, "bad-exit")
BAD_NOREADY = os.path.join(TESTS, "bad-noready")
BAD_CRASH = os.path.join(TESTS, "bad-crash")

VARIANT_A = "variant a\n"
VARIANT_B = "variant b\n"

QUIET = 1.0  # seconds to watch for a second, unwanted rollover


# ---- helpers ------------------------------------------------------------------


def try_get(port, path="/", timeout=2.0):
    """The body of a 200 answer, or None (refused, reset, timeout, non-200)."""
    try:
        st, body = http_get(port, path, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return body if st == 200 else None


def wait_body(port, body, timeout=10.0, path="/"):
    return wait_for(lambda: try_get(port, path) == body, timeout,
                    "%r from GET %s on port %d" % (body, path, port))


def pid_info(port):
    body = try_get(port, "/pid")
    return json.loads(body) if body else None


def wait_generation(port, gen, timeout=10.0):
    """Until /pid answers from generation gen (a few times in a row)."""
    def ok():
        return all((pid_info(port) or {}).get("generation") == gen for _ in range(4))
    return wait_for(ok, timeout, "GET /pid from generation %d" % gen)


def copy_exec(src, dst):
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)


def web(supervisor, command, workers=2, port=None, **kw):
    """Start one group "web" on a free port; returns (supervisor, port, pids)."""
    port = port or free_port()
    s = supervisor([group_conf(name="web", command=command, workers=workers,
                               listen=["127.0.0.1:%d" % port], **kw)])
    pids = s.wait_ready(workers)
    s.wait_log(r"web: generation 1 ready after")
    assert sorted(pids) == s.wait_workers(workers)
    return s, port, sorted(pids)


def watched_web(supervisor, tmp_path, workers=2, **kw):
    app = str(tmp_path / "app")
    copy_exec(HELLO_A, app)
    kw.setdefault("settle", 0.05)
    s, port, pids = web(supervisor, app, workers=workers, watch=True, **kw)
    assert try_get(port) == VARIANT_A
    return s, port, pids, app


def wait_children(s, pids, timeout=10.0):
    """Until the supervisor's children are exactly pids."""
    want = sorted(pids)
    wait_for(lambda: s.workers() == want, timeout,
             "the supervisor's children to be %s (now %s)" % (want, s.workers()))


def rollovers(s):
    return re.findall(r"web: rollover to generation (\d+) begun \(trigger: (\w+)\)", s.log())


def listen_inodes(port):
    """Inodes of the TCP sockets listening on port (this network namespace)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.add(int(f[9]))
    return out


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", t)
        if m:
            out.add(int(m.group(1)))
    return out


def slow_get(port, path, client_port, timeout=15):
    """http_get from a known local port, so that holding_request() can
    find the connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=("127.0.0.1", client_port))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def holding_request(pids, port, client_port):
    """Those of pids that accepted the connection from client_port to port
    and read all it sent: its request is in flight there."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(path).read().splitlines()[1:]:
            f = line.split()
            if (f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port
                    and int(f[2].rsplit(":", 1)[1], 16) == client_port
                    and int(f[4].split(":")[1], 16) == 0 and int(f[9]) != 0):
                return [p for p in pids if pid_alive(p) and int(f[9]) in socket_inodes(p)]
    return []


def conf_with(path, groups, extra_line=None):
    """Write the config; with extra_line, insert it in the first group and
    return the line number it got."""
    write_conf(path, groups)
    if extra_line is None:
        return None
    lines = open(path).read().split("\n")
    at = lines.index("  }")  # end of the first group
    lines.insert(at, "    " + extra_line)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return at + 1


class Load(threading.Thread):
    """GET / in a loop until stopped; counts answers and every failure."""

    def __init__(self, port, keepalive=False, timeout=5.0):
        super().__init__(daemon=True)
        self.port, self.keepalive, self.timeout = port, keepalive, timeout
        self.halt = threading.Event()
        self.ok = 0
        self.errors = []
        self.bodies = collections.Counter()

    def run(self):
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                      timeout=self.timeout)
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode()
                if r.status != 200:
                    self.errors.append("status %d" % r.status)
                else:
                    self.ok += 1
                    self.bodies[body] += 1
                if not self.keepalive or r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.errors.append("%s after %d ok" % (repr(e), self.ok))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def finish(self):
        self.halt.set()
        self.join(15)
        assert not self.is_alive(), "the load thread is stuck"


def loads(port):
    ls = [Load(port), Load(port, keepalive=True)]
    for l in ls:
        l.start()
    return ls


def finish_loads(ls):
    for l in ls:
        l.finish()
    return sum(l.ok for l in ls), [e for l in ls for e in l.errors], \
        sum((l.bodies for l in ls), collections.Counter())


# ---- 1. SIGHUP ------------------------------------------------------------------


def test_sighup_replaces_every_worker_without_a_failed_request(supervisor):
    s, port, old = web(supervisor, HELLO_A, workers=3)
    ls = loads(port)
    try:
        wait_for(lambda: all(l.ok > 20 for l in ls), 10, "load to flow")
        s.signal(signal.SIGHUP)
        s.wait_log(r"web: rollover to generation 2 begun \(trigger: signal\)")
        s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: signal\); "
                   r"stopping 3 workers of generation 1")
        wait_gone(old)
        # Keep the load on the new generation a little, then stop it.
        n = sum(l.ok for l in ls)
        wait_for(lambda: sum(l.ok for l in ls) > n + 50, 10, "load after the rollover")
    finally:
        ok, errors, bodies = finish_loads(ls)
    assert errors == [], errors
    assert ok > 100 and set(bodies) == {VARIANT_A}
    new = s.wait_workers(3)
    assert not set(new) & set(old)
    for p in old:
        assert re.search(r"worker %d \(slot \d, generation 1\) exited with status 0" % p, s.log())
    wait_generation(port, 2)
    assert pid_info(port)["pid"] in new
    log = s.log()
    assert "aborted" not in log
    # Capacity: no old worker was told to stop before every new one was ready.
    lines = log.splitlines()
    last_ready = max(i for i, l in enumerate(lines) if re.search(r"generation 2\) ready", l))
    first_stop = min(i for i, l in enumerate(lines) if re.search(r"generation 1\) stopping", l))
    assert last_ready < first_stop, log


# ---- 2. every way of replacing a binary: one rollover each ----------------------


def replace_install(app, new, tmp_path):
    subprocess.run(["install", "-m755", new, app], check=True, timeout=10)


def replace_cp_mv(app, new, tmp_path):
    tmp = os.path.join(os.path.dirname(app), ".app.tmp")
    subprocess.run(["cp", new, tmp], check=True, timeout=10)
    subprocess.run(["mv", tmp, app], check=True, timeout=10)


def replace_cp_f(app, new, tmp_path):
    # app is running: cp cannot open it (ETXTBSY), so -f unlinks and creates.
    subprocess.run(["cp", "-f", new, app], check=True, timeout=10)


def write_in_pieces(app, new, mode, pieces):
    """Unlink app, then write new into a new inode in pieces, each pause
    longer than settle, so that the check runs mid-write."""
    data = open(new, "rb").read()
    os.unlink(app)
    fd = os.open(app, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    step = len(data) // pieces + 1
    for i in range(0, len(data), step):
        os.write(fd, data[i:i + step])
        time.sleep(0.15)
    os.close(fd)


def replace_like_ld(app, new, tmp_path):
    """GNU ld: unlink, create 0666 & ~umask, write in pieces, close, chmod."""
    write_in_pieces(app, new, 0o644, 4)
    time.sleep(0.15)      # complete but not executable yet
    os.chmod(app, 0o755)


def replace_slow_copy(app, new, tmp_path):
    """One open (a new inode, executable from the start), chunks 150 ms apart."""
    write_in_pieces(app, new, 0o755, 5)


def replace_like_lld(app, new, tmp_path):
    """lld: write a temp file, rename it over the output, *then* close it."""
    data = open(new, "rb").read()
    tmp = os.path.join(os.path.dirname(app), "app.tmp1234")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    os.write(fd, data[:len(data) // 2])
    os.rename(tmp, app)
    time.sleep(0.15)  # renamed into place but still open for writing
    os.write(fd, data[len(data) // 2:])
    os.close(fd)


def replace_append_chunks(app, new, tmp_path):
    """A writer that reopens and appends per chunk: a CLOSE_WRITE per chunk."""
    data = open(new, "rb").read()
    os.unlink(app)
    step = len(data) // 5 + 1
    for i in range(0, len(data), step):
        fd = os.open(app, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o755)
        os.write(fd, data[i:i + step])
        os.close(fd)
        time.sleep(0.15)


def replace_delete_recreate(app, new, tmp_path):
    os.unlink(app)
    time.sleep(0.3)  # the gap being simulated, longer than settle
    subprocess.run(["cp", new, app], check=True, timeout=10)


def setup_symlink(tmp_path):
    os.mkdir(str(tmp_path / "v1"))
    copy_exec(HELLO_A, str(tmp_path / "v1" / "app"))
    os.symlink(str(tmp_path / "v1" / "app"), str(tmp_path / "app"))
    return str(tmp_path / "app")


def stage_v2(tmp_path, new):
    os.mkdir(str(tmp_path / "v2"))
    copy_exec(new, str(tmp_path / "v2" / "app"))
    return str(tmp_path / "v2" / "app")


def replace_ln_sfn(app, new, tmp_path):
    subprocess.run(["ln", "-sfn", stage_v2(tmp_path, new), app], check=True, timeout=10)


def replace_symlink_mv_T(app, new, tmp_path):
    lnk = str(tmp_path / ".app.lnk")
    os.symlink(stage_v2(tmp_path, new), lnk)
    subprocess.run(["mv", "-T", lnk, app], check=True, timeout=10)


def setup_plain(tmp_path):
    app = str(tmp_path / "app")
    copy_exec(HELLO_A, app)
    return app


# method: (setup, replace, a log line showing the check ran on the
# unfinished file and deferred it; None where the change is atomic)
METHODS = {
    "install": (setup_plain, replace_install, None),
    "cp-then-mv": (setup_plain, replace_cp_mv, None),
    "cp-f": (setup_plain, replace_cp_f, None),
    "like-ld": (setup_plain, replace_like_ld, r"app: not executable; not rolling over"),
    "like-lld": (setup_plain, replace_like_lld, r"app: still open for writing; waiting"),
    "slow-copy": (setup_plain, replace_slow_copy, r"app: still open for writing; waiting"),
    "append-chunks": (setup_plain, replace_append_chunks, r"app: incomplete ELF file"),
    "delete-recreate": (setup_plain, replace_delete_recreate,
                        r"app: No such file or directory; not rolling over"),
    "symlink-ln-sfn": (setup_symlink, replace_ln_sfn, None),
    "symlink-mv-T": (setup_symlink, replace_symlink_mv_T, None),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_replacement_rolls_over_exactly_once(supervisor, tmp_path, method):
    setup, replace, deferred = METHODS[method]
    app = setup(tmp_path)
    s, port, old = web(supervisor, app, watch=True, settle=0.05)
    assert try_get(port) == VARIANT_A
    replace(app, HELLO_B, tmp_path)
    wait_body(port, VARIANT_B)
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: watch\)")
    wait_gone(old)
    time.sleep(QUIET)  # observation window: no second rollover may follow
    log = s.log()
    assert rollovers(s) == [("2", "watch")], log
    assert "aborted" not in log, log
    # The half-written file was never run: no worker failed or crashed.
    assert not re.search(r"killed by signal|restarting in|exited with status [1-9]"
                         r"|cannot start", log), log
    if deferred:
        assert re.search(deferred, log), log
    assert try_get(port) == VARIANT_B
    assert len(s.wait_workers(2)) == 2
    wait_generation(port, 2)


# ---- 3. a truncated binary moved into place is never run ------------------------


def test_truncated_binary_is_not_run_until_complete(supervisor, tmp_path):
    s, port, old, app = watched_web(supervisor, tmp_path)
    data = open(HELLO_B, "rb").read()
    part = str(tmp_path / ".app.part")
    with open(part, "wb") as f:
        f.write(data[:len(data) // 2])
    os.chmod(part, 0o755)
    os.rename(part, app)  # atomic, executable, but cut short
    s.wait_log(r"web: %s: incomplete ELF file" % re.escape(app))
    time.sleep(0.5)  # observation window, 10x settle
    assert rollovers(s) == [], s.log()
    assert s.workers() == old
    assert try_get(port) == VARIANT_A
    # The complete file lands: one rollover.
    full = str(tmp_path / ".app.full")
    copy_exec(HELLO_B, full)
    os.rename(full, app)
    wait_body(port, VARIANT_B)
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: watch\)")
    time.sleep(QUIET)
    assert rollovers(s) == [("2", "watch")], s.log()
    assert "aborted" not in s.log()


# ---- 4. an invalid config on SIGHUP changes nothing ---------------------------


def test_invalid_config_on_sighup_keeps_old_generation(supervisor, tmp_path):
    port = free_port()
    g = group_conf(name="web", command=HELLO_A, workers=2,
                   listen=["127.0.0.1:%d" % port])
    s = supervisor([g])
    old = sorted(s.wait_ready(2))
    line = conf_with(s.conf, [g], extra_line="bogus_key = 1;")
    s.signal(signal.SIGHUP)
    s.wait_log(r"%s: not reloaded; still running the previous configuration"
               % re.escape(s.conf))
    assert re.search(r"%s:%d: .*bogus_key" % (re.escape(s.conf), line), s.log()), s.log()
    assert rollovers(s) == []
    assert s.workers() == old
    assert try_get(port) == VARIANT_A
    assert pid_info(port)["generation"] == 1
    # Fixed: the next SIGHUP rolls over.
    conf_with(s.conf, [g])
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: signal\)")
    assert rollovers(s) == [("2", "signal")]
    wait_gone(old)
    wait_generation(port, 2)


# ---- 5. broken new binaries abort; the old generation serves untouched ------------


@pytest.mark.parametrize("bad,extra,reason", [
    (BAD_EXIT, {}, r"worker \d exited with status 1 before ready"),
    (BAD_NOREADY, {"ready_timeout": 1}, r"worker \d not ready within 1000 ms"),
], ids=["bad-exit", "bad-noready"])
def test_broken_binary_aborts_and_old_generation_serves(supervisor, tmp_path,
                                                         bad, extra, reason):
    s, port, old, app = watched_web(supervisor, tmp_path, **extra)
    ls = loads(port)
    try:
        wait_for(lambda: all(l.ok > 5 for l in ls), 10, "load to flow")
        subprocess.run(["install", "-m755", bad, app], check=True, timeout=10)
        s.wait_log(r"web: rollover to generation 2 begun \(trigger: watch\)")
        s.wait_log(r"web: generation 2 aborted: " + reason)
        # Its workers go; the old ones were never touched.
        wait_children(s, old)
        n = sum(l.ok for l in ls)
        wait_for(lambda: sum(l.ok for l in ls) > n + 20, 10, "load after the abort")
    finally:
        ok, errors, bodies = finish_loads(ls)
    assert errors == [], errors
    assert set(bodies) == {VARIANT_A}
    assert "generation 2 serving" not in s.log()
    assert not re.search(r"generation 1\) stopping", s.log()), s.log()
    assert try_get(port) == VARIANT_A and pid_info(port)["generation"] == 1
    # A later, good binary rolls over.
    subprocess.run(["install", "-m755", HELLO_B, app], check=True, timeout=10)
    s.wait_log(r"web: generation 3 serving after \d+ ms \(trigger: watch\); "
               r"stopping 2 workers of generation 1")
    wait_body(port, VARIANT_B)
    wait_gone(old)
    assert [g for g, _ in rollovers(s)] == ["2", "3"]


def test_binary_crashing_after_ready(supervisor, tmp_path):
    """bad-crash is READY at once and dies of SIGSEGV 300 ms later.

    All its workers are ready within milliseconds, long before the crash,
    so the rollover cannot tell it from a good binary: generation 2 is
    promoted, generation 1 is stopped, and the pinned bad binary is then
    restarted with backoff.  bad-crash never accepts, so connections wait
    in the listen queue (held by the supervisor) instead of failing, and
    the next good binary answers them.
    """
    s, port, old, app = watched_web(supervisor, tmp_path)
    subprocess.run(["install", "-m755", BAD_CRASH, app], check=True, timeout=10)
    s.wait_log(r"web: rollover to generation 2 begun \(trigger: watch\)")
    s.wait_log(r"web: generation 2 (aborted|serving after)")
    s.wait_log(r"web: (generation 2 aborted|worker \d+ \(slot \d, generation 2\) "
               r"killed by signal 11 \(SEGV\) after \d+ ms; restarting in \d+ ms)")
    promoted = "generation 2 serving" in s.log()
    if promoted:
        # Restarted with backoff, from the pinned bad binary, in generation 2.
        s.wait_log(r"web: worker \d+ \(slot \d, generation 2\) started", 3)
    assert s.proc.poll() is None
    # A request made now is queued on the listener, not refused: the
    # connection is established by the kernel whether or not anyone accepts.
    c = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        subprocess.run(["install", "-m755", HELLO_B, app], check=True, timeout=10)
        s.wait_log(r"web: generation 3 serving after \d+ ms \(trigger: watch\)")
        answer = recv_all(c)
    finally:
        c.close()
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 ") and body in (VARIANT_A, VARIANT_B), answer
    wait_body(port, VARIANT_B)
    wait_gone(old)
    assert len(s.wait_workers(2)) == 2
    assert s.proc.poll() is None


# ---- 6. a restarted worker runs its generation's pinned binary ------------------


def test_restart_runs_pinned_binary_after_path_replaced(supervisor, tmp_path):
    app = str(tmp_path / "app")
    copy_exec(HELLO_A, app)
    s, port, (pid,) = web(supervisor, app, workers=1, watch=False)
    new = str(tmp_path / ".app.new")
    copy_exec(HELLO_B, new)
    os.rename(new, app)
    os.kill(pid, signal.SIGKILL)
    s.wait_log(r"worker %d \(slot 0, generation 1\) killed by signal 9" % pid)
    s.wait_ready(2)
    (pid2,) = s.wait_workers(1)
    assert pid2 != pid
    assert try_get(port) == VARIANT_A
    info = pid_info(port)
    assert info["pid"] == pid2 and info["generation"] == 1
    exe = os.readlink("/proc/%d/exe" % pid2)
    assert exe == app + " (deleted)", exe
    assert rollovers(s) == []


# ---- 7. newest wins ------------------------------------------------------------


def test_newest_trigger_wins(supervisor, tmp_path):
    # A worker that takes 0.5 s to start, so that triggers overlap.
    slow = tmp_path / "slow-hello"
    slow.write_text("#!/bin/sh\nsleep 0.5\nexec %s \"$@\"\n" % HELLO_A)
    slow.chmod(0o755)
    s, port, old = web(supervisor, str(slow), workers=2)
    for gen in (2, 3, 4):
        s.signal(signal.SIGHUP)
        # One signal at a time: pending SIGHUPs would merge into one.
        s.wait_log(r"web: rollover to generation %d begun" % gen)
    s.wait_log(r"web: generation 4 serving after \d+ ms \(trigger: signal\)")
    log = s.log()
    assert re.search(r"web: generation 2 aborted: superseded by generation 3", log), log
    assert re.search(r"web: generation 3 aborted: superseded by generation 4", log), log
    assert "generation 2 serving" not in log and "generation 3 serving" not in log
    wait_gone(old)
    wait_for(lambda: len(s.workers()) == 2, 10, "2 workers, no leftovers")
    wait_generation(port, 4)
    workers = s.workers()
    for p in workers:
        assert re.search(r"worker %d \(slot \d, generation 4\) ready" % p, s.log())
    time.sleep(0.3)  # no late leftovers either
    assert s.workers() == workers


# ---- 8. an in-flight request outlives the rollover ------------------------------


def test_slow_request_completes_across_rollover(supervisor):
    s, port, old = web(supervisor, HELLO_A, workers=2)
    result = {}
    cport = free_port()

    def slow():
        t0 = time.monotonic()
        try:
            result["r"] = slow_get(port, "/sleep?ms=2000", cport)
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            result["r"] = repr(e)
        result["t"] = time.monotonic() - t0
        result["log"] = s.log()

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    # In flight: an old worker has accepted it and read the request.
    holder = wait_for(lambda: holding_request(old, port, cport), 5,
                      "an old worker to hold the /sleep request")[0]
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 serving after \d+ ms")
    assert pid_alive(holder)
    t.join(15)
    assert result.get("r") == (200, "slept 2000 ms\n"), result
    assert 1.9 < result["t"] < 5
    assert "generation 2 serving" in result["log"]  # it finished after the rollover
    s.wait_log(r"worker %d \(slot \d, generation 1\) exited with status 0" % holder)
    wait_gone(old)


# ---- 9. reloading a changed config ---------------------------------------------


def test_reload_scales_and_adds_listener_keeping_sockets(supervisor, tmp_path):
    p1, p2 = free_port(), free_port()
    s = supervisor([group_conf(name="web", command=HELLO_A, workers=2,
                               listen=["127.0.0.1:%d" % p1])])
    old = sorted(s.wait_ready(2))
    (inode,) = listen_inodes(p1)
    assert inode in socket_inodes(s.pid)
    write_conf(s.conf, [group_conf(name="web", command=HELLO_B, workers=3,
                                   listen=["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2])])
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: signal\); "
               r"stopping 2 workers of generation 1")
    wait_gone(old)
    new = s.wait_workers(3)
    assert not set(new) & set(old)
    wait_body(p1, VARIANT_B)
    wait_body(p2, VARIANT_B)
    assert pid_info(p2)["generation"] == 2
    # The old port is still the very same socket; the new one is held too.
    assert listen_inodes(p1) == {inode}
    (inode2,) = listen_inodes(p2)
    held = socket_inodes(s.pid)
    assert inode in held and inode2 in held
    assert sorted(len(re.findall(r"listening on 127\.0\.0\.1:%d\b" % p, s.log()))
                  for p in (p1, p2)) == [1, 1]


def test_reload_removing_group_drains_it(supervisor, tmp_path):
    p1, p2 = free_port(), free_port()
    web_g = group_conf(name="web", command=HELLO_A, workers=2, listen=["127.0.0.1:%d" % p1])
    aux_g = group_conf(name="aux", command=HELLO_B, workers=2, listen=["127.0.0.1:%d" % p2])
    s = supervisor([web_g, aux_g])
    s.wait_ready(4)
    ready = {int(p): g for g, p in re.findall(r"(\w+): worker (\d+) \(slot \d, generation 1\) ready",
                                                s.log())}
    aux = sorted(p for p, g in ready.items() if g == "aux")
    web_old = sorted(p for p, g in ready.items() if g == "web")
    assert len(aux) == 2 and try_get(p2) == VARIANT_B
    write_conf(s.conf, [web_g])
    s.signal(signal.SIGHUP)
    s.wait_log(r"aux: removed")
    s.wait_log(r"web: generation 2 serving after")
    for p in aux:
        assert re.search(r"aux: worker %d \(slot \d, generation 1\) stopping" % p, s.log())
        assert re.search(r"aux: worker %d \(slot \d, generation 1\) exited with status 0" % p,
                         s.log())
    wait_gone(aux + web_old)
    assert len(s.wait_workers(2)) == 2
    assert try_get(p1) == VARIANT_A
    # Its address is closed with it.
    wait_for(lambda: not listen_inodes(p2), 5, "port %d to be closed" % p2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p2), timeout=2).close()


# ---- more watch cases ------------------------------------------------------------


def test_touch_rolls_over_once_with_same_content(supervisor, tmp_path):
    """A completed change of a watched file rolls over even with the same bytes."""
    s, port, old, app = watched_web(supervisor, tmp_path)
    st = os.stat(app)
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: watch\)")
    wait_gone(old)
    time.sleep(QUIET)
    assert rollovers(s) == [("2", "watch")], s.log()
    wait_generation(port, 2)
    assert try_get(port) == VARIANT_A


def test_chmod_off_and_on_does_not_roll_over(supervisor, tmp_path):
    s, port, old, app = watched_web(supervisor, tmp_path)
    os.chmod(app, 0o644)
    s.wait_log(r"web: %s: not executable; not rolling over" % re.escape(app))
    os.chmod(app, 0o755)
    time.sleep(0.5)  # observation window, 10x settle
    assert rollovers(s) == [], s.log()
    assert s.workers() == old


def test_symlink_target_directory_is_followed(supervisor, tmp_path):
    """Installing over the link's target rolls over; after a swap, the new
    target's directory is watched and the old one no longer matters."""
    app = setup_symlink(tmp_path)
    s, port, old = web(supervisor, app, watch=True, settle=0.05)
    v1 = str(tmp_path / "v1" / "app")
    subprocess.run(["install", "-m755", HELLO_B, v1], check=True, timeout=10)
    s.wait_log(r"web: generation 2 serving after \d+ ms \(trigger: watch\)")
    wait_body(port, VARIANT_B)
    replace_ln_sfn(app, HELLO_A, tmp_path)  # now app -> v2/app (variant a)
    s.wait_log(r"web: generation 3 serving after \d+ ms \(trigger: watch\)")
    wait_body(port, VARIANT_A)
    # v1 is no longer what runs: changing it does nothing.
    subprocess.run(["install", "-m755", HELLO_B, v1], check=True, timeout=10)
    time.sleep(0.5)  # observation window, 10x settle
    assert len(rollovers(s)) == 2, s.log()
    # v2 is: installing over it rolls over.
    subprocess.run(["install", "-m755", HELLO_B, str(tmp_path / "v2" / "app")],
                   check=True, timeout=10)
    s.wait_log(r"web: generation 4 serving after \d+ ms \(trigger: watch\)")
    wait_body(port, VARIANT_B)
    time.sleep(0.3)
    assert [g for g, _ in rollovers(s)] == ["2", "3", "4"], s.log()


def test_sighup_with_half_written_binary_aborts_cleanly(supervisor, tmp_path):
    """SIGHUP checks the command at once: a truncated file is refused, not run."""
    s, port, old, app = watched_web(supervisor, tmp_path, settle=5, settle_max=10)
    data = open(HELLO_B, "rb").read()
    part = str(tmp_path / ".app.part")
    with open(part, "wb") as f:
        f.write(data[:len(data) // 2])
    os.chmod(part, 0o755)
    os.rename(part, app)
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 aborted: %s: incomplete ELF file" % re.escape(app))
    assert not re.search(r"generation 2\) started", s.log()), s.log()
    assert s.workers() == old
    assert try_get(port) == VARIANT_A


def test_script_with_missing_interpreter_aborts(supervisor, tmp_path):
    """A #! script passes the file checks but cannot be exec'd: abort.

    This is also the path where the aborted generation is freed inside
    gen_launch() and then read again (group.c); it shows as a crash of the
    supervisor when the daemon is built with -fsanitize=address
    (ROLLOVER_BUILD=that build directory)."""
    s, port, old, app = watched_web(supervisor, tmp_path)
    bad = str(tmp_path / ".app.new")
    with open(bad, "w") as f:
        f.write("#!/nonexistent/interpreter\n")
    os.chmod(bad, 0o755)
    os.rename(bad, app)
    s.wait_log(r"web: generation 2 aborted: worker 0 could not be started: "
               r"No such file or directory")
    assert s.proc.poll() is None
    assert s.workers() == old
    assert try_get(port) == VARIANT_A
    subprocess.run(["install", "-m755", HELLO_B, app], check=True, timeout=10)
    s.wait_log(r"web: generation 3 serving after \d+ ms \(trigger: watch\)")
    wait_body(port, VARIANT_B)


# ---- listening sockets that a reload leaves behind ---------------------------------
#
# In per-worker mode every slot has its own SO_REUSEPORT socket, and the
# kernel spreads new connections over all of them.  A socket that a
# reload drops stays in that group until the supervisor closes it, and
# closing a socket of a reuseport group resets what is queued on it --
# unless net.ipv4.tcp_migrate_req = 1, which moves it to the address's
# other sockets.  rollover(8) says so, and the daemon warns when it
# closes such a socket without it.  These tests run with it set.


@pytest.fixture
def migrate_req():
    """net.ipv4.tcp_migrate_req = 1 for the test, restored after."""
    path = "/proc/sys/net/ipv4/tcp_migrate_req"
    old = open(path).read().strip()
    with open(path, "w") as f:
        f.write("1")
    yield
    with open(path, "w") as f:
        f.write(old)


def per_worker_reload(supervisor, port, before, after, wait_pattern, inflight_ms=0):
    """Reload from `before` to `after` under load; with inflight_ms, an old
    worker is busy with a slow request meanwhile, so the old generation
    (and the sockets only it uses) lives that much longer."""
    s = supervisor([group_conf(name="web", command=HELLO_A, listen=["127.0.0.1:%d" % port],
                               **before)])
    old = sorted(s.wait_ready(before["workers"]))
    slow = {}
    ls = loads(port) + [Load(port), Load(port)]
    for l in ls[2:]:
        l.start()
    try:
        wait_for(lambda: all(l.ok > 20 for l in ls), 10, "load to flow")
        if inflight_ms:
            cport = free_port()

            def run():
                try:
                    slow["r"] = slow_get(port, "/sleep?ms=%d" % inflight_ms, cport)
                except Exception as e:  # noqa: BLE001 - checked by the caller
                    slow["r"] = repr(e)
            slow["t"] = threading.Thread(target=run, daemon=True)
            slow["t"].start()
            wait_for(lambda: holding_request(old, port, cport), 5,
                     "an old worker to hold the slow request")
        write_conf(s.conf, [group_conf(name="web", listen=["127.0.0.1:%d" % port], **after)])
        s.signal(signal.SIGHUP)
        s.wait_log(wait_pattern, timeout=15)
        if inflight_ms:
            slow["t"].join(15)
            wait_gone(old)
        n = sum(l.ok for l in ls)
        wait_for(lambda: sum(l.ok for l in ls) > n + 100, 10, "load after the reload")
    finally:
        ok, errors, bodies = finish_loads(ls)
    if inflight_ms:
        assert slow.get("r") == (200, "slept %d ms\n" % inflight_ms), slow
    return s, old, ok, errors


@pytest.mark.parametrize("before,after", [
    ({"workers": 3, "listen_mode": "per-worker"}, {"workers": 2, "listen_mode": "per-worker"}),
    ({"workers": 2, "listen_mode": "shared"}, {"workers": 2, "listen_mode": "per-worker"}),
    ({"workers": 2, "listen_mode": "per-worker"}, {"workers": 2, "listen_mode": "shared"}),
], ids=["per-worker-3-to-2", "shared-to-per-worker", "per-worker-to-shared"])
def test_reload_dropping_a_socket_loses_no_connection(supervisor, migrate_req, before, after):
    port = free_port()
    after = dict(after, command=HELLO_B)
    s, old, ok, errors = per_worker_reload(
        supervisor, port, before, after, r"web: generation 2 serving after", inflight_ms=1000)
    wait_gone(old)
    assert errors == [], (len(errors), ok, errors[:3], s.log()[-1500:])
    assert len(s.wait_workers(after["workers"])) == after["workers"]
    wait_body(port, VARIANT_B)


def test_aborted_per_worker_scale_up_loses_no_connection(supervisor, migrate_req):
    """2 -> 3 per-worker workers with a binary that never gets ready: the
    third slot's new socket takes connections for a second, then the
    rollover aborts and the old generation (2 workers) must still answer
    every one of them."""
    port = free_port()
    s, old, ok, errors = per_worker_reload(
        supervisor, port, {"workers": 2, "listen_mode": "per-worker", "ready_timeout": 1},
        {"workers": 3, "listen_mode": "per-worker", "ready_timeout": 1, "command": BAD_NOREADY},
        r"web: generation 2 aborted: worker \d not ready within 1000 ms")
    assert s.workers() == old
    assert errors == [], (len(errors), ok, errors[:3], s.log()[-1500:])


def test_closing_a_slot_socket_without_migrate_req_warns(supervisor, tmp_path):
    path = "/proc/sys/net/ipv4/tcp_migrate_req"
    old = open(path).read().strip()
    with open(path, "w") as f:
        f.write("0")
    try:
        port = free_port()
        g = dict(name="web", command=HELLO_A, listen=["127.0.0.1:%d" % port],
                 listen_mode="per-worker")
        s = supervisor([group_conf(workers=3, **g)])
        s.wait_ready(3)
        write_conf(s.conf, [group_conf(workers=2, **g)])
        s.signal(signal.SIGHUP)
        s.wait_log(r"closed 127\.0\.0\.1:%d \(one slot's socket\)" % port)
        s.wait_log(r"warning: 127\.0\.0\.1:%d: connections queued on the closed "
                   r"socket are reset; net\.ipv4\.tcp_migrate_req = 1" % port)
    finally:
        with open(path, "w") as f:
            f.write(old)


# ---- groups removed and added back ------------------------------------------------


def test_group_readded_while_draining_runs_once(supervisor, tmp_path):
    """Remove a group, add it back while its last worker is still stopping,
    then reload again: the group runs its configured single worker, once."""
    port = free_port()
    web_g = group_conf(name="web", command=HELLO_A, workers=1, listen=["127.0.0.1:%d" % port])
    aux_g = group_conf(name="aux", command=TESTWORKER, workers=1,
                       args=["--stop-delay", "2"], stop_timeout=10)
    s = supervisor([web_g, aux_g])
    s.wait_ready(2)
    write_conf(s.conf, [web_g])
    s.signal(signal.SIGHUP)
    s.wait_log(r"aux: worker \d+ \(slot 0, generation 1\) stopping")
    write_conf(s.conf, [web_g, aux_g])
    s.signal(signal.SIGHUP)
    s.wait_log(r"SIGHUP: reloading", 2)
    s.signal(signal.SIGHUP)
    s.wait_log(r"SIGHUP: reloading", 3)
    s.wait_log(r"aux: removed", timeout=10)  # the old one has drained
    s.wait_log(r"web: generation 4 serving after")

    def aux_ready():
        return [p for p in s.workers()
                if re.search(r"aux: worker %d \(slot 0, generation \d+\) ready" % p, s.log())
                and not re.search(r"aux: worker %d .* stopping" % p, s.log())]
    wait_for(aux_ready, 10, "a serving aux worker")
    log = s.log()
    assert len(aux_ready()) == 1, ("aux workers serving: %s" % aux_ready(), log)
    assert len(re.findall(r"aux: starting generation 1", log)) == 2, log
