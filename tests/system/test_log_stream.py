"""A worker that floods the stream the supervisor logs to (journald's
socket, under systemd) does not stall the supervisor: its lines are
dropped and counted instead of waited for."""
import json
import os
import re
import socket
import subprocess
import time

from conftest import (ROLLOVER, assert_no_sanitizer_report, control, group_conf,
                      wait_for, write_conf)


NOTE = re.compile(rb"\d+ log lines dropped: the log stream was full\n")


def drain(sock, quiet=0.5, limit=30.0):
    """Read until nothing came for `quiet` seconds.  Returns the last
    64 KiB read and whether the drop note went by."""
    out, noted = b"", False
    sock.settimeout(quiet)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            b = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not b:
            break
        out += b
        noted = noted or NOTE.search(out) is not None
        out = out[-(1 << 16):]
    return out, noted


def test_flooded_log_socket_does_not_stall_the_supervisor(tmp_path):
    # Each worker writes 4 MB to the stream, then idles.
    flood = tmp_path / "flood.sh"
    flood.write_text("#!/bin/sh\nyes 'flooding the log stream' | head -c 4000000\n"
                     "exec sleep 600\n")
    flood.chmod(0o755)
    conf = write_conf(str(tmp_path / "rollover.conf"), [group_conf(
        name="flood", command=str(flood), workers=1, ready=0.1,
        stop_timeout=1)])
    ctl = os.path.join(str(tmp_path), "control.sock")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    proc = subprocess.Popen([ROLLOVER, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=theirs, stderr=theirs, cwd=str(tmp_path))
    theirs.close()
    try:
        wait_for(lambda: os.path.exists(ctl), what="the control socket")
        time.sleep(0.5)  # the worker has filled the socket by now
        # Nobody reads the log: the supervisor still answers and rolls
        # over (its log lines about it are dropped).
        st = json.loads(control(ctl, "status", timeout=5)[0])
        assert st["groups"][0]["workers"], st
        assert control(ctl, "reload", timeout=20)[-1] == "ok"
        _, noted = drain(ours)  # the floods are over: there is room again
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        tail, noted_late = drain(ours)
        text = tail.decode(errors="replace")
        # The first line with room again says how many were dropped.
        assert noted or noted_late, text[-2000:]
        assert "SIGTERM: stopping gracefully" in text and "stopped" in text
        assert_no_sanitizer_report(text)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ours.close()
