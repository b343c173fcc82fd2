"""No strays: what a worker leaves behind stays the supervisor's.

The supervisor is a child subreaper, or PID 1 in a PID namespace: a
daemon that a worker double-forks out of its process group is reparented
to it, reaped when it exits, and stopped (SIGTERM, then SIGKILL after the
stop_timeout) before the supervisor exits.
"""
import os
import signal

from conftest import (ROLLOVER, TESTWORKER, Supervisor, children, group_conf,
                      pid_alive, wait_for, write_conf)


def parent_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def read_pid(path):
    def ready():
        try:
            with open(path) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None
    return wait_for(ready, what=path)


def orphan_group(tmp_path, *extra, stop_timeout=2.0):
    return group_conf(name="leaver", command=TESTWORKER, workers=1,
                      stop_timeout=stop_timeout,
                      args=["--orphan", str(tmp_path / "orphan.pid")] + list(extra))


def test_orphan_is_adopted_then_stopped_with_the_supervisor(supervisor, tmp_path):
    s = supervisor([orphan_group(tmp_path)])
    s.wait_ready(1)
    orphan = read_pid(str(tmp_path / "orphan.pid"))
    assert parent_of(orphan) == s.pid
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    assert not pid_alive(orphan)
    assert "stopping process %d, left behind by a worker, with SIGTERM" % orphan \
        in s.log()
    assert children(s.pid) == []


def test_orphan_that_ignores_term_is_killed_after_stop_timeout(supervisor, tmp_path):
    s = supervisor([orphan_group(tmp_path, "--orphan-ignore-term", stop_timeout=0.5)])
    s.wait_ready(1)
    orphan = read_pid(str(tmp_path / "orphan.pid"))
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    assert not pid_alive(orphan)
    log = s.log()
    assert "process %d, left behind by a worker, with SIGKILL" % orphan in log
    assert "process %d killed by signal 9" % orphan in log


def test_orphan_that_exits_is_reaped(supervisor, tmp_path):
    s = supervisor([orphan_group(tmp_path, "--orphan-life", "0.3")])
    s.wait_ready(1)
    orphan = read_pid(str(tmp_path / "orphan.pid"))
    wait_for(lambda: not os.path.exists("/proc/%d" % orphan), what="orphan reaped")
    assert children(s.pid, zombies=True) == []
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0


def test_quit_kills_orphans_at_once(supervisor, tmp_path):
    s = supervisor([orphan_group(tmp_path, "--orphan-ignore-term", stop_timeout=30)])
    s.wait_ready(1)
    orphan = read_pid(str(tmp_path / "orphan.pid"))
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(timeout=10) == 0
    assert not pid_alive(orphan)


def test_pid_1_in_a_pid_namespace(tmp_path):
    """A container entrypoint: orphans are reaped, SIGTERM from outside
    (the runtime) stops everything, and the exit status comes through."""
    conf = write_conf(str(tmp_path / "rollover.conf"),
                      [orphan_group(tmp_path, "--orphan-life", "0.3")],
                      log_level="debug")
    s = Supervisor(conf, str(tmp_path),
                   argv=["unshare", "--pid", "--fork", "--mount-proc",
                         ROLLOVER, "-c", conf])
    init = None
    try:
        s.wait_log("running as PID 1")
        init = wait_for(lambda: children(s.pid), what="rollover in the namespace")[0]
        s.wait_ready(1)
        orphan = read_pid(str(tmp_path / "orphan.pid"))  # as the namespace sees it
        s.wait_log(r"reaped process %d\b" % orphan)
        assert children(init, zombies=True) == []
        os.kill(init, signal.SIGTERM)
        assert s.wait_exit() == 0
        assert "stopped" in s.log()
    finally:
        if init is not None and pid_alive(init):
            os.kill(init, signal.SIGKILL)  # takes the whole namespace along
        s.kill_all()
