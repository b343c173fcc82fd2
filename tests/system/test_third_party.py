"""Programs no one here wrote, speaking socket activation, under rollover.

Debian's gunicorn (it takes LISTEN_FDS and says READY=1 on its own) with a
tiny WSGI app, and a Python worker written against python3-systemd's
listen_fds()/notify(): each serves through rollover's listener and rolls
over under wrk load with zero errors.
"""
import os
import shutil
import signal
import time

import pytest

from conftest import ROOT, WrkLoad, free_port, group_conf, http_get

APPS = os.path.join(ROOT, "tests", "system", "apps")
GUNICORN = shutil.which("gunicorn") or "/usr/bin/gunicorn"


def roll_under_load(s, port, rollovers):
    with WrkLoad(port, conns=16, close=True) as wrk:
        for i in range(rollovers):
            s.signal(signal.SIGHUP)
            s.wait_log(r"generation %d serving after" % (i + 2), timeout=30)
        time.sleep(0.5)
    wrk.assert_clean(100)


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
    roll_under_load(s, port, 3)
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
    roll_under_load(s, port, 5)
    assert http_get(port, "/")[1].startswith("python 6 ")
