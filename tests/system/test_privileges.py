"""Privileges of a group's workers: user and group, supplementary groups,
umask, no_new_privs and resource limits, seen from inside the worker."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import (ROLLOVER, TESTWORKER, Supervisor, group_conf, wait_for,
                      write_conf)

NOBODY = 65534
SUPP_GID = 4000123   # a group with nobody as a member, in our own /etc/group
OTHER_GID = 4000124  # a group with no entry at all

# The names of /proc/PID/limits for the keys of `limits`.
PROC_LIMITS = {
    "nofile": "Max open files", "core": "Max core file size",
    "nproc": "Max processes", "memlock": "Max locked memory",
    "as": "Max address space", "fsize": "Max file size",
    "stack": "Max stack size", "cpu": "Max cpu time",
}


def with_keys(group, text):
    """group_conf() text with raw libconfig lines added: it cannot
    write nested groups or the L suffix."""
    return group[:group.rindex("\n  }")] + "\n" + text + "\n  }"


@pytest.fixture
def open_dir():
    """A directory that an unprivileged worker can run from and write to
    (pytest's own are private to root)."""
    d = tempfile.mkdtemp(prefix="rollover-priv-")
    os.chmod(d, 0o755)
    out = os.path.join(d, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    worker = os.path.join(d, "testworker.py")
    shutil.copy(TESTWORKER, worker)
    os.chmod(worker, 0o755)
    yield d
    shutil.rmtree(d)


def line_of(conf, text):
    """The line of conf on which text first appears."""
    with open(conf) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


def read_dump(path, timeout=10.0):
    wait_for(lambda: os.path.exists(path), timeout, "the dump " + path)
    with open(path) as f:
        return json.load(f)


def proc_limits(pid):
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        for line in f.readlines()[1:]:
            m = re.match(r"(Max .+?)\s{2,}(\S+)\s+(\S+)", line)
            out[m.group(1)] = [m.group(2), m.group(3)]
    return out


def test_umask_no_new_privs_and_limits_are_applied(tmp_path):
    """One group sets all three, the other none: it gets the supervisor's
    own umask, no NoNewPrivs and the supervisor's limits."""
    set_dump, plain_dump = str(tmp_path / "set.json"), str(tmp_path / "plain.json")
    limits = """    limits = {
      nofile = 1234;
      core = { soft = 0; hard = 4096; };
      nproc = 4000;
      memlock = 32768;
      as = 17179869184L;
      fsize = { soft = 1048576; hard = "infinity"; };
      stack = 4194304;
      cpu = 3600;
    };"""
    groups = [
        with_keys(group_conf(name="set", command=TESTWORKER, args=["--dump", set_dump],
                             umask="0027", no_new_privs=True), limits),
        group_conf(name="plain", command=TESTWORKER, args=["--dump", plain_dump]),
    ]
    conf = write_conf(str(tmp_path / "r.conf"), groups)
    s = Supervisor(conf, str(tmp_path), argv=[
        "/bin/sh", "-c", "umask 0077 && exec %s -c %s" % (ROLLOVER, conf)])
    try:
        s.wait_ready(2)
        got = read_dump(set_dump)
        assert got["umask"] == "0027"
        assert got["nonewprivs"] == "1"
        lim = got["limits"]
        assert lim[PROC_LIMITS["nofile"]] == ["1234", "1234"]
        assert lim[PROC_LIMITS["core"]] == ["0", "4096"]
        assert lim[PROC_LIMITS["nproc"]] == ["4000", "4000"]
        assert lim[PROC_LIMITS["memlock"]] == ["32768", "32768"]
        assert lim[PROC_LIMITS["as"]] == ["17179869184", "17179869184"]
        assert lim[PROC_LIMITS["fsize"]] == ["1048576", "unlimited"]
        assert lim[PROC_LIMITS["stack"]] == ["4194304", "4194304"]
        assert lim[PROC_LIMITS["cpu"]] == ["3600", "3600"]

        plain = read_dump(plain_dump)
        assert plain["umask"] == "0077"
        assert plain["nonewprivs"] == "0"
        assert plain["limits"] == proc_limits(s.pid)
        # The supervisor itself is left as it was.
        assert proc_limits(s.pid)[PROC_LIMITS["nofile"]] != ["1234", "1234"]
    finally:
        s.kill_all()


def test_user_and_supplementary_groups(open_dir, tmp_path):
    """As nobody, with the groups a private /etc/group gives nobody (in a
    mount namespace of the supervisor's own, so the host's is untouched);
    `group` replaces the primary group but not the supplementary ones."""
    out = os.path.join(open_dir, "out")
    worker = os.path.join(open_dir, "testworker.py")
    group_file = os.path.join(open_dir, "group")
    with open("/etc/group") as f:
        text = f.read()
    with open(group_file, "w") as f:
        f.write(text.rstrip("\n") + "\nrollover-test:x:%d:nobody\n" % SUPP_GID)
    os.chmod(group_file, 0o644)
    groups = [
        group_conf(name="nobody", command=worker, directory=open_dir,
                   args=["--dump", out + "/nobody.json"], user="nobody", umask="0007"),
        group_conf(name="other", command=worker, directory=open_dir,
                   args=["--dump", out + "/other.json"], user=str(NOBODY),
                   group=str(OTHER_GID), no_new_privs=True),
    ]
    conf = write_conf(str(tmp_path / "r.conf"), groups)
    s = Supervisor(conf, str(tmp_path), argv=[
        "unshare", "--mount", "--", "/bin/sh", "-c",
        "mount --bind %s /etc/group && exec %s -c %s" % (group_file, ROLLOVER, conf)])
    try:
        s.wait_ready(2)
        got = read_dump(out + "/nobody.json")
        assert got["uid"] == [NOBODY] * 3
        assert got["gid"] == [NOBODY] * 3
        assert got["groups"] == [NOBODY, SUPP_GID]
        assert got["umask"] == "0007"
        assert got["cwd"] == open_dir
        got = read_dump(out + "/other.json")
        assert got["uid"] == [NOBODY] * 3
        assert got["gid"] == [OTHER_GID] * 3
        assert got["groups"] == [SUPP_GID, OTHER_GID]
        assert got["nonewprivs"] == "1"
    finally:
        s.kill_all()
    # The host's group database never saw the test's group.
    assert "rollover-test" not in open("/etc/group").read()


def test_limit_that_cannot_be_set_is_a_spawn_failure(tmp_path):
    """The config was fine when read, then the supervisor's own hard
    limit was lowered under it, and it lacks CAP_SYS_RESOURCE: starting a
    worker fails, naming the limit; a reload then refuses the file."""
    conf = write_conf(str(tmp_path / "r.conf"), [with_keys(
        group_conf(name="lim", command="/bin/sleep", args=["60"], ready=0),
        "    limits = { nofile = 1000; };")])
    s = Supervisor(conf, str(tmp_path), argv=[
        "setpriv", "--bounding-set=-sys_resource", "--", ROLLOVER, "-c", conf])
    try:
        s.wait_ready(1)
        subprocess.run(["prlimit", "--pid", str(s.pid), "--nofile=500:500"],
                       check=True, timeout=10)
        s.signal(signal.SIGTTIN)
        s.wait_log(r"lim: slot 1, generation 1: cannot start /bin/sleep: "
                   r"setrlimit nofile: Operation not permitted")
        assert s.proc.poll() is None
        s.signal(signal.SIGHUP)
        s.wait_log(re.escape("%s:%d: 'limits.nofile' 1000 is above rollover's "
                             "own hard limit, 500, and raising it needs "
                             "CAP_SYS_RESOURCE" % (conf, line_of(conf, "limits"))))
        assert s.proc.poll() is None
    finally:
        s.kill_all()


def check(conf, prefix=()):
    r = subprocess.run(list(prefix) + [ROLLOVER, "-t", "-c", conf],
                       capture_output=True, timeout=10)
    return r.returncode, r.stderr.decode().splitlines()


@pytest.mark.parametrize("key, value, message", [
    ("umask", '"0800"', "'umask' must be an octal mode in a string, like \"0027\""),
    ("umask", "27", "'umask' must be an octal mode in a string, like \"0027\""),
    ("no_new_privs", '"yes"', "'no_new_privs' must be true or false"),
    ("limits", "{ nofiles = 10; }", "unknown key 'limits.nofiles'"),
    ("limits", '{ core = "big"; }', "'limits.core' must be a number or \"infinity\""),
    ("limits", "{ as = 3000000000; }",
     "'limits.as' must not be negative (a number above 2147483647 needs an "
     "L suffix: 4294967296L)"),
])
def test_bad_value_is_one_line_with_file_and_line(tmp_path, key, value, message):
    conf = write_conf(str(tmp_path / "r.conf"), [
        group_conf(name="web", command="/bin/true")[:-4] +
        "\n    %s = %s;\n  }" % (key, value)])
    assert check(conf) == (78, ["%s:%d: %s" % (conf, line_of(conf, key), message)])


def test_hard_limit_above_ours_is_refused_when_read(tmp_path):
    """Without CAP_SYS_RESOURCE, a hard limit above the supervisor's own
    is found by `rollover -t`, not at the first start."""
    conf = write_conf(str(tmp_path / "r.conf"), [with_keys(
        group_conf(name="web", command="/bin/true"),
        "    limits = { core = 2000; };")])
    unprivileged = ["prlimit", "--core=0:1000", "setpriv",
                    "--bounding-set=-sys_resource", "--"]
    assert check(conf, unprivileged) == (78, [
        "%s:%d: 'limits.core' 2000 is above rollover's own hard limit, 1000, "
        "and raising it needs CAP_SYS_RESOURCE" % (conf, line_of(conf, "limits"))])
    conf = write_conf(str(tmp_path / "r.conf"), [with_keys(
        group_conf(name="web", command="/bin/true"),
        "    limits = { core = 1000; };")])
    assert check(conf, unprivileged)[0] == 0
