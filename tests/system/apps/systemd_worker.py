#!/usr/bin/python3
"""A worker written only against python3-systemd's socket-activation API:
systemd.daemon.listen_fds() for the listener, notify("READY=1"), and an
HTTP/1.0 answer per connection.  It knows nothing of rollover."""
import os
import signal
import socket
import sys

from systemd import daemon

fds = daemon.listen_fds()
if not fds:
    sys.exit("no socket passed")
lst = socket.socket(fileno=fds[0])
lst.settimeout(0.2)
stopping = []
signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
daemon.notify("READY=1")
gen = os.environ.get("ROLLOVER_GENERATION", "?")
while not stopping:
    try:
        c, _ = lst.accept()
    except (socket.timeout, InterruptedError):
        continue
    c.settimeout(5)
    c.recv(65536)
    body = ("python %s %d\n" % (gen, os.getpid())).encode()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    c.close()
daemon.notify("STOPPING=1")
