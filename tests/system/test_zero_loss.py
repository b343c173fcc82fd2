"""Promise 1: no connection is refused or reset because of a rollover.

wrk keeps 64 connections busy on loopback while the group is rolled over
50 times, by SIGHUP and by replacing its binary alternately; wrk must
report no socket error (connect, read, write, timeout) and no non-2xx
response.  Once with keep-alive, once with a new connection per request.
"""
import os
import re
import shutil
import signal
import time

import pytest

from conftest import BUILD, WrkLoad, free_port, group_conf, http_get

ROLLOVERS = 50


def replace_binary(src, dst):
    """The deploy idiom: copy beside the target, then rename over it."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dst)


@pytest.mark.parametrize("mode", ["keep-alive", "close"])
def test_zero_loss_across_50_rollovers(supervisor, tmp_path, mode):
    port = free_port()
    app = str(tmp_path / "app")
    shutil.copyfile(os.path.join(BUILD, "tests", "hello-a"), app)
    os.chmod(app, 0o755)
    s = supervisor([group_conf(name="web", command=app, workers=2, watch=True,
                               settle=0.02, listen=["127.0.0.1:%d" % port])])
    s.wait_ready(2)
    assert http_get(port, "/")[1] == "variant a\n"

    with WrkLoad(port, close=(mode == "close")) as wrk:
        deadline = time.monotonic() + 90
        for i in range(ROLLOVERS):
            assert time.monotonic() < deadline, "rollovers too slow"
            gen = i + 2
            if i % 2 == 0:
                s.signal(signal.SIGHUP)
            else:
                variant = "hello-b" if (i // 2) % 2 == 0 else "hello-a"
                replace_binary(os.path.join(BUILD, "tests", variant), app)
            s.wait_log(r"web: generation %d serving after" % gen, timeout=10)
        time.sleep(1.0)  # and some load on the last generation
    log = s.log()
    assert "aborted" not in log
    assert len(re.findall(r"rollover to generation \d+ begun", log)) == ROLLOVERS
    wrk.assert_clean(1000)
    # The last generation answers, and every old worker is gone.
    s.wait_workers(2)
    assert http_get(port, "/pid")[0] == 200
