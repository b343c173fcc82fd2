"""`make check-systemd`: the shipped units under a real systemd.

A minimal Debian root is built once with debootstrap and cached as a
tarball outside the repository (/var/cache/rollover-tests, keyed by the
package list).  Each run unpacks it into a scratch directory, installs
rollover into it with `make install DESTDIR=...`, boots its systemd with
systemd-nspawn (a private network: 127.0.0.1:8080 inside clashes with
nothing outside), and drives etc/rollover.service and etc/rollover.socket
as installed, with the installed /etc/rollover/rollover.conf, through
systemctl and journalctl run inside the container by nsenter.  HTTP goes
through bash's /dev/tcp inside the container: a minbase root has no curl.

Needs root, systemd-nspawn (package systemd-container) and debootstrap,
and the Debian mirror the first time.  Everything it starts is stopped by
pid, and everything it unpacked or created is removed, pass or fail.
See /work/shared/notes/systemd-in-a-container.md for the measured recipe.
"""
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("ROLLOVER_TEST_CACHE", "/var/cache/rollover-tests")
SUITE = "bookworm"
# systemd to boot; libconfig9 and libinotifytools0 for rollover itself.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "libconfig9", "libinotifytools0"]
CACHE_FORMAT = 1  # bump when the way the root is built changes

SERVICE = "rollover.service"
SOCKET = "rollover.socket"
HELLO = "/usr/local/lib/rollover/rollover-hello"
GOOD = "/root/rollover-hello.good"
BROKEN = "/root/rollover-hello.broken"
PORT = 8080
MESSAGE = "hello from rollover\n"


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.1)


def run(cmd, timeout, **kw):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, **kw)


# ---- the cached root -------------------------------------------------------

def debian_mirror():
    """The Debian mirror apt uses here: ROLLOVER_DEBIAN_MIRROR, else the
    first one listed for SUITE in sources.list (one-line or deb822)."""
    if os.environ.get("ROLLOVER_DEBIAN_MIRROR"):
        return os.environ["ROLLOVER_DEBIAN_MIRROR"]
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for para in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", para, re.M))
                if "deb" in fields.get("Types", "").split() and \
                        SUITE in fields.get("Suites", "").split() and \
                        fields.get("Enabled", "yes") != "no":
                    return fields["URIs"].split()[0]
        elif path.endswith(".list") or path == "/etc/apt/sources.list":
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == SUITE:
                    return m.group(1)
    return "http://deb.debian.org/debian"


def cached_root():
    """The root tarball, built first if it is not in the cache."""
    key = hashlib.sha256(("%d %s minbase %s" % (
        CACHE_FORMAT, SUITE, ",".join(sorted(PACKAGES)))).encode()).hexdigest()[:12]
    tarball = os.path.join(CACHE, "debian-%s-minbase-%s.tar" % (SUITE, key))
    if os.path.exists(tarball):
        return tarball
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            pytest.fail("%s not found: apt-get install debootstrap" % tool)
    os.makedirs(CACHE, exist_ok=True)
    # Another run may be building it: wait for it, bounded.
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        wait_for(lambda: _try_lock(lock), 900, "the lock on %s" % CACHE)
        if os.path.exists(tarball):
            return tarball
        # With the lock held, a build directory is one a killed run left.
        for stale in glob.glob(os.path.join(CACHE, "build.*")):
            rmtree(stale)
        work = tempfile.mkdtemp(prefix="build.", dir=CACHE)
        try:
            root = os.path.join(work, "root")
            cmd = ["debootstrap", "--variant=minbase",
                   "--include=" + ",".join(PACKAGES), SUITE, root, debian_mirror()]
            r = run(cmd, timeout=900)
            assert r.returncode == 0, "%s failed:\n%s" % (
                " ".join(cmd), r.stdout.decode(errors="replace")[-4000:])
            # The downloaded packages are of no use in the root.
            for deb in glob.glob(os.path.join(root, "var/cache/apt/archives/*.deb")):
                os.unlink(deb)
            tmp = os.path.join(work, "root.tar")
            r = run(["tar", "--numeric-owner", "-C", root, "-cf", tmp, "."], timeout=300)
            assert r.returncode == 0, r.stdout.decode(errors="replace")
            os.rename(tmp, tarball)
        finally:
            rmtree(work)
    return tarball


def _try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def rmtree(path):
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", path], timeout=300)


# ---- cgroups for nspawn ----------------------------------------------------

def cgroup_hierarchies():
    """Where cgroup v2 and the v1 name=systemd hierarchy are mounted."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            mnt = pre.split()[4]
            fstype, _, opts = post.split()[:3]
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in opts.split(",")):
                out.append(mnt)
    return out


def remove_cgroup(path):
    """rmdir path and everything below it, bottom up; the kernel may need
    a moment after the last process has gone."""
    def gone():
        for d, _, _ in sorted(os.walk(path), key=lambda x: -len(x[0])):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return True
    if os.path.isdir(path):
        wait_for(gone, 10, "the removal of cgroup %s" % path)


# ---- the container ---------------------------------------------------------

def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError):
                pass
    return out


class Container:
    """A booted systemd in ROOT; sh() runs a command inside it."""

    def __init__(self, root, workdir):
        self.root = root
        self.name = "rollover-test-%d" % os.getpid()
        self.logpath = os.path.join(workdir, "nspawn.log")
        self.nspawn = None
        self.init = None
        self.cgroups = []

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def boot(self):
        # nspawn in a cgroup of its own, or it leaves its payload cgroups
        # in the host's root cgroup.
        for h in cgroup_hierarchies():
            d = os.path.join(h, self.name)
            remove_cgroup(d)  # a killed run's, with the same pid
            os.mkdir(d)
            self.cgroups.append(d)
        procs = [os.path.join(d, "cgroup.procs") for d in self.cgroups]

        def into_cgroups():
            for p in procs:
                with open(p, "w") as f:
                    f.write(str(os.getpid()))

        with open(self.logpath, "wb") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "-D", self.root, "-M", self.name, "-b",
                 "--keep-unit", "--register=no", "--console=passive",
                 "--private-network"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=into_cgroups, start_new_session=True)

        host_ns = os.readlink("/proc/self/ns/pid")

        def init():
            assert self.nspawn.poll() is None, "nspawn exited:\n" + self.log()
            for pid in children(self.nspawn.pid):
                with contextlib.suppress(OSError):
                    ns = os.readlink("/proc/%d/ns/pid" % pid)
                    if ns != host_ns:
                        return pid, ns
            return None
        self.init, self.init_ns = wait_for(init, 30, "the container's init")

        def booted():
            r = self.sh("systemctl is-system-running", timeout=10, check=False)
            return r.out.strip() in ("running", "degraded") and r.out.strip()
        try:
            state = wait_for(booted, 60, "systemctl is-system-running")
        except AssertionError as e:
            raise AssertionError("%s\n---- nspawn\n%s" % (e, self.log()[-4000:])) from None
        if state != "running":
            print(self.sh("systemctl --failed --no-pager", check=False).out)

    def sh(self, script, timeout=30, check=True, *args):
        """bash -c script inside the container, as root."""
        r = run(["nsenter", "-t", str(self.init), "-a", "--",
                 "/bin/bash", "-c", script, "bash"] + list(args), timeout=timeout)
        r.out = r.stdout.decode(errors="replace")
        if check:
            assert r.returncode == 0, "`%s` exited %d:\n%s" % (script, r.returncode, r.out)
        return r

    def stop(self):
        if self.nspawn is None:
            return
        try:
            if self.nspawn.poll() is None and self.init is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.sh("systemctl poweroff", timeout=10, check=False)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.nspawn.poll() is None:
                    os.kill(self.nspawn.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.nspawn.wait(timeout=30 if sig is None else 10)
                    break
        finally:
            # nspawn gone, the container's init must be too: killed if it
            # is still there (the same pid in the container's namespace).
            if self.init is not None:
                with contextlib.suppress(OSError):
                    if os.readlink("/proc/%d/ns/pid" % self.init) == self.init_ns:
                        os.kill(self.init, signal.SIGKILL)
            for d in self.cgroups:
                remove_cgroup(d)


def make_install(root):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR",
                        "PREFIX", "SYSCONFDIR")}
    r = run(["make", "-s", "-C", REPO, "install", "DESTDIR=" + root,
             "PREFIX=/usr/local", "SYSCONFDIR=/etc"], timeout=300, env=env)
    assert r.returncode == 0, "make install:\n" + r.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def box():
    if os.geteuid() != 0:
        pytest.fail("make check-systemd needs root (it boots a container)")
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail("%s not found: apt-get install systemd-container" % tool)
    # A SIGTERM (a CI timeout) still cleans up.
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(signal.signal, signal.SIGTERM, old)
        tarball = cached_root()
        work = tempfile.mkdtemp(prefix="rollover-systemd.")
        cleanup.callback(rmtree, work)
        root = os.path.join(work, "root")
        os.mkdir(root)
        r = run(["tar", "--numeric-owner", "-C", root, "-xpf", tarball], timeout=300)
        assert r.returncode == 0, r.stdout.decode(errors="replace")
        make_install(root)
        shutil.copy2(os.path.join(root, HELLO.lstrip("/")), os.path.join(root, GOOD.lstrip("/")))
        with open(os.path.join(root, BROKEN.lstrip("/")), "w") as f:
            f.write("#!/bin/sh\necho 'rollover-hello: broken on purpose' >&2\nexit 1\n")
        os.chmod(os.path.join(root, BROKEN.lstrip("/")), 0o755)
        c = Container(root, work)
        cleanup.callback(c.stop)
        c.boot()
        c.sh("systemctl daemon-reload")
        yield c


# ---- helpers on the booted container ---------------------------------------

# One HTTP/1.0 GET through bash's /dev/tcp; prints the whole response.
GET = """exec 3<>/dev/tcp/127.0.0.1/%d || exit 1
printf 'GET %%s HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' "$1" >&3
timeout 10 cat <&3""" % PORT


def get(c, path="/"):
    """(status, body) of GET path on 127.0.0.1:8080 inside the container."""
    r = c.sh(GET, 20, False, path)
    assert r.returncode == 0, "GET %s failed (exit %d): %s\n%s" % (
        path, r.returncode, r.out, diag(c))
    head, _, body = r.out.replace("\r\n", "\n").partition("\n\n")
    m = re.match(r"HTTP/1\.[01] (\d+)", head)
    assert m, "GET %s: not HTTP: %r" % (path, r.out)
    return int(m.group(1)), body


def served_by(c):
    status, body = get(c, "/pid")
    assert status == 200, body
    return json.loads(body)


def generation(c):
    return served_by(c)["generation"]


def show(c, unit, prop):
    return c.sh("systemctl show -p %s --value %s" % (prop, unit)).out.strip()


def state(c, unit=SERVICE):
    return c.sh("systemctl is-active %s" % unit, check=False).out.strip()


def journal(c, *opts):
    return c.sh("journalctl --no-pager -o cat -u rollover %s" % " ".join(opts)).out


def invocation_journal(c, inv=None):
    """The lines of one run of the service (the current one by default):
    the daemon's, and systemd's about it."""
    inv = inv or show(c, SERVICE, "InvocationID")
    assert inv, "no InvocationID"
    return c.sh("journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=%s + "
                "INVOCATION_ID=%s" % (inv, inv)).out


def cgroup_procs(c):
    """The unit's cgroup.procs, in the cgroup v2 hierarchy (at
    /sys/fs/cgroup/unified on a hybrid host like these)."""
    top = "/sys/fs/cgroup/unified"
    if c.sh("test -e %s/cgroup.procs" % top, check=False).returncode != 0:
        top = "/sys/fs/cgroup"
    return top + show(c, SERVICE, "ControlGroup") + "/cgroup.procs"


def diag(c):
    return "---- systemctl status\n%s---- journal\n%s" % (
        c.sh("systemctl status --no-pager -n0 %s %s" % (SERVICE, SOCKET), check=False).out,
        c.sh("journalctl --no-pager -n 60 -u rollover -u rollover.socket",
             check=False).out)


def install_hello(c, src):
    """Replace the worker binary the way an installer does: a copy
    beside it, renamed over it."""
    c.sh('cp "$1" "$2.new" && mv -f "$2.new" "$2"', 10, True, src, HELLO)


def settled(c):
    """ActiveState once no job and no rollover is in flight."""
    def steady():
        s = show(c, SERVICE, "ActiveState")
        return s not in ("reloading", "activating", "deactivating") and s
    return wait_for(steady, 30, "rollover.service to settle")


@pytest.fixture
def fresh(box):
    """rollover.service just started, generation 1, socket unit stopped."""
    box.sh("systemctl stop %s %s" % (SOCKET, SERVICE), timeout=60)
    install_hello(box, GOOD)
    box.sh("systemctl reset-failed %s %s" % (SERVICE, SOCKET), check=False)
    box.sh("systemctl start %s" % SERVICE, timeout=60)
    return box


# ---- the tests -------------------------------------------------------------

def test_start_serves_and_reports_status(fresh):
    c = fresh
    assert state(c) == "active", diag(c)
    assert get(c, "/") == (200, MESSAGE)
    assert generation(c) == 1
    # Type=notify: STATUS= from the daemon, READY=1 made it active.
    status_text = show(c, SERVICE, "StatusText")
    assert re.search(r"hello: generation 1\b.*ready", status_text), status_text
    main = int(show(c, SERVICE, "MainPID"))
    assert c.sh("cat /proc/%d/comm" % main).out.strip() == "rollover"
    r = c.sh("systemctl status --no-pager %s" % SERVICE, check=False)
    assert r.returncode == 0, r.out
    assert "Active: active (running)" in r.out, r.out
    assert 'Status: "hello: generation 1' in r.out, r.out
    assert "rollover-hello" in r.out, "no worker in the status's cgroup:\n" + r.out
    log = invocation_journal(c)
    assert re.search(r"hello: generation 1 ready after \d+ ms", log), log
    # The workers run as the configured user.
    pids = c.sh("cat " + cgroup_procs(c)).out.split()
    users = {c.sh("stat -c %%U /proc/%s" % p).out.strip() for p in pids if int(p) != main}
    assert users == {"www-data"}, users


def test_reload_rolls_over(fresh):
    c = fresh
    old = served_by(c)
    assert old["generation"] == 1
    r = c.sh("systemctl reload %s" % SERVICE, timeout=60, check=False)
    assert r.returncode == 0, r.out + diag(c)
    # ExecReload= blocked until the rollover was over: generation 2 answers
    # now, and systemd is not left in "reloading".
    assert generation(c) == 2
    assert get(c, "/") == (200, MESSAGE)
    assert settled(c) == "active"
    assert re.search(r"generation 2\b", show(c, SERVICE, "StatusText"))
    log = invocation_journal(c)
    assert re.search(r"hello: generation 2 serving after \d+ ms \(trigger: control\)", log), log


def test_broken_binary_fails_the_reload_and_the_old_generation_serves(fresh):
    c = fresh
    before = served_by(c)
    # The shipped config has watch = true: installing the broken binary
    # rolls over by itself, and that rollover is aborted.
    install_hello(c, BROKEN)
    wait_for(lambda: re.search(r"hello: generation 2 aborted: .*\(trigger: watch",
                               invocation_journal(c)),
             30, "the watch rollover to be aborted:\n" + diag(c))
    assert get(c, "/") == (200, MESSAGE)
    assert served_by(c)["generation"] == before["generation"]
    # And systemctl reload fails, leaving the old generation serving and
    # the unit active.
    r = c.sh("systemctl reload %s" % SERVICE, timeout=60, check=False)
    assert r.returncode != 0, "systemctl reload succeeded with a broken binary:\n" + r.out
    assert get(c, "/") == (200, MESSAGE)
    assert served_by(c)["generation"] == before["generation"]
    assert settled(c) == "active", diag(c)
    assert show(c, SERVICE, "SubState") == "running"
    assert show(c, SERVICE, "MainPID") == show(c, SERVICE, "ExecMainPID")
    log = invocation_journal(c)
    assert re.search(r"hello: generation 3 aborted: .*\(trigger: control", log), log
    assert "broken on purpose" in log, log
    # The good binary back: the watch rolls over to it, and a reload works.
    install_hello(c, GOOD)
    wait_for(lambda: re.search(r"hello: generation 4 serving after .*\(trigger: watch\)",
                               invocation_journal(c)),
             30, "the watch rollover to the good binary:\n" + diag(c))
    assert served_by(c)["generation"] == 4
    assert settled(c) == "active"
    r = c.sh("systemctl reload %s" % SERVICE, timeout=60, check=False)
    assert r.returncode == 0, r.out + diag(c)
    assert served_by(c)["generation"] == 5
    assert settled(c) == "active"
    # journalctl -u has it all; with JOURNAL_STREAM set the daemon writes
    # <N> prefixes, which journald turns into priorities.
    log = journal(c)
    assert re.search(r"hello: generation 5 serving after \d+ ms", log), log
    assert re.search(r"hello: generation 3 aborted: ", log), log
    assert not re.search(r"^<\d>", log, re.M), log
    errors = journal(c, "-p", "err")
    assert "generation 3 aborted" in errors, errors
    assert "serving after" not in errors, errors


def test_upgrade_in_place_keeps_main_pid_and_workers(fresh):
    """SIGUSR2 through systemd: the new binary takes over under the same
    MainPID, the workers stay, and notifications still reach systemd."""
    c = fresh
    main = show(c, SERVICE, "MainPID")
    procs = cgroup_procs(c)
    before = sorted(c.sh("cat " + procs).out.split())
    exe = "/usr/local/sbin/rollover"
    c.sh('cp "$1" "$1.new" && mv -f "$1.new" "$1"', 10, True, exe)
    c.sh("systemctl kill -s USR2 --kill-who=main %s" % SERVICE)
    wait_for(lambda: "upgraded in place" in invocation_journal(c), 30,
             "the upgrade in the journal")
    assert show(c, SERVICE, "MainPID") == main
    assert sorted(c.sh("cat " + procs).out.split()) == before
    assert state(c) == "active", diag(c)
    r = c.sh("rolloverctl upgrade", timeout=60, check=False)
    assert r.returncode == 0 and "upgraded from rollover" in r.out, r.out + diag(c)
    # The notify socket was handed over: a reload still completes.
    r = c.sh("systemctl reload %s" % SERVICE, timeout=60, check=False)
    assert r.returncode == 0, r.out + diag(c)
    assert generation(c) == 2
    assert settled(c) == "active"
    assert show(c, SERVICE, "MainPID") == main


def test_stop_leaves_no_process(fresh):
    c = fresh
    assert show(c, SERVICE, "ControlGroup") == "/system.slice/rollover.service"
    procs = cgroup_procs(c)
    inv = show(c, SERVICE, "InvocationID")
    pids = c.sh("cat " + procs).out.split()
    assert len(pids) >= 2, pids  # rollover and its workers
    t = time.monotonic()
    c.sh("systemctl stop %s" % SERVICE, timeout=60)
    took = time.monotonic() - t
    assert state(c) == "inactive", diag(c)
    # rollover stopped its workers and exited 0 on SIGTERM, well before
    # TimeoutStopSec, so that KillMode=mixed had nothing left to kill.
    assert show(c, SERVICE, "Result") == "success", diag(c)
    assert show(c, SERVICE, "MainPID") == "0"
    assert took < 20, "stop took %.1f s" % took
    left = c.sh('test ! -e "$1" || cat "$1"', 10, True, procs).out.split()
    assert left == [], left
    alive = c.sh("for p in %s; do test -e /proc/$p && echo $p; done; "
                 "grep -l '^rollover' /proc/[0-9]*/comm 2>/dev/null; true" % " ".join(pids)).out
    assert alive.strip() == "", "left running:\n" + alive
    log = invocation_journal(c, inv)
    assert "Killing process" not in log and "Deactivated successfully" in log, log


def test_socket_activation(fresh):
    c = fresh
    c.sh("systemctl stop %s" % SERVICE, timeout=60)
    c.sh("systemctl start %s" % SOCKET, timeout=30)
    assert state(c, SOCKET) == "active"
    assert state(c) == "inactive"
    # The first connection starts the service, and is answered by it.  A
    # worker may answer before every worker is ready, that is before the
    # daemon says READY=1: the unit is active once it has.
    assert get(c, "/") == (200, MESSAGE)
    wait_for(lambda: state(c) == "active", 30, "the service to be active")
    log = invocation_journal(c)
    assert "listening on 127.0.0.1:8080 (from the service manager)" in log, log
    assert generation(c) == 1
    # The socket from systemd survives a reload, and the next generation
    # answers on it.
    c.sh("systemctl reload %s" % SERVICE, timeout=60)
    assert generation(c) == 2
    assert get(c, "/") == (200, MESSAGE)
    # Stopped, with the socket still listening: the next connection
    # starts it again.
    c.sh("systemctl stop %s" % SERVICE, timeout=60)
    assert state(c) == "inactive"
    assert get(c, "/") == (200, MESSAGE)
    wait_for(lambda: state(c) == "active", 30, "the service to be active")
    c.sh("systemctl stop %s %s" % (SOCKET, SERVICE), timeout=60)
    assert state(c) == "inactive" and state(c, SOCKET) == "inactive"
