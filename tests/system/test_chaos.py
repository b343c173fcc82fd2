"""The chaos test, short: tests/chaos/chaos.py for 30 s with a fixed seed
(`make chaos` runs it for minutes with a random one), and what it found.
"""
import os
import socket
import subprocess
import sys

from conftest import BUILD, HELLO, ROOT, free_port, group_conf, recv_all

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
