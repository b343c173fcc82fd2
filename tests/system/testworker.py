#!/usr/bin/python3
"""A worker for the system tests whose misbehaviour is chosen by flags.

It speaks the protocol by hand (fd 3.., NOTIFY_SOCKET) so that the tests
see exactly what the supervisor hands over, independently of the worker
library in worker/.
"""
import argparse
import json
import os
import re
import signal
import socket
import sys
import time


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(msg.encode(), path)
    finally:
        s.close()


def status_field(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return line.split()[1]
    return None


def limits():
    """/proc/self/limits as {"Max open files": ["1024", "4096"], ...}."""
    out = {}
    for line in open("/proc/self/limits").readlines()[1:]:
        m = re.match(r"(Max .+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1)] = [m.group(2), m.group(3)]
    return out


def dump(path):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    info = {
        "pid": os.getpid(),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "fds": fds,
        "sigblk": open("/proc/self/status").read().split("SigBlk:")[1].split()[0],
        "sigign": open("/proc/self/status").read().split("SigIgn:")[1].split()[0],
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "umask": status_field("Umask"),
        "nonewprivs": status_field("NoNewPrivs"),
        "limits": limits(),
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "groups": sorted(os.getgroups()),
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, path)


def orphan(path, life, ignore_term):
    """Leave a daemon behind: fork twice, the middle one exits, so that
    the grandchild is orphaned out of our process group and session."""
    pid = os.fork()
    if pid > 0:
        os.waitpid(pid, 0)
        return
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, path)
    time.sleep(life)
    os._exit(0)


def serve(deadline_check):
    """Answer every connection on fd 3 with one line: our pid."""
    lst = socket.socket(fileno=3)
    lst.settimeout(0.1)
    while deadline_check():
        try:
            c, _ = lst.accept()
        except (socket.timeout, BlockingIOError):
            continue
        c.sendall(("%d\n" % os.getpid()).encode())
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exit", type=int, help="exit at once with this status")
    ap.add_argument("--no-ready", action="store_true")
    ap.add_argument("--ready-when", help="send READY=1 once this file exists")
    ap.add_argument("--shutdown-if", help="shutdown(2) the listener at fd 3 "
                    "if this file exists")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--stop-delay", type=float, default=0.0)
    ap.add_argument("--dump", help="write env, fds and signal state here")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--orphan", help="leave a daemon behind, its pid here")
    ap.add_argument("--orphan-life", type=float, default=60.0)
    ap.add_argument("--orphan-ignore-term", action="store_true")
    a = ap.parse_args()

    if a.orphan:
        orphan(a.orphan, a.orphan_life, a.orphan_ignore_term)

    if a.dump:
        d = a.dump.replace("%p", str(os.getpid()))
        dump(d)
    if a.exit is not None:
        sys.exit(a.exit)

    state = {"stop": None}

    def on_term(sig, frame):
        if not a.ignore_term and state["stop"] is None:
            state["stop"] = time.monotonic() + a.stop_delay

    signal.signal(signal.SIGTERM, on_term)
    if not a.no_ready and not a.ready_when:
        notify("READY=1")

    def running():
        if a.ready_when and os.path.exists(a.ready_when):
            notify("READY=1")
            a.ready_when = None
        return state["stop"] is None or time.monotonic() < state["stop"]

    if a.shutdown_if and os.path.exists(a.shutdown_if):
        socket.socket(fileno=os.dup(3)).shutdown(socket.SHUT_RDWR)
    if a.serve:
        serve(running)
    else:
        while running():
            time.sleep(0.02)
    notify("STOPPING=1")
    sys.exit(0)


main()
