"""Programs no one here wrote, speaking socket activation, under rollover.

Debian's gunicorn (it takes LISTEN_FDS and says READY=1 on its own) with a
tiny WSGI app, and a Python worker written against python3-systemd's
listen_fds()/notify(): each serves through rollover's listener and rolls
over under wrk load with zero errors.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT, free_port, group_conf, http_get, wrk_errors

APPS = os.path.join(ROOT, "tests", "system", "apps")
GUNICORN = shutil.which("gunicorn") or "/usr/bin/gunicorn"


def roll_under_load(s, port, rollovers, connection_close):
    cmd = ["wrk", "-t2", "-c16", "-d120s", "--timeout", "5s",
           "http://127.0.0.1:%d/" % port]
    if connection_close:
        cmd[1:1] = ["-H", "Connection: close"]
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)
        for i in range(rollovers):
            s.signal(signal.SIGHUP)
            s.wait_log(r"generation %d serving after" % (i + 2), timeout=30)
        time.sleep(0.5)
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    out = out.decode()
    assert int(re.search(r"(\d+) requests in", out).group(1)) > 100, out
    assert wrk_errors(out) == (0, 0), out


@pytest.mark.skipif(not os.path.exists(GUNICORN), reason="apt-get install gunicorn")
def test_gunicorn_under_rollover(supervisor):
    port = free_port()
    s = supervisor([group_conf(
        name="gunicorn", command=GUNICORN, workers=1, directory=APPS,
        args=["--workers", "2", "--graceful-timeout", "10", "wsgi_app:app"],
        listen=["127.0.0.1:%d" % port], ready="notify", stop_timeout=15)])
    s.wait_ready(1, timeout=20)
    st, body = http_get(port, "/")
    assert st == 200 and body.startswith("1 ")
    roll_under_load(s, port, 3, connection_close=True)
    st, body = http_get(port, "/")
    assert st == 200 and body.startswith("4 "), body


def test_python_systemd_worker_under_rollover(supervisor):
    pytest.importorskip("systemd.daemon")
    port = free_port()
    s = supervisor([group_conf(
        name="py", command=os.path.join(APPS, "systemd_worker.py"), workers=2,
        listen=["127.0.0.1:%d" % port])])
    s.wait_ready(2, timeout=20)
    assert http_get(port, "/")[1].startswith("python 1 ")
    roll_under_load(s, port, 5, connection_close=True)
    assert http_get(port, "/")[1].startswith("python 6 ")
