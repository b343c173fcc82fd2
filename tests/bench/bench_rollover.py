#!/usr/bin/python3
"""Rollover benchmarks: how fast a new generation serves, and what a
reload costs under load, next to nginx measured in the same run.

  1. SIGHUP -> new generation, with 2 and with 16 rollover-hello workers
     (ready = "notify"): (a) the daemon's own "serving after X ms"
     (trigger to all new workers ready = last old worker signalled),
     (b) from outside: SIGHUP sent -> first GET /pid answered by the new
     generation (a new connection per poll), (a') SIGHUP sent -> the
     timestamp of the daemon's "serving" log line.
  2. Binary replaced on disk (copy to a temp name + rename, alternating
     hello-a / hello-b, watch = true) -> first GET / answered by the new
     binary, with settle = 0 and with the default settle (0.1 s).
  3. The same wrk load (keep-alive) against rollover (2 hello workers,
     20 SIGHUP rollovers spaced evenly) and against nginx (2 workers,
     20 HUP reloads spaced evenly); plus the same load with no reload,
     as a baseline for each.

It prints numbers and asserts nothing about speed.  It exits non-zero
only when something is broken (a daemon that does not start, a rollover
that never completes or is aborted, wrk that produces no result).
Everything it starts is bounded in time and killed by pid.

Run by `make bench`, or: /usr/bin/python3 tests/bench/bench_rollover.py
Environment: ROLLOVER_BUILD (default build/), NGINX (default
/usr/sbin/nginx), BENCH_ROUNDS (rollovers per latency measure, default 30,
at least 20).
"""
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ROLLOVER_BUILD", os.path.join(ROOT, "build"))
ROLLOVER = os.path.join(BUILD, "rollover")
HELLO = os.path.join(BUILD, "rollover-hello")
HELLO_A = os.path.join(BUILD, "tests", "hello-a")
HELLO_B = os.path.join(BUILD, "tests", "hello-b")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
WRK = shutil.which("wrk") or "/usr/bin/wrk"

ROUNDS = max(20, int(os.environ.get("BENCH_ROUNDS", "30")))
LOAD_SECONDS = 10
LOAD_RELOADS = 20
LOAD_FIRST = 1.0            # first reload this long after wrk starts
LOAD_TAIL = 1.0             # and the last one at least this long before it ends
WRK_ARGS = ["-t2", "-c64", "-d%ds" % LOAD_SECONDS, "--timeout", "5s"]
POLL_SLEEP = 0.0005         # between outside polls (their resolution)
ROUND_PAUSE = 0.05          # quiet time between two measured rollovers
TIME_BUDGET = 175           # seconds, for the whole run (SIGALRM)
STEP_TIMEOUT = 10.0         # any single wait

BODY = "hello from rollover\n"  # rollover-hello's GET / and nginx's return


class Broken(Exception):
    """Something that is not a timing: the bench cannot go on."""


# ---- processes ------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, starttime) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return rest[0].decode(), int(rest[1]), int(rest[19])


def proc_children(ppid):
    """Direct children of ppid, zombies excluded (scanning /proc: this
    kernel has no /proc/PID/task/TID/children)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st is not None and st[1] == ppid and st[0] != "Z":
            out.append(int(d))
    return sorted(out)


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


class Tracked:
    """Pids we started or saw started, with their start times, so that
    cleanup kills exactly them and never a recycled pid."""

    def __init__(self):
        self.pids = {}

    def add(self, pid):
        st = proc_stat(pid)
        if st is not None and pid not in self.pids:
            self.pids[pid] = st[2]

    def kill_leftovers(self):
        left = []
        for pid, start in self.pids.items():
            st = proc_stat(pid)
            if st is not None and st[0] != "Z" and st[2] == start:
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return left


CLEANUPS = []  # objects with .close(); run in reverse on the way out
TMPDIRS = []   # removed after a run that went through


def mkdtemp():
    d = tempfile.mkdtemp(prefix="rollover-bench-")
    TMPDIRS.append(d)
    return d


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=2.0):
    """One GET on a new connection (Connection: close); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET " + path.encode() +
                  b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError("incomplete response: %r" % data[:80])
    return int(head.split(b" ", 2)[1]), body.decode(errors="replace")


def generation_of(port):
    status, body = http_get(port, "/pid")
    if status != 200:
        return None
    return json.loads(body)["generation"]


def poll(pred, t0, timeout=STEP_TIMEOUT, what="condition"):
    """Call pred() until true; (seconds since t0, errors seen on the way)."""
    errors = []
    while True:
        try:
            ok = pred()
        except (OSError, ValueError) as e:
            errors.append("%s: %s" % (type(e).__name__, e))
            ok = False
        now = time.monotonic()
        if ok:
            return now - t0, errors
        if now - t0 > timeout:
            raise Broken("timed out after %.1fs waiting for %s (poll errors: %s)"
                         % (timeout, what, errors[-3:]))
        time.sleep(POLL_SLEEP)


# ---- rollover ---------------------------------------------------------------

def conf_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def group_conf(**kw):
    lines = []
    for k, v in kw.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, str):
            v = conf_str(v)
        elif isinstance(v, (list, tuple)):
            v = "[ " + ", ".join(conf_str(x) for x in v) + " ]"
        lines.append("    %s = %s;" % (k, v))
    return "  {\n" + "\n".join(lines) + "\n  }"


STAMP_RE = r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\b[^\n]*?"


def stamp_epoch(s):
    """Seconds since the epoch of a log timestamp (local time, ms)."""
    try:
        whole, ms = s.split(".")
        return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000.0
    except (ValueError, OverflowError):
        return None


class Daemon:
    """`rollover -c CONF` with one group "web", its log, its workers."""

    def __init__(self, workdir, **group):
        self.workdir = workdir
        self.conf = os.path.join(workdir, "rollover.conf")
        with open(self.conf, "w") as f:
            f.write('control = "rollover.sock";\npid_file = "rollover.pid";\n'
                    'log_level = "info";\n')
            f.write("groups = (\n" + group_conf(name="web", **group) + "\n);\n")
        self.logpath = os.path.join(workdir, "rollover.log")
        self.logf = open(self.logpath, "wb")
        self.argv = [ROLLOVER, "-c", self.conf]
        self.tracked = Tracked()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=workdir)
        self.pid = self.proc.pid
        self.tracked.add(self.pid)
        CLEANUPS.append(self)
        self.text = ""
        self.offset = 0

    def read_log(self):
        with open(self.logpath, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        # Keep a partial last line for the next read.
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        self.text += data[:cut].decode(errors="replace")
        return self.text

    def tail(self, n=25):
        self.read_log()
        return "\n".join(self.text.splitlines()[-n:])

    def alive(self):
        return self.proc.poll() is None

    def wait_log(self, regex, timeout=STEP_TIMEOUT):
        rx = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.read_log())
            if m:
                return m
            if not self.alive():
                raise Broken("rollover exited (status %s) while waiting for %r; log:\n%s"
                             % (self.proc.returncode, regex, self.tail()))
            if time.monotonic() > deadline:
                raise Broken("timed out after %.1fs waiting for %r in the log:\n%s"
                             % (timeout, regex, self.tail()))
            time.sleep(0.002)

    def workers(self):
        ws = proc_children(self.pid)
        for w in ws:
            self.tracked.add(w)
        return ws

    def wait_workers(self, n, timeout=STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            ws = self.workers()
            if len(ws) == n:
                return ws
            if not self.alive():
                raise Broken("rollover exited (status %s); log:\n%s"
                             % (self.proc.returncode, self.tail()))
            if time.monotonic() > deadline:
                raise Broken("timed out waiting for %d workers (have %d); log:\n%s"
                             % (n, len(ws), self.tail()))
            time.sleep(0.005)

    def wait_started(self, n, port):
        """First generation up: n workers ready and answering."""
        try:
            self.wait_log(r"web: generation 1 (ready|serving) after")
        except Broken as e:
            raise Broken("the daemon did not start: %s" % e)
        self.wait_workers(n)
        poll(lambda: generation_of(port) == 1, time.monotonic(), what="GET /pid")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def close(self):
        """Graceful stop (TERM), then kill whatever is left, by pid."""
        if self in CLEANUPS:
            CLEANUPS.remove(self)
        rc = self.proc.poll()
        if rc is None:
            self.workers()
            self.signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                rc = "killed"
        left = self.tracked.kill_leftovers()
        self.logf.close()
        return rc, left


def serving_re(gen, trigger=None):
    return (STAMP_RE + r"web: generation %d serving after (?P<ms>\d+) ms \(trigger: (?P<trigger>%s)\)"
            % (gen, trigger or r"\w+"))


def begun_re(gen):
    return STAMP_RE + r"web: rollover to generation %d begun" % gen


def check_log_clean(d, first_gen, last_gen):
    """Every rollover in [first_gen, last_gen] begun once, none aborted."""
    text = d.read_log()
    aborted = re.findall(r"^.*aborted.*$", text, re.M)
    if aborted:
        raise Broken("aborted rollovers:\n" + "\n".join(aborted[:5]))
    begun = [int(g) for g in re.findall(r"rollover to generation (\d+) begun", text)]
    if begun != list(range(first_gen, last_gen + 1)):
        raise Broken("expected rollovers %d..%d, the log has %s"
                     % (first_gen, last_gen, begun))


# ---- nginx ----------------------------------------------------------------

class Nginx:
    """nginx, foreground master with its own config in a temp dir."""

    def __init__(self, workdir, port, workers=2):
        self.workdir = workdir
        self.conf = os.path.join(workdir, "nginx.conf")
        self.errlog = os.path.join(workdir, "error.log")
        user = ""
        if os.geteuid() == 0:
            user = "user nobody nogroup;\n"
        temps = "".join("    %s_temp_path %s;\n" % (t, os.path.join(workdir, t))
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(self.conf, "w") as f:
            f.write(
                "daemon off;\nmaster_process on;\nworker_processes %d;\n%s"
                "pid %s;\nerror_log %s warn;\n"
                "events { worker_connections 1024; }\n"
                "http {\n    access_log off;\n%s"
                "    server {\n        listen 127.0.0.1:%d;\n"
                "        location / { return 200 \"%s\\n\"; }\n    }\n}\n"
                % (workers, user, os.path.join(workdir, "nginx.pid"), self.errlog,
                   temps, port, BODY.rstrip("\n")))
        self.nworkers = workers
        self.argv = [NGINX, "-p", workdir, "-c", self.conf, "-e", self.errlog]
        self.outpath = os.path.join(workdir, "nginx.out")
        self.outf = open(self.outpath, "wb")
        self.tracked = Tracked()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.outf, stderr=subprocess.STDOUT,
                                     cwd=workdir)
        self.pid = self.proc.pid
        self.tracked.add(self.pid)
        self.ppids = {}
        CLEANUPS.append(self)
        try:
            deadline = time.monotonic() + STEP_TIMEOUT
            while len(self.serving_workers()) < workers:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise Broken("nginx did not start (status %s):\n%s\n%s"
                                 % (self.proc.poll(), self.output(), self.errors()))
                time.sleep(0.01)
            poll(lambda: http_get(port) == (200, BODY), time.monotonic(),
                 what="nginx GET /")
        except Broken:
            self.close()
            raise

    def output(self):
        with open(self.outpath, "rb") as f:
            return f.read().decode(errors="replace")

    def errors(self):
        try:
            with open(self.errlog, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def children(self):
        """The master's children.  Polled every millisecond during a
        reload, so it reads the stat of pids it has not seen before only
        (a pid's parent does not change while the nginx master lives)."""
        pids = {int(d) for d in os.listdir("/proc") if d.isdigit()}
        for gone in set(self.ppids) - pids:
            del self.ppids[gone]
        for p in pids - set(self.ppids):
            st = proc_stat(p)
            self.ppids[p] = st[1] if st is not None else None
        return [p for p, pp in self.ppids.items() if pp == self.pid]

    def worker_children(self):
        """{pid: shutting_down} for the master's worker processes (a
        zombie has an empty cmdline, so it does not count)."""
        out = {}
        for p in self.children():
            self.tracked.add(p)
            cmd = proc_cmdline(p)
            if "worker process" in cmd:
                out[p] = "shutting down" in cmd
        return out

    def serving_workers(self):
        return [p for p, down in self.worker_children().items() if not down]

    def close(self):
        if self in CLEANUPS:
            CLEANUPS.remove(self)
        rc = self.proc.poll()
        if rc is None:
            self.worker_children()
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                rc = self.proc.wait(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                rc = "killed"
        left = self.tracked.kill_leftovers()
        self.outf.close()
        return rc, left


# ---- wrk --------------------------------------------------------------------

def wrk_cmd(port):
    return [WRK] + WRK_ARGS + ["http://127.0.0.1:%d/" % port]


def parse_wrk(out):
    r = {"raw": out}
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not m:
        raise Broken("wrk gave no result:\n" + out)
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["connect"], r["read"], r["write"], r["timeout"] = (
        [int(x) for x in m.groups()] if m else [0, 0, 0, 0])
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    r["lat_avg"], r["lat_max"] = (m.group(1), m.group(3)) if m else ("?", "?")
    return r


HZ = os.sysconf("SC_CLK_TCK")


def machine_ticks():
    """(busy, steal) clock ticks of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal


def tree_ticks(root):
    """CPU ticks used by root and its descendants, counting the ones they
    have reaped already (cutime/cstime): a server's CPU, old workers too."""
    info = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        info[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        if p in info:
            total += info[p][1]
            todo += [c for c, (pp, _) in info.items() if pp == p]
    return total


class CpuMeter:
    """Where the CPU went while wrk ran: the whole machine, wrk, the
    server under test, this script, and everything else (other users of
    the machine make req/s noisy; this says how much they took)."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.t0 = time.monotonic()
        self.m0 = machine_ticks()
        self.s0 = tree_ticks(server_pid)
        self.c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.o0 = os.times()

    def server_done(self):
        self.s1 = tree_ticks(self.server_pid)
        self.m1 = machine_ticks()
        self.t1 = time.monotonic()
        self.o1 = os.times()

    def wrk_done(self):
        """Right after wrk was reaped: its rusage is the children's delta."""
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        secs = self.t1 - self.t0
        pct = lambda ticks: 100.0 * ticks / HZ / secs
        wrk = 100.0 * ((c1.ru_utime - self.c0.ru_utime) +
                       (c1.ru_stime - self.c0.ru_stime)) / secs
        me = 100.0 * ((self.o1.user - self.o0.user) +
                      (self.o1.system - self.o0.system)) / secs
        busy = pct(self.m1[0] - self.m0[0])
        server = pct(self.s1 - self.s0)
        return {"busy": busy, "steal": pct(self.m1[1] - self.m0[1]), "wrk": wrk,
                "server": server, "self": me, "other": busy - wrk - server - me}


class Wrk:
    def __init__(self, port, workdir, name, server_pid):
        self.argv = wrk_cmd(port)
        self.outpath = os.path.join(workdir, "wrk-%s.out" % name)
        self.outf = open(self.outpath, "wb")
        self.cpu = CpuMeter(server_pid)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.outf, stderr=subprocess.STDOUT)
        self.t0 = time.monotonic()
        CLEANUPS.append(self)

    def result(self):
        deadline = time.monotonic() + LOAD_SECONDS + 20
        # Sample the server's CPU as wrk ends, before it is reaped.
        while self.proc.poll() is None:
            st = proc_stat(self.proc.pid)
            if st is not None and st[0] == "Z":
                break
            if time.monotonic() > deadline:
                self.close()
                raise Broken("wrk did not finish")
            time.sleep(0.01 if time.monotonic() - self.t0 > LOAD_SECONDS - 0.5 else 0.1)
        self.cpu.server_done()
        self.proc.wait(timeout=5)
        cpu = self.cpu.wrk_done()
        self.close()
        with open(self.outpath, "rb") as f:
            r = parse_wrk(f.read().decode(errors="replace"))
        r["cpu"] = cpu
        return r

    def close(self):
        if self in CLEANUPS:
            CLEANUPS.remove(self)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.outf.close()


# ---- output ---------------------------------------------------------------

SUMMARY = []
NOTES = []


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.1f" % v if v < 100 else "%.0f" % v


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), max(vals), min(vals)


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def latency_rows(label_vals):
    """[(label, [ms...], extra)] -> table rows of n/median/max/min."""
    rows = []
    for label, vals, extra in label_vals:
        med, mx, mn = stats(vals)
        rows.append([label, len([v for v in vals if v is not None]),
                     fmt_ms(med), fmt_ms(mx), fmt_ms(mn), extra])
    return rows


LAT_HEADER = ["measure", "n", "median ms", "max ms", "min ms", "notes"]


def section(title):
    print()
    print("=" * 78)
    print(title)
    print("=" * 78)
    sys.stdout.flush()


def sh(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10, cwd=ROOT)
        return p.stdout.decode(errors="replace").strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "(%s)" % e


# ---- 1. SIGHUP -------------------------------------------------------------

def bench_sighup(nworkers):
    tmp = mkdtemp()
    port = free_port()
    d = Daemon(tmp, command=HELLO, workers=nworkers, ready="notify",
               listen=["127.0.0.1:%d" % port])
    print("  %d workers: %s   (config %s)" % (nworkers, " ".join(map(shlex.quote, d.argv)),
                                               d.conf))
    daemon_ms, outside_ms, stamp_ms, errors = [], [], [], []
    try:
        d.wait_started(nworkers, port)
        for i in range(ROUNDS):
            gen = i + 2
            wall0 = time.time()
            t0 = time.monotonic()
            d.signal(signal.SIGHUP)
            took, errs = poll(lambda: generation_of(port) == gen, t0,
                              what="generation %d to answer GET /pid" % gen)
            outside_ms.append(took * 1000)
            errors += errs
            m = d.wait_log(serving_re(gen))
            daemon_ms.append(int(m.group("ms")))
            st = stamp_epoch(m.group("stamp"))
            stamp_ms.append(None if st is None else (st - wall0) * 1000)
            d.wait_workers(nworkers)  # the old generation has exited
            time.sleep(ROUND_PAUSE)
        check_log_clean(d, 2, ROUNDS + 1)
    finally:
        rc, left = d.close()
    if rc != 0 or left:
        NOTES.append("sighup %dw: rollover stop status %s, leftover pids killed: %s"
                     % (nworkers, rc, left))
    return daemon_ms, outside_ms, stamp_ms, errors


# ---- 2. binary replaced on disk -------------------------------------------

def replace_binary(src, dst):
    """The deploy idiom: copy beside the target, then rename over it.
    Returns (wall, monotonic) taken just before the rename."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    wall0, t0 = time.time(), time.monotonic()
    os.rename(tmp, dst)
    return wall0, t0


def bench_watch(settle):
    tmp = mkdtemp()
    port = free_port()
    app = os.path.join(tmp, "app")
    shutil.copyfile(HELLO_A, app)
    os.chmod(app, 0o755)
    kw = dict(command=app, workers=2, ready="notify", watch=True,
              listen=["127.0.0.1:%d" % port])
    if settle is not None:
        kw["settle"] = settle
    d = Daemon(tmp, **kw)
    print("  settle=%s: %s   (config %s)" % ("default" if settle is None else settle,
                                             " ".join(map(shlex.quote, d.argv)), d.conf))
    outside_ms, daemon_ms, begun_ms, errors = [], [], [], []
    try:
        d.wait_started(2, port)
        if http_get(port)[1] != "variant a\n":
            raise Broken("hello-a does not answer 'variant a'")
        for i in range(ROUNDS):
            gen = i + 2
            src, want = (HELLO_B, "variant b\n") if i % 2 == 0 else (HELLO_A, "variant a\n")
            wall0, t0 = replace_binary(src, app)
            took, errs = poll(lambda: http_get(port)[1] == want, t0,
                              what="%r from generation %d" % (want, gen))
            outside_ms.append(took * 1000)
            errors += errs
            m = d.wait_log(serving_re(gen, "watch"))
            daemon_ms.append(int(m.group("ms")))
            b = d.wait_log(begun_re(gen))
            st = stamp_epoch(b.group("stamp"))
            begun_ms.append(None if st is None else (st - wall0) * 1000)
            d.wait_workers(2)
            time.sleep(ROUND_PAUSE)
        time.sleep(0.3)  # a stray extra rollover would show up by now
        check_log_clean(d, 2, ROUNDS + 1)
    finally:
        rc, left = d.close()
    if rc != 0 or left:
        NOTES.append("watch settle=%s: rollover stop status %s, leftover pids killed: %s"
                     % (settle, rc, left))
    return outside_ms, daemon_ms, begun_ms, errors


# ---- 3. under load ---------------------------------------------------------

def reload_schedule():
    interval = (LOAD_SECONDS - LOAD_FIRST - LOAD_TAIL) / LOAD_RELOADS
    return [LOAD_FIRST + i * interval for i in range(LOAD_RELOADS)], interval


def sleep_until(t):
    dt = t - time.monotonic()
    if dt > 0:
        time.sleep(dt)


def load_rollover(tmp, reloads):
    port = free_port()
    d = Daemon(tmp, command=HELLO, workers=2, ready="notify",
               listen=["127.0.0.1:%d" % port])
    hups = []
    try:
        d.wait_started(2, port)
        if http_get(port) != (200, BODY):
            raise Broken("rollover-hello does not answer %r" % BODY)
        w = Wrk(port, tmp, "rollover-%s" % ("reloads" if reloads else "baseline"), d.pid)
        if reloads:
            at, _ = reload_schedule()
            for t in at:
                sleep_until(w.t0 + t)
                hups.append(time.time())
                d.signal(signal.SIGHUP)
        res = w.result()
        daemon_ms, stamp_ms = [], []
        for i, wall0 in enumerate(hups):
            m = d.wait_log(serving_re(i + 2, "signal"))
            daemon_ms.append(int(m.group("ms")))
            st = stamp_epoch(m.group("stamp"))
            stamp_ms.append(None if st is None else (st - wall0) * 1000)
        if reloads:
            check_log_clean(d, 2, len(hups) + 1)
        d.wait_workers(2)
        res["daemon_ms"], res["stamp_ms"] = daemon_ms, stamp_ms
        res["argv"], res["server_argv"], res["conf"] = w.argv, d.argv, d.conf
        res["log_tail"] = d.tail(40)
    finally:
        rc, left = d.close()
    if rc != 0 or left:
        NOTES.append("load rollover: stop status %s, leftover pids killed: %s" % (rc, left))
    return res


def load_nginx(tmp, reloads):
    port = free_port()
    n = Nginx(tmp, port, workers=2)
    times, lingering = [], []
    try:
        w = Wrk(port, tmp, "nginx-%s" % ("reloads" if reloads else "baseline"), n.pid)
        if reloads:
            at, interval = reload_schedule()
            for t in at:
                sleep_until(w.t0 + t)
                before = n.worker_children()
                lingering.append(sum(1 for down in before.values() if down))
                t0 = time.monotonic()
                n.proc.send_signal(signal.SIGHUP)
                deadline = w.t0 + t + interval - 0.005
                done = None
                while time.monotonic() < deadline:
                    new = [p for p, down in n.worker_children().items()
                           if not down and p not in before]
                    if len(new) >= n.nworkers:
                        done = (time.monotonic() - t0) * 1000
                        break
                    time.sleep(0.001)
                times.append(done)
        res = w.result()
        res["reload_ms"], res["lingering"] = times, lingering
        res["argv"], res["server_argv"], res["conf"] = w.argv, n.argv, n.conf
        errs = n.errors()
        res["errlog"] = [l for l in errs.splitlines()
                         if re.search(r"\[(alert|crit|error|emerg)\]", l)]
    finally:
        rc, left = n.close()
    if left:
        NOTES.append("load nginx: leftover pids killed: %s" % left)
    return res


def print_wrk(name, r):
    print("  --- %s: %s" % (name, " ".join(map(shlex.quote, r["argv"]))))
    for l in r["raw"].rstrip().splitlines():
        print("      | " + l)


# ---- main -----------------------------------------------------------------

def header():
    print("rollover benchmark")
    print("command:   %s   (cwd %s)" % (" ".join(map(shlex.quote, [sys.executable] + sys.argv)),
                                        os.getcwd()))
    print("date:      %s" % datetime.datetime.now().isoformat(timespec="seconds"))
    print("nproc:     %d (os.cpu_count %s)" % (len(os.sched_getaffinity(0)), os.cpu_count()))
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else ""
    except OSError:
        pass
    print("cpu:       %s" % (model or "?"))
    print("kernel:    %s" % " ".join(platform.uname()[0:3:2] + (platform.machine(),)))
    print("loadavg:   %s" % open("/proc/loadavg").read().strip())
    print("nginx -v:  %s" % sh([NGINX, "-v"]))
    print("wrk:       %s" % sh([WRK, "-v"]).splitlines()[0])
    print("python:    %s" % sys.version.split()[0])
    print("rollover:  %s (%s)" % (sh([ROLLOVER, "-V"]), ROLLOVER))
    head = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    print("git:       %s%s" % (head, " + uncommitted changes" if dirty else ""))
    print("rounds:    %d rollovers per latency measure; load: wrk %s, %d reloads "
          "every %.2fs from t=%.1fs"
          % (ROUNDS, " ".join(WRK_ARGS), LOAD_RELOADS, reload_schedule()[1], LOAD_FIRST))
    print("outside polls: a new connection per GET, %.1f ms apart" % (POLL_SLEEP * 1000))
    sys.stdout.flush()


def err_summary(errors):
    if not errors:
        return ""
    return "%d poll errors, e.g. %s" % (len(errors), errors[0])


def main():
    for p in (ROLLOVER, HELLO, HELLO_A, HELLO_B):
        if not os.access(p, os.X_OK):
            raise Broken("%s is missing: run `make bench`" % p)
    header()
    t_start = time.monotonic()

    # 1 ----------------------------------------------------------------------
    section("1. SIGHUP -> new generation (rollover-hello, ready = \"notify\"), %d rollovers each"
            % ROUNDS)
    rows = []
    for nw in (2, 16):
        daemon_ms, outside_ms, stamp_ms, errors = bench_sighup(nw)
        rows += latency_rows([
            ("%2d workers (a)  daemon: trigger -> all ready/old signalled" % nw,
             daemon_ms, ""),
            ("%2d workers (b)  outside: HUP sent -> first new-gen response" % nw,
             outside_ms, err_summary(errors)),
            ("%2d workers (a') HUP sent -> 'serving' log stamp (+-1ms)" % nw,
             stamp_ms, ""),
        ])
        m_a, x_a, _ = stats(daemon_ms)
        m_b, x_b, _ = stats(outside_ms)
        SUMMARY.append("SUMMARY sighup %2d workers: (a) daemon median %s ms max %s ms; "
                       "(b) outside median %s ms max %s ms (n=%d%s)"
                       % (nw, fmt_ms(m_a), fmt_ms(x_a), fmt_ms(m_b), fmt_ms(x_b),
                          len(outside_ms), ", %d poll errors" % len(errors) if errors else ""))
    print()
    table(LAT_HEADER, rows)
    sys.stdout.flush()

    # 2 ----------------------------------------------------------------------
    section("2. binary replaced on disk (copy + rename, hello-a <-> hello-b, 2 workers, "
            "watch = true) -> first response from the new binary, %d replacements each"
            % ROUNDS)
    rows = []
    for settle, label in ((0, "settle=0"), (None, "settle=0.1 (default)")):
        outside_ms, daemon_ms, begun_ms, errors = bench_watch(settle)
        rows += latency_rows([
            ("%-20s outside: rename -> first new-binary response" % label,
             outside_ms, err_summary(errors)),
            ("%-20s rename -> 'begun' log stamp (+-1ms)" % label, begun_ms, ""),
            ("%-20s daemon: begun -> serving" % label, daemon_ms, ""),
        ])
        med, mx, _ = stats(outside_ms)
        SUMMARY.append("SUMMARY watch %-20s: rename -> first new-binary response median %s ms "
                       "max %s ms (n=%d%s)"
                       % (label, fmt_ms(med), fmt_ms(mx), len(outside_ms),
                          ", %d poll errors" % len(errors) if errors else ""))
    print()
    table(LAT_HEADER, rows)
    sys.stdout.flush()

    # 3 ----------------------------------------------------------------------
    section("3. same wrk load, keep-alive: rollover (2 rollover-hello workers) vs nginx "
            "(worker_processes 2), %d reloads each, plus a no-reload baseline" % LOAD_RELOADS)
    runs = {}
    # Interleaved, so that a slow patch of the (possibly shared) machine
    # does not land on one server only.
    for name, fn, reloads in (("rollover baseline", load_rollover, False),
                              ("nginx baseline", load_nginx, False),
                              ("rollover + %d SIGHUP" % LOAD_RELOADS, load_rollover, True),
                              ("nginx + %d HUP" % LOAD_RELOADS, load_nginx, True)):
        tmp = mkdtemp()
        runs[name] = r = fn(tmp, reloads)
        r["reloads"] = LOAD_RELOADS if reloads else 0
        if name.startswith("rollover") and name.endswith("baseline"):
            print("  rollover: %s   (config %s)" % (" ".join(map(shlex.quote, r["server_argv"])),
                                                    r["conf"]))
        if name.startswith("nginx") and name.endswith("baseline"):
            print("  nginx:    %s" % " ".join(map(shlex.quote, r["server_argv"])))
        print_wrk(name, r)
        sys.stdout.flush()
    print()
    rows = []
    order = ["rollover baseline", "rollover + %d SIGHUP" % LOAD_RELOADS,
             "nginx baseline", "nginx + %d HUP" % LOAD_RELOADS]
    for name in order:
        r = runs[name]
        per = "%.2f" % (r["errors"] / r["reloads"]) if r["reloads"] else "-"
        rows.append([name, "%.0f" % r["rps"], r["requests"], r["connect"], r["read"],
                     r["write"], r["timeout"], r["non2xx"], r["errors"], per,
                     r["lat_avg"], r["lat_max"]])
    table(["run", "req/s", "requests", "connect", "read", "write", "timeout", "non-2xx",
           "errors", "err/reload", "lat avg", "lat max"], rows)
    print()
    print("CPU while wrk ran, in %% of one core (the machine has %d): other = busy minus "
          "wrk, server and this script" % len(os.sched_getaffinity(0)))
    rows = []
    for name in order:
        c = runs[name]["cpu"]
        rows.append([name] + ["%.0f" % c[k] for k in
                              ("busy", "wrk", "server", "self", "other", "steal")])
    table(["run", "busy", "wrk", "server", "bench script", "other", "steal"], rows)

    ro, ng = runs["rollover + %d SIGHUP" % LOAD_RELOADS], runs["nginx + %d HUP" % LOAD_RELOADS]
    rob, ngb = runs["rollover baseline"], runs["nginx baseline"]
    print()
    print("time to new workers under load (ms):")
    nginx_done = [v for v in ng["reload_ms"] if v is not None]
    table(LAT_HEADER, latency_rows([
        ("rollover (a)  daemon: trigger -> all ready/old signalled", ro["daemon_ms"], ""),
        ("rollover (a') HUP sent -> 'serving' log stamp (+-1ms)", ro["stamp_ms"], ""),
        ("nginx  HUP sent -> 2 new workers not shutting down (/proc, 1ms polls)",
         nginx_done, ""),
    ]))
    print("nginx: %d of %d reloads not seen done before the next HUP; old workers still "
          "shutting down when a HUP was sent: median %s, max %s"
          % (len(ng["reload_ms"]) - len(nginx_done), len(ng["reload_ms"]),
             "%g" % statistics.median(ng["lingering"]) if ng["lingering"] else "-",
             max(ng["lingering"]) if ng["lingering"] else "-"))
    if ng.get("errlog"):
        print("nginx error log (alert/crit/error lines: %d), first ones:" % len(ng["errlog"]))
        for l in ng["errlog"][:5]:
            print("      | " + l)
    print()
    print("rollover / nginx:")
    table(["", "rollover", "nginx", "ratio rollover/nginx"], [
        ["req/s with reloads", "%.0f" % ro["rps"], "%.0f" % ng["rps"],
         "%.2f" % (ro["rps"] / ng["rps"]) if ng["rps"] else "-"],
        ["req/s baseline", "%.0f" % rob["rps"], "%.0f" % ngb["rps"],
         "%.2f" % (rob["rps"] / ngb["rps"]) if ngb["rps"] else "-"],
        ["errors with reloads (socket + non-2xx)", ro["errors"], ng["errors"], ""],
        ["errors per reload", "%.2f" % (ro["errors"] / LOAD_RELOADS),
         "%.2f" % (ng["errors"] / LOAD_RELOADS), ""],
        ["errors baseline", rob["errors"], ngb["errors"], ""],
    ])
    m_ro, x_ro, _ = stats(ro["daemon_ms"])
    m_ng, x_ng, _ = stats(nginx_done)
    SUMMARY.append("SUMMARY load req/s: rollover %.0f vs nginx %.0f with %d reloads each "
                   "(ratio %.2f; baselines %.0f vs %.0f, ratio %.2f; other processes "
                   "took up to %.0f%% of a core during these runs)"
                   % (ro["rps"], ng["rps"], LOAD_RELOADS, ro["rps"] / ng["rps"],
                      rob["rps"], ngb["rps"], rob["rps"] / ngb["rps"],
                      max(r["cpu"]["other"] for r in runs.values())))
    SUMMARY.append("SUMMARY load errors: rollover %d (%.2f/reload: connect %d read %d write %d "
                   "timeout %d non-2xx %d) vs nginx %d (%.2f/reload: connect %d read %d "
                   "write %d timeout %d non-2xx %d)"
                   % (ro["errors"], ro["errors"] / LOAD_RELOADS, ro["connect"], ro["read"],
                      ro["write"], ro["timeout"], ro["non2xx"],
                      ng["errors"], ng["errors"] / LOAD_RELOADS, ng["connect"], ng["read"],
                      ng["write"], ng["timeout"], ng["non2xx"]))
    SUMMARY.append("SUMMARY load time to new workers: rollover (daemon) median %s ms max %s ms "
                   "vs nginx (/proc) median %s ms max %s ms (%d/%d nginx reloads seen done)"
                   % (fmt_ms(m_ro), fmt_ms(x_ro), fmt_ms(m_ng), fmt_ms(x_ng),
                      len(nginx_done), len(ng["reload_ms"])))
    if ro["errors"] or rob["errors"]:
        NOTES.append("WARNING: wrk saw errors against rollover (promise 1 says zero); "
                     "rollover log tail:\n" + ro["log_tail"])

    print()
    print("=" * 78)
    for s in SUMMARY:
        print(s)
    for n in NOTES:
        print("NOTE: " + n)
    print("total bench time: %.1fs" % (time.monotonic() - t_start))


def on_alarm(signum, frame):
    raise Broken("time budget of %ds exceeded" % TIME_BUDGET)


def on_term(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(TIME_BUDGET)
    status = 0
    try:
        main()
    except Broken as e:
        print("\nBROKEN: %s" % e, flush=True)
        status = 1
    except KeyboardInterrupt as e:
        print("\ninterrupted (%s)" % e, flush=True)
        status = 130
    finally:
        signal.alarm(0)
        for c in reversed(list(CLEANUPS)):
            try:
                c.close()
            except Exception as e:  # cleanup must go on
                print("cleanup of %r failed: %s" % (c, e), flush=True)
        if status == 0:
            for d in TMPDIRS:
                shutil.rmtree(d, ignore_errors=True)
        elif TMPDIRS:
            print("work directories kept: %s" % " ".join(TMPDIRS), flush=True)
    sys.exit(status)
