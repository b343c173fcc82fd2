#!/usr/bin/python3
"""HTTP throughput of rollover-hello under rollover, next to nginx measured
in the same run on loopback with wrk.

  1. Throughput and latency: nginx (worker_processes 2, `return 200` with
     rollover-hello's GET / body and Content-Type, access log off), nginx
     with `reuseport`, and rollover with 2 rollover-hello workers in both
     listen modes ("shared" and "per-worker"), at 64 and 256 connections,
     keep-alive and `Connection: close`.  Runs alternate between the
     servers (the order rotates every round); each row is the median of
     the runs: req/s, p50 and p99 latency (wrk --latency), the ratio to
     nginx, the busiest worker's share of the workers' CPU (utime+stime
     from /proc/PID/stat), the workers' CPU and context switches per
     request, and the CPU that other processes took meanwhile (the
     machine may be shared).  rollover-hello runs as SCHED_BATCH (its
     default); the 64-connection rows also show what the policy is worth
     on each side: nginx started under `chrt --batch 0`, and rollover
     with `--no-batch`.  Both keep a connection for 1000 requests (nginx's
     keepalive_requests default, hello's --max-requests).
  2. The seed's comparison: the same hello with 1 process vs N (the CPU
     count) processes sharing one listener.
  3. Syscalls per request over a short wrk run (64 connections), keep-alive
     and close: counted by `perf stat -e raw_syscalls:sys_enter` (little
     overhead) and broken down by `strace -c -f -p` (which slows the
     workers, so its batching differs), divided by the requests wrk
     counted.  strace and perf come from `apt-get install -y strace
     linux-perf`; without one of them its column prints a skip line.
  4. Memory and idleness: VmRSS of the supervisor and of one worker, and
     the supervisor's CPU time and voluntary + involuntary context
     switches over an idle period (a daemon whose workers get no traffic,
     measured while the other parts run; the target is zero wake-ups).

It needs wrk and nginx (Debian packages); run as root, nginx's workers run
as nobody.  It prints numbers and asserts nothing about speed; it exits
non-zero only when something is broken (a server that does not start or
answers wrongly, a worker that dies, wrk without a result).  Every server binds 127.0.0.1 on a
free port; everything started is bounded in time and killed by pid.

Run by `make bench`, or: /usr/bin/python3 tests/bench/bench_http.py [--quick]
Options (or environment): --quick (BENCH_QUICK=1) for 2 runs of 1 s and a
short idle period while developing; --runs (BENCH_RUNS, default 6),
--seconds (BENCH_SECONDS, default 5), --idle (BENCH_IDLE, default 30).
ROLLOVER_BUILD (default build/) and NGINX (default /usr/sbin/nginx) say
which binaries run.
"""
import argparse
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
ROLLOVERCTL = os.path.join(BUILD, "rolloverctl")
HELLO = os.path.join(BUILD, "rollover-hello")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
STRACE = shutil.which("strace")
PERF = shutil.which("perf")

NCPU = len(os.sched_getaffinity(0))
HZ = os.sysconf("SC_CLK_TCK")
STEP_TIMEOUT = 10.0   # any single wait for a server
WRK_THREADS = 2
CONNS = (64, 256)
SYSCALL_CONNS = 64

NGINX_REF = "nginx"   # the reference of every ratio


class Broken(Exception):
    """Something that is not a timing: the bench cannot go on."""


# ---- processes ------------------------------------------------------------

def proc_stat(pid):
    """/proc/PID/stat as a dict, or None if pid is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return {"state": rest[0].decode(), "ppid": int(rest[1]),
            "utime": int(rest[11]), "stime": int(rest[12]),
            "start": int(rest[19])}


def proc_status(pid):
    """VmRSS (kB) and context switches from /proc/PID/status."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "voluntary_ctxt_switches",
                         "nonvoluntary_ctxt_switches", "TracerPid"):
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def proc_children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st is not None and st["ppid"] == ppid and st["state"] != "Z":
                out.append(int(d))
    return sorted(out)


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


class Tracked:
    """Pids with their start times, so that cleanup kills exactly them and
    never a recycled pid."""

    def __init__(self):
        self.pids = {}

    def add(self, pid):
        st = proc_stat(pid)
        if st is not None:
            self.pids.setdefault(pid, st["start"])

    def alive(self, pid):
        st = proc_stat(pid)
        return st is not None and st["state"] != "Z" and st["start"] == self.pids.get(pid)

    def kill_leftovers(self):
        left = [p for p in self.pids if self.alive(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


CLEANUPS = []  # objects with .close(); run in reverse on the way out
TMPDIRS = []   # removed after a run that went through
NOTES = []


def mkdtemp(what):
    d = tempfile.mkdtemp(prefix="rollover-bench-http-%s-" % what)
    TMPDIRS.append(d)
    return d


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=2.0):
    """One request on a new connection (Connection: close); returns
    (status, {lower-case header: value}, body bytes, whole response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET " + path.encode() +
                  b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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
    lines = head.decode(errors="replace").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body, data


def wait_until(pred, what, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if pred():
                return
        except (OSError, ValueError, KeyError) as e:
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() > deadline:
            raise Broken("timed out after %.0fs waiting for %s%s"
                         % (timeout, what, " (last error: %s)" % last if last else ""))
        time.sleep(0.01)


# ---- servers --------------------------------------------------------------

class Server:
    """What the benchmark needs from a server: a port, a main pid, its
    worker pids (fixed for the server's life), and a clean stop."""

    def __init__(self, name, workdir):
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.tracked = Tracked()
        self.worker_pids = []
        self.outpath = os.path.join(workdir, "server.out")
        self.outf = open(self.outpath, "wb")
        self.proc = None

    def spawn(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.outf,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        self.pid = self.proc.pid
        self.tracked.add(self.pid)
        CLEANUPS.append(self)

    def output(self, n=20):
        with open(self.outpath, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def check_workers(self):
        """A worker that died under load makes every number meaningless."""
        dead = [p for p in self.worker_pids if not self.tracked.alive(p)]
        if dead or self.proc.poll() is not None:
            raise Broken("%s: worker(s) %s or the main process (%s) died; output:\n%s"
                         % (self.name, dead, self.proc.poll(), self.output()))

    def stop_signal(self):
        self.proc.send_signal(signal.SIGTERM)

    def close(self):
        if self in CLEANUPS:
            CLEANUPS.remove(self)
        rc = self.proc.poll() if self.proc else "not started"
        if self.proc is not None and rc is None:
            for p in proc_children(self.pid):
                self.tracked.add(p)
            self.stop_signal()
            try:
                rc = self.proc.wait(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                rc = "killed"
        left = self.tracked.kill_leftovers()
        self.outf.close()
        if left or rc not in (0, "not started"):
            NOTES.append("%s: stop status %s, leftover pids killed: %s" % (self.name, rc, left))


def conf_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Rollover(Server):
    """`rollover -c CONF` with one group of rollover-hello workers."""

    def __init__(self, name, workers, listen_mode="shared", args=()):
        super().__init__(name, mkdtemp("rollover"))
        self.nworkers = workers
        self.conf = os.path.join(self.workdir, "rollover.conf")
        self.sock = os.path.join(self.workdir, "rollover.sock")
        self.conf_text = (
            'control = "rollover.sock";\npid_file = "rollover.pid";\n'
            'log_level = "info";\ngroups = (\n  {\n'
            '    name = "web";\n    command = %s;\n    args = [ %s ];\n'
            '    workers = %d;\n'
            '    listen = [ "127.0.0.1:%d" ];\n    listen_mode = "%s";\n'
            '    ready = "notify";\n  }\n);\n'
            % (conf_str(HELLO), ", ".join(map(conf_str, args)), workers, self.port,
               listen_mode))
        with open(self.conf, "w") as f:
            f.write(self.conf_text)
        self.spawn([ROLLOVER, "-c", self.conf])
        try:
            wait_until(self.all_ready, "%s: %d workers ready" % (name, workers))
            self.check_pid_endpoint()
        except Broken as e:
            raise Broken("%s; output:\n%s" % (e, self.output()))

    def status(self):
        p = subprocess.run([ROLLOVERCTL, "-S", self.sock, "status", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=STEP_TIMEOUT)
        if p.returncode != 0:
            raise ValueError(p.stdout.decode(errors="replace").strip())
        return json.loads(p.stdout)

    def all_ready(self):
        if self.proc.poll() is not None:
            raise Broken("rollover exited with status %s" % self.proc.returncode)
        ws = self.status()["groups"][0]["workers"]
        if len(ws) != self.nworkers or any(w["state"] != "ready" for w in ws):
            return False
        self.worker_pids = sorted(w["pid"] for w in ws)
        for p in self.worker_pids:
            self.tracked.add(p)
        return True

    def check_pid_endpoint(self):
        """GET /pid names one of the workers we measure."""
        status, _, body, _ = http_get(self.port, "/pid")
        pid = json.loads(body)["pid"] if status == 200 else None
        if pid not in self.worker_pids:
            raise Broken("%s: GET /pid answered %s %r, not one of the workers %s"
                         % (self.name, status, body[:80], self.worker_pids))


class Nginx(Server):
    """nginx as a foreground master with its own config in a temp dir."""

    def __init__(self, name, body, content_type, reuseport=False, workers=2, batch=False):
        super().__init__(name, mkdtemp("nginx"))
        if "$" in body or "{" in body:
            raise Broken("the hello body %r cannot be written in nginx's config" % body)
        text = (body.replace("\\", "\\\\").replace('"', '\\"')
                .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
        self.conf = os.path.join(self.workdir, "nginx.conf")
        errlog = os.path.join(self.workdir, "error.log")
        temps = "".join("    %s_temp_path %s;\n" % (t, os.path.join(self.workdir, t))
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf_text = (
            "daemon off;\nmaster_process on;\nworker_processes %d;\n%s"
            "pid %s;\nerror_log %s warn;\n"
            "events { worker_connections 4096; }\n"
            # keepalive_requests is left at its default, 1000, which is
            # also rollover-hello's --max-requests.
            "http {\n    access_log off;\n%s"
            "    default_type %s;\n"
            "    server {\n        listen 127.0.0.1:%d%s;\n"
            "        location / { return 200 \"%s\"; }\n    }\n}\n"
            % (workers, "user nobody nogroup;\n" if os.geteuid() == 0 else "",
               os.path.join(self.workdir, "nginx.pid"), errlog, temps,
               conf_str(content_type), self.port, " reuseport" if reuseport else "", text))
        with open(self.conf, "w") as f:
            f.write(self.conf_text)
        # chrt(1) sets the policy the master and its workers run with.
        self.spawn((["chrt", "--batch", "0"] if batch else [])
                   + [NGINX, "-p", self.workdir, "-c", self.conf, "-e", errlog])
        try:
            wait_until(lambda: len(self.find_workers()) == workers,
                       "%s: %d worker processes" % (name, workers))
            wait_until(lambda: http_get(self.port)[2] == body.encode(), "%s: GET /" % name)
        except Broken as e:
            raise Broken("%s; output:\n%s" % (e, self.output()))
        self.worker_pids = self.find_workers()

    def find_workers(self):
        if self.proc.poll() is not None:
            raise Broken("nginx exited with status %s" % self.proc.returncode)
        ws = [p for p in proc_children(self.pid) if "worker process" in proc_cmdline(p)]
        for p in ws:
            self.tracked.add(p)
        return ws


# ---- wrk and CPU ----------------------------------------------------------

def machine_ticks():
    """Clock ticks of all CPUs spent in processes or stolen, from
    /proc/stat.  Interrupts and softirqs are left out: on loopback most of
    them are the benchmark's own packets."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + steal


def pid_ticks(pids):
    """{pid: (utime, stime)} in clock ticks."""
    out = {}
    for p in pids:
        st = proc_stat(p)
        out[p] = (st["utime"], st["stime"]) if st else (0, 0)
    return out


def pid_switches(pids):
    """The voluntary and involuntary context switches of pids, summed."""
    n = 0
    for p in pids:
        st = proc_status(p)
        if st:
            n += st["voluntary_ctxt_switches"] + st["nonvoluntary_ctxt_switches"]
    return n


def parse_time_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def parse_wrk(out):
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    r = {"raw": out, "rps": float(m.group(1)) if m else None}
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1)) if m else 0
    r["errors"] = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["errors"] += int(m.group(1))
    for pct in ("50", "99"):
        m = re.search(r"^\s*%s(?:\.0+)?%%\s+(\S+)" % pct, out, re.M)
        r["p" + pct] = parse_time_ms(m.group(1)) if m else None
    if r["rps"] is None or r["requests"] == 0:
        raise Broken("wrk gave no result:\n" + out)
    return r


def wrk_argv(port, conns, close, seconds):
    argv = [WRK, "-t%d" % min(WRK_THREADS, conns), "-c%d" % conns, "-d%gs" % seconds,
            "--timeout", "5s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + ["http://127.0.0.1:%d/" % port]


def run_wrk(server, conns, close, seconds):
    """One wrk run, with the CPU each worker and everyone else used."""
    server.check_workers()
    argv = wrk_argv(server.port, conns, close, seconds)
    pids = server.worker_pids
    w0, m0, cs0 = pid_ticks(pids), machine_ticks(), pid_switches(pids)
    c0, s0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), os.times(), time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
        raise Broken("wrk did not finish: %s" % " ".join(argv))
    secs = time.monotonic() - t0
    w1, m1, cs1 = pid_ticks(pids), machine_ticks(), pid_switches(pids)
    c1, s1 = resource.getrusage(resource.RUSAGE_CHILDREN), os.times()
    server.check_workers()
    r = parse_wrk(out.decode(errors="replace"))
    r["argv"] = argv
    per = [(w1[q][0] - w0[q][0]) + (w1[q][1] - w0[q][1]) for q in pids]
    total = sum(per)
    r["busiest"] = 100.0 * max(per) / total if total else None
    usr = sum(w1[q][0] - w0[q][0] for q in pids)
    r["usr_us"] = 1e6 * usr / HZ / r["requests"]
    r["sys_us"] = 1e6 * (total - usr) / HZ / r["requests"]
    r["cs"] = (cs1 - cs0) / r["requests"]
    # In % of one core: what processes other than wrk, the server's
    # workers and this script took (others' builds and tests).
    wrk_s = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    me_s = (s1.user - s0.user) + (s1.system - s0.system)
    busy_s = (m1 - m0) / HZ
    r["other"] = max(0.0, 100.0 * (busy_s - wrk_s - total / HZ - me_s) / secs)
    return r


# ---- syscalls per request -------------------------------------------------

def wait_traced(pids, timeout=STEP_TIMEOUT):
    wait_until(lambda: all((proc_status(p) or {}).get("TracerPid", 0) for p in pids),
               "strace to attach to %s" % pids, timeout)


def stop_tool(p, name):
    """SIGINT makes strace and perf print their summary and detach."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
        raise Broken("%s did not exit after SIGINT" % name)


class Tool:
    """strace or perf attached to the workers; killed by pid if need be."""

    def __init__(self, argv, outfile):
        self.argv = argv
        self.outfile = outfile
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        CLEANUPS.append(self)

    def finish(self, name):
        stop_tool(self.proc, name)
        err = self.proc.stderr.read().decode(errors="replace")
        self.close()
        try:
            with open(self.outfile) as f:
                return f.read(), err
        except FileNotFoundError:
            return "", err

    def close(self):
        if self in CLEANUPS:
            CLEANUPS.remove(self)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stderr.close()


def parse_strace(text):
    """{syscall: calls} from `strace -c` output."""
    calls = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) in (5, 6) and re.match(r"[\d.]+$", f[0]) and f[-1] != "total":
            calls[f[-1]] = int(f[3])
    return calls


def syscalls_perf(server, close, seconds):
    out = os.path.join(server.workdir, "perf.out")
    t = Tool([PERF, "stat", "-x,", "-o", out, "-e", "raw_syscalls:sys_enter",
              "-p", ",".join(map(str, server.worker_pids))], out)
    time.sleep(0.3)  # perf attaches in well under this; the workers are idle
    if t.proc.poll() is not None:
        text, err = t.finish("perf")
        raise OSError("perf exited: %s" % err.strip()[:200])
    r = run_wrk(server, SYSCALL_CONNS, close, seconds)
    text, err = t.finish("perf")
    m = re.search(r"^(\d+),[^,]*,raw_syscalls:sys_enter", text, re.M)
    if not m:
        raise OSError("no count in perf's output: %r %r" % (text[-200:], err[-200:]))
    return int(m.group(1)) / r["requests"]


def syscalls_strace(server, close, seconds):
    out = os.path.join(server.workdir, "strace.out")
    argv = [STRACE, "-c", "-f", "-o", out]
    for p in server.worker_pids:
        argv += ["-p", str(p)]
    t = Tool(argv, out)
    wait_traced(server.worker_pids)
    r = run_wrk(server, SYSCALL_CONNS, close, seconds)
    text, err = t.finish("strace")
    calls = parse_strace(text)
    if not calls:
        raise OSError("no table in strace's output: %r" % (text[-300:] + err[-300:]))
    n = r["requests"]
    return sum(calls.values()) / n, {k: v / n for k, v in calls.items()}, n


# ---- output ---------------------------------------------------------------

def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    sys.stdout.flush()


def section(title):
    print()
    print("=" * 78)
    print(title)
    print("=" * 78)
    sys.stdout.flush()


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, f="%.2f"):
    return "-" if v is None else f % v


def sh(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10, cwd=ROOT)
        return p.stdout.decode(errors="replace").strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "(%s)" % e


def header(opts):
    print("rollover HTTP benchmark: rollover-hello under rollover vs nginx, wrk on loopback")
    print("command:   %s   (cwd %s)" % (" ".join(map(shlex.quote, [sys.executable] + sys.argv)),
                                        os.getcwd()))
    print("date:      %s" % datetime.datetime.now().isoformat(timespec="seconds"))
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else ""
    except OSError:
        pass
    print("cpus:      %d usable (%s)" % (NCPU, model or "?"))
    print("kernel:    %s" % " ".join(platform.uname()[0:3:2] + (platform.machine(),)))
    print("loadavg:   %s" % open("/proc/loadavg").read().strip())
    print("nginx:     %s" % sh([NGINX, "-v"]))
    print("wrk:       %s" % sh([WRK, "-v"]).splitlines()[0])
    print("strace:    %s" % (sh([STRACE, "-V"]).splitlines()[0] if STRACE else "missing"))
    print("rollover:  %s (%s)" % (sh([ROLLOVER, "-V"]), BUILD))
    head = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    print("git:       %s%s" % (head, " + uncommitted changes"
                               if dirty and not head.startswith("(") else ""))
    print("plan:      %d alternating runs of %gs per server and row%s, idle period %gs"
          % (opts.runs, opts.seconds, " (--quick)" if opts.quick else "", opts.idle))
    sys.stdout.flush()


# ---- the parts --------------------------------------------------------------

def start_servers(body, ctype):
    servers = {}
    servers["nginx"] = Nginx("nginx", body, ctype)
    servers["nginx reuseport"] = Nginx("nginx reuseport", body, ctype, reuseport=True)
    servers["rollover shared"] = Rollover("rollover shared", 2, "shared")
    servers["rollover per-worker"] = Rollover("rollover per-worker", 2, "per-worker")
    servers["hello x1"] = Rollover("hello x1", 1, "shared")
    servers["nginx batch"] = Nginx("nginx batch", body, ctype, batch=True)
    servers["rollover no-batch"] = Rollover("rollover no-batch", 2, "shared", ["--no-batch"])
    if NCPU != 2:
        servers["hello x%d" % NCPU] = Rollover("hello x%d" % NCPU, NCPU, "shared")
    for s in servers.values():
        got = http_get(s.port)
        if got[0] != 200 or got[2] != body.encode():
            raise Broken("%s: GET / answered %s %r, not 200 %r" % (s.name, got[0], got[2], body))
        s.response_bytes = len(got[3])
    return servers


def seed_names():
    return ["hello x1", "rollover shared" if NCPU == 2 else "hello x%d" % NCPU]


# The scheduling policy's share, in the 64-connection rows only.
BATCH_NAMES = ["nginx batch", "rollover no-batch"]


MAIN_NAMES = ["nginx", "nginx reuseport", "rollover shared", "rollover per-worker"]


def throughput(servers, opts):
    """{(conns, close): {server name: [run results]}}, runs alternating."""
    results = {}
    for conns in CONNS:
        for close in (False, True):
            names = list(MAIN_NAMES)
            if conns == 64:
                names += [n for n in seed_names() + BATCH_NAMES if n not in names]
            mode = "close" if close else "keep-alive"
            print("  %d connections, %s: %s" % (conns, mode, ", ".join(names)))
            sys.stdout.flush()
            runs = {n: [] for n in names}
            for n in names:  # warm-up, not counted
                run_wrk(servers[n], conns, close, opts.warmup)
            for i in range(opts.runs):
                k = i % len(names)
                for n in names[k:] + names[:k]:
                    runs[n].append(run_wrk(servers[n], conns, close, opts.seconds))
            results[(conns, close)] = runs
    return results


def print_throughput(results, servers):
    rows = []
    for (conns, close), runs in results.items():
        mode = "close" if close else "keep-alive"
        ref = med([r["rps"] for r in runs[NGINX_REF]])
        for n, rs in runs.items():
            rps = med([r["rps"] for r in rs])
            rows.append(["%d %s" % (conns, mode), n, "%.0f" % rps,
                         fmt(med([r["p50"] for r in rs]), "%.3f"),
                         fmt(med([r["p99"] for r in rs]), "%.3f"),
                         "" if n == NGINX_REF else fmt(rps / ref if ref else None),
                         fmt(med([r["busiest"] for r in rs]), "%.0f%%"),
                         "%.1f+%.1f" % (med([r["usr_us"] for r in rs]),
                                        med([r["sys_us"] for r in rs])),
                         fmt(med([r["cs"] for r in rs]), "%.3f"),
                         sum(r["errors"] for r in rs),
                         fmt(med([r["other"] for r in rs]), "%.0f%%"),
                         "%.0f-%.0f" % (min(r["rps"] for r in rs), max(r["rps"] for r in rs)),
                         len(rs)])
        rows.append([""] * 13)
    rows.pop()
    table(["conns mode", "server", "req/s", "p50 ms", "p99 ms", "x nginx", "busiest",
           "cpu us/req", "cs/req", "errors", "other", "req/s range", "runs"], rows)
    print()
    print("req/s, p50, p99, busiest, cpu and other are medians over the runs; x nginx = "
          "req/s / stock nginx's req/s in the same row; busiest = the busiest worker's "
          "share of the workers' utime+stime; cpu us/req = workers' user+system CPU per "
          "request; cs/req = workers' context switches (voluntary + involuntary) per "
          "request; errors = wrk socket errors + non-2xx, summed over the runs; other = "
          "CPU that other processes took (user+system+steal, %% of one core, of %d) "
          "while wrk ran: the noise."
          % NCPU)
    print("wrk: %s -t%d" % (WRK, WRK_THREADS) +
          " -cCONNS -dSECONDS --timeout 5s --latency [-H 'Connection: close'] "
          "http://127.0.0.1:PORT/")
    print("response bytes of GET / (headers + body): %s"
          % ", ".join("%s %d" % (n, servers[n].response_bytes) for n in MAIN_NAMES))


def print_seed(results):
    names = seed_names()
    rows = []
    for close in (False, True):
        runs = results[(64, close)]
        one, many = (med([r["rps"] for r in runs[n]]) for n in names)
        rows.append(["64 %s" % ("close" if close else "keep-alive"), "%.0f" % one,
                     "%.0f" % many, fmt(many / one if one else None)])
    table(["conns mode", "1 process req/s", "%d processes req/s" % NCPU, "ratio"], rows)
    print("(one rollover-hello process vs %d sharing one listener, listen_mode "
          "\"shared\"; from the alternating runs above)" % NCPU)


def syscalls(servers, opts):
    names = ["nginx", "rollover shared", "rollover per-worker"]
    rows, details = [], []
    have_perf = PERF is not None
    if STRACE is None:
        print("SKIP strace breakdown: strace is missing (apt-get install -y strace)")
    if PERF is None:
        print("SKIP perf count: perf is missing (apt-get install -y linux-perf)")
    if STRACE is None and PERF is None:
        return
    for close in (False, True):
        mode = "close" if close else "keep-alive"
        for n in names:
            s = servers[n]
            pc = None
            if have_perf:
                try:
                    pc = syscalls_perf(s, close, opts.syscall_seconds)
                except OSError as e:
                    print("SKIP perf count from now on: %s" % e)
                    have_perf = False
            st, per, req = None, {}, 0
            if STRACE is not None:
                st, per, req = syscalls_strace(s, close, opts.syscall_seconds)
                top = sorted(per.items(), key=lambda kv: -kv[1])
                details.append("  %-10s %-20s %s" % (mode, n, "  ".join(
                    "%s %.2f" % kv for kv in top if kv[1] >= 0.005)))
            rows.append(["%d %s" % (SYSCALL_CONNS, mode), n, fmt(pc), fmt(st), req or "-"])
    table(["conns mode", "server", "perf syscalls/req", "strace syscalls/req",
           "requests (strace run)"], rows)
    print("over %gs wrk runs per cell; perf: raw_syscalls:sys_enter of the worker pids; "
          "strace -c -f -p each worker" % opts.syscall_seconds)
    if details:
        print("strace, per request, by syscall:")
        for d in details:
            print(d)


def idle_start(d):
    # Let the start-up and the requests settle before the window opens.
    time.sleep(0.5)
    pids = [d.pid] + d.worker_pids
    return d, time.monotonic(), {p: (proc_stat(p), proc_status(p)) for p in pids}


def print_idle(idle, servers, sup_load):
    d, t0, before = idle
    secs = time.monotonic() - t0
    d.check_workers()
    rows = []
    for p in [d.pid] + d.worker_pids:
        (st0, ss0), st1, ss1 = before[p], proc_stat(p), proc_status(p)
        cpu_ms = 1000.0 * ((st1["utime"] + st1["stime"]) - (st0["utime"] + st0["stime"])) / HZ
        vol = ss1["voluntary_ctxt_switches"] - ss0["voluntary_ctxt_switches"]
        inv = ss1["nonvoluntary_ctxt_switches"] - ss0["nonvoluntary_ctxt_switches"]
        rows.append(["supervisor" if p == d.pid else "worker", p, "%.0f" % cpu_ms, vol, inv,
                     ss1["VmRSS"]])
    table(["rollover idle", "pid", "cpu ms", "voluntary cs", "involuntary cs", "VmRSS kB"],
          rows)
    print("over %.1fs idle (no request to this daemon, no rolloverctl query; the other "
          "parts ran meanwhile); cpu ms has a resolution of %.0f ms; target: 0 context "
          "switches for the supervisor" % (secs, 1000.0 / HZ))
    print()
    rows = []
    for n in MAIN_NAMES + [x for x in seed_names() + BATCH_NAMES if x not in MAIN_NAMES]:
        s = servers[n]
        main = proc_status(s.pid)
        w = [proc_status(p)["VmRSS"] for p in s.worker_pids]
        extra = ""
        if n in sup_load:
            extra = "%d + %d" % sup_load[n]
        rows.append([n, main["VmRSS"], max(w), extra])
    table(["after the load", "supervisor/master kB", "largest worker kB",
           "supervisor cs during its wrk runs"], rows)


def supervisor_cs(servers):
    out = {}
    for n, s in servers.items():
        if isinstance(s, Rollover):
            st = proc_status(s.pid)
            out[n] = (st["voluntary_ctxt_switches"], st["nonvoluntary_ctxt_switches"])
    return out


def options():
    quick_env = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", default=quick_env,
                    help="2 runs of 1 s and a 3 s idle period, while developing")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--idle", type=float, default=None)
    o = ap.parse_args()
    env = lambda k, full, quick: type(full)(os.environ.get(k, quick if o.quick else full))
    if o.runs is None:
        o.runs = env("BENCH_RUNS", 6, 2)
    if o.seconds is None:
        o.seconds = env("BENCH_SECONDS", 5.0, 1.0)
    if o.idle is None:
        o.idle = env("BENCH_IDLE", 30.0, 3.0)
    o.runs, o.seconds, o.idle = max(1, o.runs), max(0.5, o.seconds), max(1.0, o.idle)
    o.warmup = min(1.0, o.seconds)
    o.syscall_seconds = 1.0 if o.quick else 2.0
    # Rows x servers x runs, plus the warm-ups, the syscall runs (twice
    # each, with tool start-up) and server starts; twice that plus slack.
    cells = len(CONNS) * 2 * len(MAIN_NAMES) + 2 * len(seed_names() + BATCH_NAMES)
    est = cells * (o.runs * o.seconds + o.warmup + 0.3) + 12 * (o.syscall_seconds + 2) + 30
    o.budget = int(2 * max(est, o.idle) + 120)
    return o


def main(opts):
    for p, what in ((ROLLOVER, "make"), (ROLLOVERCTL, "make"), (HELLO, "make"),
                    (WRK, "apt-get install -y wrk"), (NGINX, "apt-get install -y nginx")):
        if not os.access(p, os.X_OK):
            raise Broken("%s is missing (%s)" % (p, what))
    header(opts)
    t_start = time.monotonic()

    # The idle daemon also tells what nginx must answer.
    d = Rollover("rollover idle", 2, "shared")
    status, hdrs, body, raw = http_get(d.port)
    if status != 200:
        raise Broken("rollover-hello's GET / answered %s %r" % (status, raw[:200]))
    body = body.decode()
    idle = idle_start(d)
    servers = start_servers(body, hdrs.get("content-type", "text/plain"))
    print()
    print("servers (config files in temp dirs, printed once):")
    for n in ("nginx reuseport", "rollover per-worker"):
        print("  --- %s: %s" % (n, " ".join(map(shlex.quote, servers[n].argv))))
        for line in servers[n].conf_text.rstrip().splitlines():
            print("      | " + line)
    print("  nginx is the same config without `reuseport`, nginx batch that one "
          "under `chrt --batch 0`; rollover shared has listen_mode = \"shared\", "
          "rollover no-batch that and args = [ \"--no-batch\" ]; hello x1 has "
          "workers = 1")
    sys.stdout.flush()

    section("1. throughput and latency (wrk, %d alternating runs of %gs per cell)"
            % (opts.runs, opts.seconds))
    cs0 = supervisor_cs(servers)
    results = throughput(servers, opts)
    cs1 = supervisor_cs(servers)
    sup_load = {n: (cs1[n][0] - cs0[n][0], cs1[n][1] - cs0[n][1]) for n in cs0}
    print()
    print_throughput(results, servers)

    section("2. the seed's comparison: one process vs %d sharing the listener" % NCPU)
    print_seed(results)

    section("3. syscalls per request (%d connections)" % SYSCALL_CONNS)
    syscalls(servers, opts)

    left = opts.idle - (time.monotonic() - idle[1])
    if left > 0:
        time.sleep(left)
    section("4. memory, and the supervisor when idle")
    print_idle(idle, servers, sup_load)

    print()
    for n in NOTES:
        print("NOTE: " + n)
    print("total bench time: %.1fs" % (time.monotonic() - t_start))


def on_alarm(signum, frame):
    raise Broken("time budget exceeded")


def on_term(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


if __name__ == "__main__":
    OPTS = options()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(OPTS.budget)
    rc = 0
    try:
        main(OPTS)
    except Broken as e:
        print("\nBROKEN: %s" % e, flush=True)
        rc = 1
    except KeyboardInterrupt as e:
        print("\ninterrupted (%s)" % e, flush=True)
        rc = 130
    finally:
        signal.alarm(0)
        for c in reversed(list(CLEANUPS)):
            try:
                c.close()
            except Exception as e:  # cleanup must go on
                print("cleanup of %s failed: %s" % (getattr(c, "name", c), e), flush=True)
        if rc:
            for n in NOTES:
                print("NOTE: " + n)
        if rc == 0:
            for d in TMPDIRS:
                shutil.rmtree(d, ignore_errors=True)
        elif TMPDIRS:
            print("work directories kept: %s" % " ".join(TMPDIRS), flush=True)
    sys.exit(rc)
