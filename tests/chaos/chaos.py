#!/usr/bin/python3
"""Chaos under load: a seeded random schedule of faults against a running
rollover, then a check that nothing is left broken.

One rollover runs two groups on loopback: "web" (rollover-hello workers,
`watch = true` on a copy of the binary in a temporary directory) and
"side" (one worker of the build's rollover-hello, never touched by a
fault, to show that faults in one group do not reach another).  Client
threads, in three processes of their own, keep both busy with keep-alive
connections and with a new connection per request.  Every request is
GET /pid, so every response says which worker served it, and every
client error can be attributed.

For --duration seconds the schedule, drawn from --seed, does:
  SIGHUP; binary replacements by copy and rename (good variants, one that
  exits at once, one that takes 1.5 s to be ready, one that crashes 300 ms
  after READY=1, one that is never ready); SIGKILL of a random web worker;
  SIGSTOP of a random web worker, SIGCONT 0.1 to 2 s later; a broken config
  and SIGHUP, then the good config back; a valid config change and SIGHUP;
  control requests (reload, status) and garbage on the control socket
  (random bytes, overlong lines, unknown or malformed commands, connections
  left open, half-closed or dropped mid-request).
It ends by installing a good binary and waiting for it to serve.

Errors seen by the clients are classified:
  expected      the connection was held by a worker this program SIGKILLed
                (its worker pid, from an earlier /pid answer, or its port
                found among the killed worker's sockets, looked up while the
                worker was stopped just before the kill);
  idle-close    the documented end of an idle connection of a stopping
                worker: closed without an answer after it had been idle
                longer than the worker's grace (rollover-worker(7)), as
                the kernel saw it (tcp_info: since the last answer, or the
                handshake, arrived); a client that keeps sending never
                sees it, and this one only when it was not scheduled;
  unexpected    everything else: the run fails.
A SIGSTOP lasts at most 2 s, well below the clients' 10 s timeout and the
groups' stop_timeout, so a stop must cause no error at all.

A crash-after-ready binary is promoted (there is no probation) and then
crash-loops, serving nothing: the schedule installs a good binary right
after it, so the clients wait a moment instead of failing.

At the end: the supervisor is alive; every web worker answers /pid with the
newest generation, which is serving and runs the last good binary; each
group has its configured number of workers; the supervisor has no zombie
child and no descendant that is not a current worker, and no process
carrying this run's mark exists besides them; its fd count is what it was
at the start and its anonymous memory within a small margin of it
(RSS_ANON_SLACK_KB, see there); every rollover begun has ended, ok or
aborted; the side group aborted nothing but superseded rollovers; the log
has no unexplained error and no sanitizer report.  Then SIGTERM: exit
status 0 and no process left.

Usage: chaos.py [--duration S] [--seed N] [--keep]
Environment: ROLLOVER_BUILD (default build/).  Exits 0 if every check
passed, 1 otherwise; the numbers are printed either way.
"""
import argparse
import collections
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("ROLLOVER_BUILD", os.path.join(ROOT, "build")))
ROLLOVER = os.path.join(BUILD, "rollover")
HELLO = os.path.join(BUILD, "rollover-hello")
TESTS = os.path.join(BUILD, "tests")
GOOD = [os.path.join(TESTS, "hello-a"), os.path.join(TESTS, "hello-b"), HELLO]
BAD = {
    "exit": os.path.join(TESTS, "bad-exit"),
    "slow": os.path.join(TESTS, "bad-slow"),
    "crash": os.path.join(TESTS, "bad-crash"),
    "noready": os.path.join(TESTS, "bad-noready"),
}

CLIENT_TIMEOUT = 10.0  # seconds a client waits for connect or an answer
STOP_MAX = 2.0  # longest SIGSTOP; well below CLIENT_TIMEOUT
STOP_TIMEOUT = 20.0  # the groups' stop_timeout; above STOP_MAX too
READY_TIMEOUT = 4.0  # bad-slow needs 1.5 s; bad-noready is aborted after this
# rollover-hello, stopping, answers a request on an idle connection if it
# comes within 200 ms, then half-closes it and reads for at most 2 s: so a
# client that idled that long may see an end of file, and one that idled
# 2.2 s a reset.  GRACE is a little under 200 ms: the worker's clock for
# the grace may start a few ms before our last answer was read.
GRACE = 0.15
LINGER = 2.0
HALF_OPEN_MAX = 6  # control connections held at once (the daemon takes 64)
# The supervisor's anonymous memory may end up this much above where it
# started: glibc's malloc keeps freed memory in its arena rather than
# returning it (it trims the top only past M_TRIM_THRESHOLD, 128 KiB, and
# never the middle), and the chaos drives the heap's high-water mark up
# (status JSON, a client's output buffer, libconfig's parse of a config).
# A leak per rollover or per request would exceed it within minutes;
# LeakSanitizer checks the rest under the ASan build.  File-backed RSS
# (code pages first run during the chaos) is reported, not bounded.
RSS_ANON_SLACK_KB = 512


def now():
    return time.monotonic()


def wall(t):
    """A time.time() as the daemon's log writes it."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % (t % 1 * 1000)


def log(msg):
    sys.stdout.write("chaos: %s\n" % msg)
    sys.stdout.flush()


# ---- /proc -----------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children(pid):
    """{child pid: state} of pid, zombies included."""
    out = {}
    for p in all_pids():
        st = proc_stat(p)
        if st is not None and st[1] == pid:
            out[p] = st[0]
    return out


def descendants(pid):
    """Every live process whose parent chain leads to pid."""
    parent = {}
    for p in all_pids():
        st = proc_stat(p)
        if st is not None:
            parent[p] = st[1]
    out = set()
    for p in parent:
        q, seen = parent.get(p), 0
        while q is not None and q > 1 and seen < 64:
            if q == pid:
                out.add(p)
                break
            q, seen = parent.get(q), seen + 1
    return out


def environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def marked(mark):
    """Pids of live processes whose environment carries this run's mark."""
    tag = ("CHAOS_MARK=%s" % mark).encode()
    return {p for p in all_pids() if tag in environ(p)}


def group_of(pid):
    for kv in environ(pid):
        if kv.startswith(b"ROLLOVER_GROUP="):
            return kv.split(b"=", 1)[1].decode()
    return None


def fd_count(pid):
    """The fewest of three looks: a sanitizer runtime opens fds briefly."""
    counts = []
    for _ in range(3):
        counts.append(len(os.listdir("/proc/%d/fd" % pid)))
        time.sleep(0.05)
    return min(counts)


def fd_list(pid):
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return out


def rss_kb(pid):
    """{'RssAnon': kB, 'RssFile': kB, 'VmRSS': kB}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def tcp_peers(server_port):
    """{socket inode: client port} of the TCP connections to server_port,
    from the kernel's sock_diag netlink interface (/proc/net/tcp lists every
    TIME_WAIT socket too, and under this load takes seconds to read)."""
    NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
    NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 1, 0x300, 2, 3
    states = 0xFFF & ~((1 << 6) | (1 << 10))  # not TIME_WAIT, not LISTEN
    # struct inet_diag_req_v2, its struct inet_diag_sockid left zero.
    req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, states) + bytes(48)
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY,
                      NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req
    out = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
        s.sendto(msg, (0, 0))
        while True:
            data = s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    raise OSError("sock_diag: %d" % struct.unpack_from("=i", data, off + 16))
                # struct inet_diag_msg: 4 bytes, the sockid (ports first,
                # in network order), then expires, queues, uid, inode.
                sport, dport = struct.unpack_from("!HH", data, off + 20)
                inode = struct.unpack_from("=I", data, off + 84)[0]
                if sport == server_port:
                    out[inode] = dport
                off += (length + 3) & ~3
            if not data:
                return out


def wait_stopped(pid, timeout=2.0):
    deadline = now() + timeout
    while now() < deadline:
        st = proc_stat(pid)
        if st is None or st[0] in "ZX":
            return False
        if st[0] in "Tt":
            return True
        time.sleep(0.002)
    return False


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the supervisor's log --------------------------------------------------


class Log:
    """The daemon's stderr, read as it grows, one line at a time."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        self.lines = []
        self.partial = b""
        self.lock = threading.Lock()

    def poll(self):
        with self.lock:
            data = self.f.read()
            if not data:
                return
            data = self.partial + data
            parts = data.split(b"\n")
            self.partial = parts.pop()
            self.lines.extend(p.decode(errors="replace") for p in parts)

    def mark(self):
        self.poll()
        return len(self.lines)

    def find(self, pattern, start=0):
        """The first match of pattern in a line from index start on."""
        self.poll()
        rx = re.compile(pattern)
        for line in self.lines[start:]:
            m = rx.search(line)
            if m:
                return m
        return None

    def wait(self, pattern, start=0, timeout=10.0):
        deadline = now() + timeout
        while True:
            m = self.find(pattern, start)
            if m or now() >= deadline:
                return m
            time.sleep(0.02)

    def text(self):
        self.poll()
        return "\n".join(self.lines)


# ---- the control socket ----------------------------------------------------


def control(path, request, timeout=15.0, shut=False):
    """Send raw bytes; returns the answer's lines (decoded)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        try:
            s.sendall(request)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before reading it all
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
    finally:
        s.close()
    return out.decode(errors="replace")


def status(path):
    text = control(path, b"status\n")
    lines = text.split("\n")
    if len(lines) != 3 or lines[1] != "ok" or lines[2] != "":
        raise RuntimeError("status answered %r" % text[:500])
    return json.loads(lines[0])


# ---- load ------------------------------------------------------------------


class Conn:
    """One client connection and what is known of it."""

    def __init__(self, port):
        self.opened = now()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.pid = None
        self.served = 0
        self.last_answer = now()  # or when connected
        self.buf = b""

    def close(self):
        self.sock.close()


class ClientError(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


def idle_ms(sock):
    """Milliseconds since sock last received data (or was connected):
    tcpi_last_data_recv of struct tcp_info."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    return struct.unpack_from("=I", info, 52)[0]


def read_response(c):
    """(status, headers, body) of one response on c; ClientError if not."""
    got_any = bool(c.buf)
    while b"\r\n\r\n" not in c.buf:
        try:
            b = c.sock.recv(65536)
        except socket.timeout:
            raise ClientError("timeout", "no answer in %.0f s" % CLIENT_TIMEOUT)
        except ConnectionResetError:
            raise ClientError("reset" if not got_any else "reset-mid-response")
        except OSError as e:
            raise ClientError("recv-error", str(e))
        if not b:
            raise ClientError("eof-mid-response" if got_any else "eof-before-response")
        got_any = True
        c.buf += b
    head, _, rest = c.buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ClientError("bad-response", lines[0][:80])
    hdrs = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        try:
            b = c.sock.recv(65536)
        except socket.timeout:
            raise ClientError("timeout", "body")
        except OSError:
            raise ClientError("reset-mid-response")
        if not b:
            raise ClientError("eof-mid-response")
        rest += b
    c.buf = rest[n:]
    return int(parts[1]), hdrs, rest[:n]


class Stats:
    """What the clients of one load process saw; merged in the parent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.served = collections.Counter()  # (group, mode) -> responses
        self.conns = collections.Counter()  # (group, mode) -> connections
        self.errors = []  # dicts
        self.latency = collections.defaultdict(list)  # group -> seconds
        self.slow = []  # answers that took over a second
        self.max_gap = 0.0  # the longest a client left a connection idle

    def ok(self, group, mode, c, gen, latency):
        with self.lock:
            self.served[(group, mode)] += 1
            self.latency[group].append(latency)
            if latency > 1.0:
                self.slow.append((latency, now() - latency, group, mode, c.pid, gen, c.port))

    def error(self, group, mode, c, err, reused, gap):
        with self.lock:
            self.errors.append({
                "t": now(), "wall": time.time(), "group": group, "mode": mode, "kind": err.kind,
                "detail": err.detail, "pid": c.pid if c else None,
                "port": c.port if c else None,
                "opened": c.opened if c else None, "reused": reused,
                "gap": gap, "class": None, "why": ""})

    def dump(self):
        return {"served": self.served, "conns": self.conns, "errors": self.errors,
                "latency": dict(self.latency), "slow": self.slow, "max_gap": self.max_gap}

    def merge(self, d):
        self.served.update(d["served"])
        self.conns.update(d["conns"])
        self.errors += d["errors"]
        for g, lat in d["latency"].items():
            self.latency[g] += lat
        self.slow += d["slow"]
        self.max_gap = max(self.max_gap, d["max_gap"])


class Client(threading.Thread):
    """Keeps one connection busy with GET /pid: keep-alive, or a new
    connection for each request (Connection: close)."""

    def __init__(self, group, port, keepalive, stats, stop):
        super().__init__(daemon=True)
        self.group, self.port, self.keepalive = group, port, keepalive
        self.mode = "keep-alive" if keepalive else "close"
        self.stats, self.stop = stats, stop
        self.req = ("GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" %
                    ("" if keepalive else "Connection: close\r\n")).encode()

    def connect(self):
        try:
            return Conn(self.port)
        except socket.timeout:
            self.stats.error(self.group, self.mode, None, ClientError("connect-timeout"), False, 0)
        except OSError as e:
            self.stats.error(self.group, self.mode, None, ClientError("connect-error", str(e)),
                             False, 0)
        return None

    def one(self, c):
        """One request on c; returns whether c may be used again."""
        reused = c.served > 0
        t0 = now()
        try:
            idle = idle_ms(c.sock) / 1000
            try:
                c.sock.sendall(self.req)
            except socket.timeout:
                raise ClientError("timeout", "send")
            except OSError as e:
                raise ClientError("send-error", str(e))
            finally:
                # How long the connection was idle when the request left,
                # as the worker saw it: since our last answer arrived in
                # the kernel (or since the handshake), however late this
                # process got to read it.
                gap = idle + now() - t0
                self.stats.max_gap = max(self.stats.max_gap, gap)
            st, hdrs, body = read_response(c)
            if st != 200:
                raise ClientError("status-%d" % st)
            try:
                j = json.loads(body)
            except ValueError:
                raise ClientError("bad-body", body[:80].decode(errors="replace"))
            if c.pid is not None and j["pid"] != c.pid:
                raise ClientError("pid-changed", "%d then %d" % (c.pid, j["pid"]))
            c.pid = j["pid"]
        except ClientError as e:
            self.stats.error(self.group, self.mode, c, e, reused, gap)
            return False
        c.served += 1
        c.last_answer = now()
        self.stats.ok(self.group, self.mode, c, j["generation"], c.last_answer - t0)
        return self.keepalive and hdrs.get("connection", "").lower() != "close"

    def run(self):
        while not self.stop.is_set():
            c = self.connect()
            if c is None:
                time.sleep(0.05)
                continue
            with self.stats.lock:
                self.stats.conns[(self.group, self.mode)] += 1
            try:
                while self.one(c) and not self.stop.is_set():
                    pass
            finally:
                c.close()


def load_process(plan, stop, pipe):
    """Clients for each (group, port, keepalive) in plan, as threads of
    this process, until stop is set; then what they saw goes up the pipe.
    A process of its own, so that the chaos schedule never waits for the
    clients' interpreter lock."""
    stats = Stats()
    done = threading.Event()
    clients = [Client(g, p, k, stats, done) for g, p, k in plan]
    for c in clients:
        c.start()
    stop.wait()
    done.set()
    for c in clients:
        c.join(timeout=CLIENT_TIMEOUT + 5)
    pipe.send(stats.dump())
    pipe.close()


# ---- the run ---------------------------------------------------------------


class Failure(Exception):
    pass


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.dir = tempfile.mkdtemp(prefix="rollover-chaos-")
        self.bindir = os.path.join(self.dir, "bin")
        os.mkdir(self.bindir)
        self.app = os.path.join(self.bindir, "app")
        self.conf = os.path.join(self.dir, "rollover.conf")
        self.ctl = os.path.join(self.dir, "control.sock")
        self.logpath = os.path.join(self.dir, "rollover.log")
        self.mark = "%016x" % random.getrandbits(64)
        self.port = free_port()
        self.side_port = free_port()
        self.web_workers = 2
        self.faults = collections.Counter()
        self.events = []  # (t, the schedule's action)
        self.kills = []  # (t, pid, client ports held)
        self.stops = []  # (t0, pid, client ports held, seconds)
        self.control_bad = []  # answers that broke the protocol
        self.failures = []
        self.bg = []  # background threads to join at the end
        self.holders = threading.Semaphore(HALF_OPEN_MAX)
        self.proc = None
        self.stats = Stats()
        self.mp = multiprocessing.get_context("fork")
        self.stop_load = self.mp.Event()
        self.loaders = []  # (process, pipe)
        self.last_good = None

    # ---- setup

    def config_text(self, web_workers):
        def group(name, command, workers, port, watch, env):
            env_text = " ".join('%s = "%s";' % kv for kv in env.items())
            return ('  {\n    name = "%s";\n    command = "%s";\n    workers = %d;\n'
                    '    listen = ( "127.0.0.1:%d" );\n    ready = "notify";\n'
                    '    ready_timeout = %.1f;\n    stop_timeout = %.1f;\n'
                    '    watch = %s;\n    settle = 0.05;\n    env = { %s };\n  }'
                    % (name, command, workers, port, READY_TIMEOUT, STOP_TIMEOUT,
                       "true" if watch else "false", env_text))
        env = {"CHAOS_MARK": self.mark}
        web = group("web", self.app, web_workers, self.port, True,
                    dict(env, SLOW_EXEC=HELLO))
        side = group("side", HELLO, 1, self.side_port, False, env)
        return ('control = "%s";\npid_file = "%s";\nlog_level = "info";\n'
                'groups = (\n%s,\n%s\n);\n'
                % (self.ctl, os.path.join(self.dir, "rollover.pid"), web, side))

    def write_config(self, text):
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)

    def install(self, src):
        """The deploy idiom: copy beside the target, then rename over it."""
        tmp = os.path.join(self.bindir, ".app.tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.app)
        if src in GOOD:
            self.last_good = src

    def deploy(self, src):
        """Install src under load and wait for a rollover to begin: every
        replacement must be noticed (a rollover may take it up before the
        watch does: a SIGHUP's, or a burst's last)."""
        start = self.log.mark()
        self.install(src)
        if self.log.wait(r"web: rollover to generation \d+ begun", start, 10.0) is None:
            self.fail("%s, installed at %s, was never rolled out"
                      % (os.path.basename(src), wall(time.time())))
        return start

    def start(self):
        for p in [ROLLOVER, HELLO] + GOOD + list(BAD.values()):
            if not os.access(p, os.X_OK):
                raise Failure("%s: missing; build it first (make B=... chaos)" % p)
        self.install(GOOD[0])
        self.write_config(self.config_text(self.web_workers))
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen([ROLLOVER, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir, env=env)
        self.pid = self.proc.pid
        self.log = Log(self.logpath)
        self.wait_settled(20.0, "the first generations")
        self.start_fds = fd_count(self.pid)
        self.start_rss = rss_kb(self.pid)
        log("rollover %d up: web on 127.0.0.1:%d, side on 127.0.0.1:%d; %d fds, "
            "RSS %d KiB (anon %d KiB)" % (self.pid, self.port, self.side_port,
                                          self.start_fds, self.start_rss["VmRSS"],
                                          self.start_rss["RssAnon"]))

    def settled(self, st):
        """True if every group serves with its wanted workers, all ready,
        all of the serving generation, and no rollover runs."""
        for g in st["groups"]:
            ws = g["workers"]
            if (g["last_rollover"]["result"] == "running" or len(ws) != g["workers_wanted"]
                    or any(w["state"] != "ready" or w["generation"] != g["generation"]
                           for w in ws)):
                return False
        return True

    def wait_settled(self, timeout, what):
        deadline = now() + timeout
        st = None
        while now() < deadline:
            self.alive()
            try:
                st = status(self.ctl)
            except (OSError, RuntimeError, ValueError):
                st = None
            if st is not None and self.settled(st):
                return st
            time.sleep(0.05)
        raise Failure("%s: not settled within %.0f s; last status: %s"
                      % (what, timeout, json.dumps(st)))

    def alive(self):
        if self.proc.poll() is not None:
            raise Failure("the supervisor exited with status %s" % self.proc.returncode)

    def start_load(self):
        """Two processes for web, one for side."""
        web = [("web", self.port, True)] * self.args.conns + \
              [("web", self.port, False)] * self.args.close_conns
        side = [("side", self.side_port, True)] * 4 + [("side", self.side_port, False)]
        for plan in (web[0::2], web[1::2], side):
            ours, theirs = self.mp.Pipe(duplex=False)
            p = self.mp.Process(target=load_process, args=(plan, self.stop_load, theirs),
                                daemon=True)
            p.start()
            theirs.close()
            self.loaders.append((p, ours))

    def stop_load_now(self):
        self.stop_load.set()
        for p, pipe in self.loaders:
            if pipe.poll(CLIENT_TIMEOUT + 10):
                self.stats.merge(pipe.recv())
            else:
                self.fail("a load process did not report")
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()

    # ---- faults

    def web_workers_now(self):
        return sorted(p for p, st in children(self.pid).items()
                      if st not in "ZX" and group_of(p) == "web")

    def grab(self, pid):
        """A pidfd for pid, stopped, when it was, and the client ports it
        holds; None if it went away first."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        t = now()
        try:
            signal.pidfd_send_signal(fd, signal.SIGSTOP)
        except OSError:
            os.close(fd)
            return None
        if not wait_stopped(pid):
            os.close(fd)
            return None
        held = socket_inodes(pid)
        return fd, t, {port for ino, port in tcp_peers(self.port).items() if ino in held}

    def f_kill(self):
        ws = self.web_workers_now()
        if not ws:
            return
        pid = self.rng.choice(ws)
        g = self.grab(pid)
        if g is None:
            return
        fd, _, ports = g
        self.kills.append((now(), pid, ports))
        self.events.append((now(), "(%d)" % pid))
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        os.close(fd)
        self.faults["SIGKILL a worker"] += 1

    def f_stop(self):
        ws = self.web_workers_now()
        if not ws:
            return
        pid = self.rng.choice(ws)
        seconds = self.rng.uniform(0.1, STOP_MAX)
        g = self.grab(pid)
        if g is None:
            return
        fd, t, ports = g
        self.stops.append((t, pid, ports, seconds))
        self.events.append((t, "(%d for %.1f s, grabbed in %.2f s)" % (pid, seconds, now() - t)))
        self.faults["SIGSTOP/SIGCONT a worker"] += 1

        def cont():
            time.sleep(max(0.0, t + seconds - now()))
            try:
                signal.pidfd_send_signal(fd, signal.SIGCONT)
            except OSError:
                pass  # killed meanwhile
            os.close(fd)

        self.background(cont)

    def f_hup(self):
        os.kill(self.pid, signal.SIGHUP)
        self.faults["SIGHUP"] += 1

    def f_good(self):
        self.deploy(self.rng.choice(GOOD))
        self.faults["binary: good"] += 1

    def f_bad(self, kind):
        start = self.deploy(BAD[kind])
        self.faults["binary: %s" % kind] += 1
        if kind == "noready" and self.rng.random() < 0.5:
            # Left alone, so that ready_timeout aborts it (the next
            # trigger would otherwise supersede it first).
            if self.log.wait(r"web: generation \d+ aborted: worker \d+ not ready", start,
                             READY_TIMEOUT + 10) is None:
                self.fail("a never-ready generation was not aborted")
        if kind == "crash":
            # It is promoted, then serves nothing: repair soon after.
            time.sleep(self.rng.uniform(0.3, 1.2))
            self.f_good()

    def f_burst(self):
        """Several replacements within the settle time: the newest wins."""
        n = self.rng.randint(2, 4)
        for i in range(n):
            src = self.rng.choice(GOOD + [BAD["exit"]])
            if i < n - 1:
                self.install(src)
                time.sleep(self.rng.uniform(0, 0.03))
            else:
                self.deploy(src)
        self.faults["binary: burst"] += 1

    BROKEN_CONFIGS = [
        ("syntax error", lambda t: t.replace("groups = (", "groups = ((", 1)),
        ("unknown key", lambda t: t.replace('name = "web";', 'name = "web"; workerz = 2;', 1)),
        ("bad value", lambda t: re.sub(r"workers = \d+;", "workers = -3;", t, 1)),
        ("missing command", lambda t: t.replace('/app";', '/no-such-app";', 1)),
        ("bad address", lambda t: t.replace('"127.0.0.1:', '"127.0.0.300:', 1)),
        ("duplicate group", lambda t: t.replace('name = "side";', 'name = "web";', 1)),
        ("empty file", lambda t: ""),
        ("truncated", lambda t: t[: len(t) // 2]),
    ]

    def f_bad_config(self):
        name, breaker = self.rng.choice(self.BROKEN_CONFIGS)
        good = self.config_text(self.web_workers)
        start = self.log.mark()
        self.write_config(breaker(good))
        os.kill(self.pid, signal.SIGHUP)
        m = self.log.wait(r"not reloaded; still running the previous", start, 10.0)
        if m is None:
            self.fail("a broken config (%s) was not refused:\n%s"
                      % (name, "\n".join(self.log.lines[start:][-20:])))
        self.write_config(good)
        self.faults["config: %s" % name] += 1

    def f_good_config(self):
        self.web_workers = 3 if self.web_workers == 2 else 2
        self.write_config(self.config_text(self.web_workers))
        os.kill(self.pid, signal.SIGHUP)
        self.faults["config: workers changed"] += 1

    def f_control_reload(self):
        req = self.rng.choice([b"reload web --no-wait\n", b"reload --no-wait\n"])
        ans = control(self.ctl, req)
        if not ans.endswith("ok\n") and not re.search(r"\nerror: [^\n]*\n$", "\n" + ans):
            self.control_bad.append((req, ans))
        self.faults["control: reload"] += 1

    def f_control_status(self):
        try:
            status(self.ctl)
        except (RuntimeError, ValueError) as e:
            self.control_bad.append((b"status\n", str(e)))
        self.faults["control: status"] += 1

    def expect_error(self, req, ans, what):
        lines = ans.split("\n")
        if len(lines) != 2 or not lines[0].startswith("error: ") or lines[1] != "":
            self.control_bad.append((req[:80], ans[:300]))
        self.faults["control: %s" % what] += 1

    def f_garbage(self):
        kind = self.rng.choice(["random", "overlong", "unknown", "malformed", "half-open",
                                "partial-close", "drop-waiting", "shut-write"])
        rng = self.rng
        if kind == "random":
            # \xfe first: the first word is never a real command.
            req = b"\xfe" + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 900))) + b"\n"
            self.expect_error(req, control(self.ctl, req), "random bytes")
        elif kind == "overlong":
            req = b"status " + b"x" * rng.randint(1100, 200000) + b"\n"
            self.expect_error(req, control(self.ctl, req), "overlong line")
        elif kind == "unknown":
            req = rng.choice([b"frobnicate\n", b"STATUS\n", b"stop now\n", b"\n", b"   \t\n",
                              b"status\x00stop\n", b"reload\x00\n"])
            self.expect_error(req, control(self.ctl, req), "unknown command")
        elif kind == "malformed":
            req = rng.choice([b"reload a b c d e\n", b"reload -x\n", b"scale web\n",
                              b"scale web 0\n", b"scale web lots\n", b"scale web 99999999999\n",
                              b"scale nosuch 2\n", b"reload nosuch\n", b"status status\n"])
            self.expect_error(req, control(self.ctl, req), "malformed command")
        elif kind == "half-open":
            self.hold(rng.choice([b"", b"stat", b"reload we"]), rng.uniform(0.1, 7.0))
            self.faults["control: half-open"] += 1
        elif kind == "partial-close":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.ctl)
            s.sendall(rng.choice([b"sta", b"reload web", b"\xff\xfe"]))
            s.close()
            self.faults["control: dropped mid-request"] += 1
        elif kind == "drop-waiting":
            # A waiting reload whose client goes away before the answer.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.ctl)
            s.sendall(b"reload web\n")
            s.close()
            self.faults["control: waiting reload dropped"] += 1
        else:
            ans = control(self.ctl, b"status\n", shut=True)
            if not ans.endswith("\nok\n"):
                self.control_bad.append((b"status (then SHUT_WR)", ans[:300]))
            self.faults["control: half-closed status"] += 1

    def hold(self, data, seconds):
        if not self.holders.acquire(blocking=False):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.ctl)
        if data:
            s.sendall(data)

        def run():
            try:
                s.settimeout(seconds)
                try:
                    ans = s.recv(4096)
                except socket.timeout:
                    ans = None
                # Past the daemon's 5 s it answers and closes.
                if ans is not None and ans and not ans.startswith(b"error: request timed out"):
                    self.control_bad.append((b"(held open) " + data, ans[:300].decode(
                        errors="replace")))
            finally:
                s.close()
                self.holders.release()

        self.background(run)

    def background(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self.bg.append(t)

    def fail(self, msg):
        self.failures.append(msg)
        log("FAIL: " + msg)

    # ---- the schedule

    def schedule(self):
        actions = [
            (10, "hup", self.f_hup), (12, "good", self.f_good),
            (5, "exit", lambda: self.f_bad("exit")), (5, "slow", lambda: self.f_bad("slow")),
            (3, "crash", lambda: self.f_bad("crash")),
            (3, "noready", lambda: self.f_bad("noready")),
            (3, "burst", self.f_burst), (10, "kill", self.f_kill), (10, "stop", self.f_stop),
            (5, "bad-config", self.f_bad_config), (2, "good-config", self.f_good_config),
            (3, "control-reload", self.f_control_reload),
            (3, "control-status", self.f_control_status),
            (12, "garbage", self.f_garbage),
        ]
        total = sum(w for w, _, _ in actions)
        deadline = now() + self.args.duration
        while now() < deadline:
            self.alive()
            r = self.rng.uniform(0, total)
            for w, name, fn in actions:
                r -= w
                if r <= 0:
                    break
            self.events.append((now(), name))
            try:
                fn()
            except OSError as e:
                self.fail("%s: %s" % (name, e))
            time.sleep(self.rng.uniform(0.05, 0.6))

    def finish(self):
        """A good binary, once nothing else is pending, and it serves."""
        for t in self.bg:
            t.join(timeout=STOP_MAX + 10)
        if any(t.is_alive() for t in self.bg):
            self.fail("a background fault did not end")
        # Whatever the schedule left on disk settles first (the newest
        # trigger may be a slow binary or a never-ready one).
        self.wait_quiet(READY_TIMEOUT + 10)
        before = status(self.ctl)
        web = [g for g in before["groups"] if g["name"] == "web"][0]
        last = web["last_rollover"]["generation"]
        start = self.log.mark()
        self.install(self.rng.choice(GOOD))
        m = self.log.wait(r"web: rollover to generation (\d+) begun", start, 10.0)
        if m is None or int(m.group(1)) != last + 1:
            raise Failure("the final good binary did not start generation %d" % (last + 1))
        self.final_gen = last + 1
        if self.log.wait(r"web: generation %d (serving|aborted)" % self.final_gen, start,
                         20.0) is None:
            raise Failure("generation %d did not end its rollover" % self.final_gen)
        if self.log.find(r"web: generation %d aborted" % self.final_gen, start):
            raise Failure("the final good generation %d was aborted: %s" % (
                self.final_gen,
                self.log.find(r"web: generation %d aborted.*" % self.final_gen, start).group(0)))
        time.sleep(1.0)  # load on the final generation too

    def wait_quiet(self, timeout):
        """No rollover running in any group, twice 0.3 s apart (a settle
        timer may still be pending after the last replacement)."""
        deadline = now() + timeout
        calm = 0
        while now() < deadline and calm < 2:
            st = status(self.ctl)
            running = any(g["last_rollover"]["result"] == "running" for g in st["groups"])
            calm = 0 if running else calm + 1
            time.sleep(0.3)
        if calm < 2:
            raise Failure("rollovers still running %.0f s after the schedule" % timeout)

    # ---- the end checks

    def check_end(self):
        self.alive()
        st = self.wait_settled(STOP_TIMEOUT + 10, "the final state")
        groups = {g["name"]: g for g in st["groups"]}
        web = groups["web"]
        last = web["last_rollover"]
        if (web["generation"] != self.final_gen or last["generation"] != self.final_gen
                or last["result"] != "ok"):
            self.fail("web serves generation %d (last rollover %s), not %d"
                      % (web["generation"], last, self.final_gen))
        if web["workers_wanted"] != self.web_workers or len(web["workers"]) != self.web_workers:
            self.fail("web has %d workers (wanted %d), the config says %d"
                      % (len(web["workers"]), web["workers_wanted"], self.web_workers))
        if len(groups["side"]["workers"]) != 1:
            self.fail("side has %d workers, not 1" % len(groups["side"]["workers"]))
        pids = {w["pid"]: (g["name"], w["generation"]) for g in st["groups"] for w in g["workers"]}

        # Every web worker answers with the newest generation and runs the
        # last good binary; side runs the build's rollover-hello.
        want = {"web": file_hash(self.last_good), "side": file_hash(HELLO)}
        for pid, (name, gen) in pids.items():
            try:
                h = file_hash("/proc/%d/exe" % pid)
            except OSError as e:
                self.fail("worker %d: %s" % (pid, e))
                continue
            if h != want[name]:
                self.fail("%s worker %d does not run the last good binary (%s)"
                          % (name, pid, os.readlink("/proc/%d/exe" % pid)))
        seen = {}
        deadline = now() + 15
        web_pids = {p for p, (n, _) in pids.items() if n == "web"}
        while set(seen) != web_pids and now() < deadline:
            c = Conn(self.port)
            try:
                c.sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                _, _, body = read_response(c)
                j = json.loads(body)
                seen[j["pid"]] = j["generation"]
            finally:
                c.close()
        if set(seen) != web_pids:
            self.fail("web answered from %s, its workers are %s" % (sorted(seen), sorted(web_pids)))
        if any(g != self.final_gen for g in seen.values()):
            self.fail("web answered with generations %s, not %d" % (seen, self.final_gen))

        # Children, zombies, strays.
        kids = children(self.pid)
        zombies = [p for p, s in kids.items() if s in "ZX"]
        if zombies:
            self.fail("zombie children of the supervisor: %s" % zombies)
        if set(kids) - set(zombies) != set(pids):
            self.fail("the supervisor's children %s are not its workers %s"
                      % (sorted(kids), sorted(pids)))
        stray = descendants(self.pid) - set(pids)
        if stray:
            self.fail("processes under the supervisor that are not workers: %s" % sorted(stray))
        stray = marked(self.mark) - set(pids)
        if stray:
            self.fail("processes of this run that are not workers: %s" % sorted(stray))

        # fds and memory.
        self.end_fds = fd_count(self.pid)
        self.end_rss = rss_kb(self.pid)
        if self.end_fds != self.start_fds:
            self.fail("the supervisor has %d fds, %d at the start: %s"
                      % (self.end_fds, self.start_fds, fd_list(self.pid)))
        self.asan = "libasan" in open("/proc/%d/maps" % self.pid).read()
        grown = self.end_rss["RssAnon"] - self.start_rss["RssAnon"]
        # ASan keeps freed memory in quarantine, so its RSS grows by design;
        # LeakSanitizer checks at exit instead.
        if not self.asan and grown > RSS_ANON_SLACK_KB:
            self.fail("the supervisor's anonymous RSS grew by %d KiB (limit %d)"
                      % (grown, RSS_ANON_SLACK_KB))

    def check_log(self):
        text = self.log.text()
        begun = collections.Counter(re.findall(r"(\w+): rollover to generation \d+ begun", text))
        ok = collections.Counter(re.findall(r"(\w+): generation \d+ serving after", text))
        aborted = re.findall(r"(\w+): generation \d+ aborted: (.*) \(trigger", text)
        self.rollovers = {}
        for g in ("web", "side"):
            ab = [r for n, r in aborted if n == g]
            self.rollovers[g] = (begun[g], ok[g], ab)
            if begun[g] != ok[g] + len(ab):
                self.fail("%s: %d rollovers begun, %d served and %d aborted"
                          % (g, begun[g], ok[g], len(ab)))
        odd = [r for r in self.rollovers["side"][2] if not r.startswith("superseded")]
        if odd:
            self.fail("side aborted rollovers for faults of web: %s" % odd[:5])
        # Every error or warning line must be one the chaos explains.
        known = [
            r"generation \d+ aborted: ",
            r"(killed by signal|exited with status \d+) .*; restarting in",
            r"not ready after \d+ ms; stopping it",
            r"\.conf(:\d+)?: ",  # a broken config's errors
            r"\.conf: not reloaded; still running the previous",
            r"cannot start .*/app: exec",  # a binary mid-replacement
        ]
        unknown = [line for line in text.split("\n")
                   if re.search(r"\]: (error|warning): ", line)
                   and not any(re.search(k, line) for k in known)]
        if unknown:
            self.fail("unexplained errors in the log:\n  " + "\n  ".join(unknown[:20]))
        reports = [m for m in re.findall(r"ERROR: (\w+Sanitizer): ([\w-]+)", text)
                   if m[1] != "SEGV"]
        if reports or "runtime error:" in text:
            self.fail("sanitizer reports in the log: %s" % reports[:5])

    def classify(self):
        for e in self.stats.errors:
            for t, pid, ports in self.kills:
                if e["t"] < t:
                    continue
                if e["pid"] == pid or (e["pid"] is None and e["port"] in ports
                                       and e["opened"] is not None and e["opened"] <= t):
                    e["class"], e["why"] = "expected", "worker %d SIGKILLed" % pid
                    break
            if e["class"] is None and (
                    (e["kind"] == "eof-before-response" and e["gap"] >= GRACE)
                    or (e["kind"] in ("reset", "send-error") and e["gap"] >= GRACE + LINGER)):
                e["class"] = "idle-close"
            if e["class"] is None:
                e["class"] = "unexpected"
                for t0, pid, ports, secs in self.stops:
                    if e["pid"] == pid or e["port"] in ports:
                        e["why"] = "its worker %d was stopped for %.1f s" % (pid, secs)

    def stop_supervisor(self):
        pids = set(self.web_workers_now()) | marked(self.mark)
        os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT + 20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.fail("the supervisor did not exit after SIGTERM")
            return
        if code != 0:
            self.fail("the supervisor exited with status %d after SIGTERM" % code)
        left = marked(self.mark) | {p for p in pids if proc_stat(p) is not None
                                    and proc_stat(p)[0] not in "ZX"}
        if left:
            self.fail("processes left after the supervisor exited: %s" % sorted(left))
        text = self.log.text()
        reports = [m for m in re.findall(r"ERROR: (\w+Sanitizer): ([\w-]+)", text)
                   if m[1] != "SEGV"]
        if reports:
            self.fail("sanitizer reports at exit: %s" % reports[:5])

    # ---- numbers

    def report(self):
        s = self.stats
        print("\n==== chaos: %.0f s, seed %d, build %s%s ====" % (
            self.args.duration, self.args.seed, BUILD, " (ASan)" if getattr(self, "asan", 0)
            else ""))
        print("rollovers (from the log; 'begun' excludes each group's first generation):")
        for g, (begun, ok, ab) in getattr(self, "rollovers", {}).items():
            print("  %-5s attempted %4d   ok %4d   aborted %4d" % (g, begun, ok, len(ab)))
            reasons = collections.Counter(re.sub(r"\d+", "N", r) for r in ab)
            for r, n in reasons.most_common():
                print("          %4d  %s" % (n, r))
        print("faults injected: %d" % sum(self.faults.values()))
        for k, n in sorted(self.faults.items()):
            print("  %5d  %s" % (n, k))
        print("requests served: %d" % sum(s.served.values()))
        for (g, mode), n in sorted(s.served.items()):
            print("  %-5s %-10s %8d responses on %6d connections" % (g, mode, n,
                                                                     s.conns[(g, mode)]))
        for g, lat in sorted(s.latency.items()):
            lat = sorted(lat)
            if lat:
                print("  %-5s latency ms: median %.1f, p99 %.1f, max %.0f" % (
                    g, 1000 * lat[len(lat) // 2], 1000 * lat[int(len(lat) * 0.99)],
                    1000 * lat[-1]))
        shown = set()
        for lat, t, g, mode, pid, gen, port in sorted(s.slow, reverse=True):
            if pid in shown or len(shown) == 3:
                continue
            shown.add(pid)
            near = ["%s %+.1fs" % (name, te - t) for te, name in self.events if -4 < te - t < 1]
            print("  slow: %.1f s, %s %s, worker %s gen %s; the schedule around: %s" % (
                lat, g, mode, pid, gen, ", ".join(near)))
        print("  the longest a client left a connection idle before a request: %.3f s"
              % s.max_gap)
        classes = collections.Counter(e["class"] for e in s.errors)
        print("client errors: %d expected (connection of a SIGKILLed worker), "
              "%d idle-close, %d unexpected" % (classes["expected"], classes["idle-close"],
                                                classes["unexpected"]))
        by = collections.Counter((e["class"], e["group"], e["kind"]) for e in s.errors)
        for (c, g, k), n in sorted(by.items()):
            print("  %5d  %-10s %-5s %s" % (n, c, g, k))
        idle = sorted(e["gap"] for e in s.errors if e["class"] == "idle-close")
        if idle:
            print("  idle-close after %s s idle" % ", ".join("%.3f" % g for g in idle[:10]))
        for e in [e for e in s.errors if e["class"] == "unexpected"][:20]:
            near = ["%s %+.1fs" % (name, te - e["t"]) for te, name in self.events
                    if -4 < te - e["t"] < 1]
            print("  unexpected: %s %s %s at %s, pid=%s port=%s reused=%s gap=%.3f %s %s;"
                  " the schedule around: %s" % (
                      e["group"], e["mode"], e["kind"], wall(e["wall"]), e["pid"], e["port"],
                      e["reused"], e["gap"], e["detail"], e["why"], ", ".join(near)))
        if self.control_bad:
            print("control answers that broke the protocol: %d" % len(self.control_bad))
            for req, ans in self.control_bad[:10]:
                print("  %r -> %r" % (req[:60], ans[:200]))
        if hasattr(self, "end_fds"):
            print("supervisor: fds %d -> %d; RSS %d -> %d KiB (anon %d -> %d, file %d -> %d)" % (
                self.start_fds, self.end_fds, self.start_rss["VmRSS"], self.end_rss["VmRSS"],
                self.start_rss["RssAnon"], self.end_rss["RssAnon"], self.start_rss["RssFile"],
                self.end_rss["RssFile"]))
        print("result: %s" % ("FAIL" if self.failures else "ok"))
        for f in self.failures:
            print("  - " + f.replace("\n", "\n    "))

    def run(self):
        try:
            return self.run_checked()
        finally:
            self.cleanup()

    def cleanup(self):
        """Whatever happened, nothing this run started outlives it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in marked(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p, _ in self.loaders:
            if p.is_alive():
                p.kill()
                p.join()

    def run_checked(self):
        try:
            self.start()
            self.start_load()
            time.sleep(0.5)
            self.schedule()
            self.finish()
        except (Failure, OSError, RuntimeError, ValueError) as e:
            self.fail(str(e))
        finally:
            self.stop_load_now()
        try:
            if not self.failures:
                self.check_end()
        except (Failure, OSError, RuntimeError, ValueError) as e:
            self.fail(str(e))
        if self.proc is not None:
            self.check_log()
            self.classify()
            unexpected = [e for e in self.stats.errors if e["class"] == "unexpected"]
            if unexpected:
                self.fail("%d unexpected client errors" % len(unexpected))
            if self.control_bad:
                self.fail("%d control answers broke the protocol" % len(self.control_bad))
            if self.proc.poll() is None:
                self.stop_supervisor()
            else:
                self.fail("the supervisor died (status %s)" % self.proc.returncode)
        self.report()
        if self.failures or self.args.keep:
            print("log and files kept in %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return 1 if self.failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds of faults (180)")
    p.add_argument("--seed", type=int, default=None, help="the schedule's seed (random)")
    p.add_argument("--conns", type=int, default=24, help="keep-alive clients on web (24)")
    p.add_argument("--close-conns", type=int, default=4,
                   help="clients on web with a new connection per request (4)")
    p.add_argument("--keep", action="store_true", help="keep the log and files")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    log("seed %d, %.0f s, build %s" % (args.seed, args.duration, BUILD))
    return Chaos(args).run()


if __name__ == "__main__":
    sys.exit(main())
