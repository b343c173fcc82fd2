"""The chaos test, short: tests/chaos/chaos.py for 30 s with a fixed seed
(`make chaos` runs it for minutes with a random one), and what it found.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys

from conftest import BUILD, HELLO, ROOT, free_port, group_conf, http_get, recv_all

CHAOS = os.path.join(ROOT, "tests", "chaos", "chaos.py")


def test_chaos_short():
    env = dict(os.environ, ROLLOVER_BUILD=BUILD)
    r = subprocess.run([sys.executable, CHAOS, "--duration", "30", "--seed", "20261127"],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300, universal_newlines=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-6000:]
    assert "result: ok" in r.stdout


def test_control_refuses_a_nul_byte(supervisor, tmp_path):
    """Found by the chaos test: the request line was read as a C string,
    so "status\\0stop" ran status and "reload\\0..." a reload."""
    port = free_port()
    s = supervisor([group_conf(name="web", command=HELLO, workers=1,
                               listen=["127.0.0.1:%d" % port])])
    s.wait_ready(1)
    for req in (b"status\0stop\n", b"reload\0\n", b"\0\n"):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(str(tmp_path / "control.sock"))
        c.sendall(req)
        assert recv_all(c) == b"error: a NUL byte in the request\n", req
        c.close()
    assert "rollover to generation" not in s.log()
    assert s.proc.poll() is None


def test_rename_during_a_reload_is_rolled_out(supervisor, tmp_path):
    """Found by the chaos test: a binary renamed into place while a SIGHUP
    reload was starting workers was never rolled out.  The reload rebuilt
    the inotify watches afterwards, which gave the directory a new watch
    descriptor, and the rename's event, queued under the old one, matched
    no watch any more.  64 workers make the reload long enough to rename
    inside it every time."""
    port = free_port()
    app = str(tmp_path / "app")
    shutil.copyfile(os.path.join(BUILD, "tests", "hello-a"), app)
    os.chmod(app, 0o755)
    s = supervisor([group_conf(name="web", command=app, workers=64, watch=True,
                               settle=0.02, listen=["127.0.0.1:%d" % port])])
    s.wait_ready(64, timeout=60)
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: rollover to generation 2 begun", timeout=10)
    tmp = app + ".tmp"
    shutil.copyfile(os.path.join(BUILD, "tests", "hello-b"), tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, app)
    # The rename landed while the reload was still starting its workers.
    assert s.count(r"\(slot \d+, generation 2\) started") < 64
    s.wait_log(r"web: generation 3 serving after", timeout=60)
    assert "(trigger: watch)" in s.log().split("rollover to generation 3 begun")[1][:30]
    s.wait_workers(64, timeout=60)
    assert http_get(port, "/")[1] == "variant b\n"
