"""The worker library's example workers under the real supervisor:
rollover-hello's HTTP (keep-alive, pipelining, errors, timeouts, limits)
and graceful drain, rollover-echo's drain, and random bytes thrown at
hello.  Every test runs its own supervisor on a free port; raw sockets
show exactly what a client sees (an answer, an end of file, a reset).
"""
import json
import os
import random
import re
import select
import signal
import socket
import time

from conftest import (BUILD, HELLO, WrkLoad, free_port, group_conf, http_get,
                      pid_alive)

ECHO = os.path.join(BUILD, "rollover-echo")


def web(supervisor, command=HELLO, args=(), workers=1, **top):
    port = free_port()
    s = supervisor([group_conf(name="web", command=command, args=list(args),
                               workers=workers, listen=["127.0.0.1:%d" % port])],
                   log_level="debug", **top)
    pids = s.wait_ready(workers)
    return s, port, pids


def connect(port, timeout=10.0):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.settimeout(timeout)
    return c


def send_get(c, path="/", extra=""):
    c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode())


class Reader:
    """Responses off one socket, in order; Content-Length framed."""

    def __init__(self, c):
        self.c, self.buf, self.eof = c, b"", False

    def _more(self):
        b = self.c.recv(65536)  # a reset raises: no test expects one
        if not b:
            self.eof = True
        self.buf += b
        return b

    def response(self, head=False):
        """(status, {lower-case header: value}, body), or None at end of file."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                assert not self.buf, "end of file inside a head: %r" % self.buf
                return None
        head_bytes, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = 0 if head else int(headers["content-length"])
        while len(self.buf) < n:
            assert self._more(), "end of file inside a body"
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body.decode("latin-1")

    def at_eof(self):
        """True once the peer's end of file is read, with nothing before it."""
        while not self.eof:
            if self._more():
                return False
        return not self.buf


def wait_stopping(s, pid):
    """The worker has taken the stop signal in (it said STOPPING=1)."""
    s.wait_log(r"worker %d is stopping" % pid)


# ---- HTTP ------------------------------------------------------------------


def test_keepalive_pipelining_head_and_close(supervisor):
    s, port, _ = web(supervisor)
    c = connect(port)
    r = Reader(c)
    # Three requests in one segment: three answers, in order.
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
              b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    st, h, body = r.response()
    assert (st, body, h["connection"]) == (200, "hello from rollover\n", "keep-alive")
    st, h, body = r.response()
    assert st == 200 and '"generation":1' in body and h["content-type"] == "application/json"
    st, h, body = r.response(head=True)
    assert st == 200 and h["content-length"] == "20"
    # The connection lives on; a request with a body, then one asking to close.
    c.sendall(b"POST /nowhere HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert r.response()[0] == 404
    c.sendall(b"DELETE / HTTP/1.1\r\n\r\n")
    st, h, _ = r.response()
    assert st == 405 and h["allow"] == "GET, HEAD"
    send_get(c, "/", "Connection: close\r\n")
    st, h, _ = r.response()
    assert st == 200 and h["connection"] == "close"
    assert r.at_eof()
    c.close()
    # HTTP/1.0 closes unless asked not to.
    c = connect(port)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    r = Reader(c)
    assert r.response()[1]["connection"] == "close"
    assert r.at_eof()
    c.close()


def test_malformed_requests_answered_then_closed(supervisor):
    s, port, _ = web(supervisor)
    cases = [
        (b"garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, 431),  # never ends
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /sleep?ms=abc HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    ]
    for data, want in cases:
        c = connect(port)
        # A good request first: the error ends a live connection too.
        send_get(c)
        c.sendall(data)
        r = Reader(c)
        assert r.response()[0] == 200
        st, h, _ = r.response()
        assert st == want, data[:60]
        assert h["connection"] == "close"
        assert r.at_eof(), data[:60]
        c.close()
    assert http_get(port, "/")[0] == 200


def test_sleep_answers_later_without_blocking(supervisor):
    s, port, _ = web(supervisor)
    slow = connect(port)
    t0 = time.monotonic()
    send_get(slow, "/sleep?ms=3000")
    # Meanwhile the same worker answers others.
    for _ in range(5):
        assert http_get(port, "/")[0] == 200
    ready, _, _ = select.select([slow], [], [], 0)
    assert not ready or time.monotonic() - t0 >= 3, "answered before its time"
    st, _, body = Reader(slow).response()
    assert (st, body) == (200, "slept 3000 ms\n")
    assert time.monotonic() - t0 >= 3
    slow.close()


def test_slowloris_and_idle_connections_are_cut(supervisor):
    s, port, _ = web(supervisor, args=["--header-timeout", "500", "--idle-timeout", "700"])
    slow = connect(port)
    slow.sendall(b"GET / HTTP/1.1\r\n")
    deadline = time.monotonic() + 15
    closed = False
    # A byte every 100 ms never completes the head: cut after the header timeout.
    while time.monotonic() < deadline and not closed:
        try:
            slow.sendall(b"X")
            ready, _, _ = select.select([slow], [], [], 0.1)
            closed = bool(ready) and slow.recv(100) == b""
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        assert http_get(port, "/")[0] == 200  # nobody else is held up
    assert closed, "a slowloris client held its connection for 15 s"
    slow.close()
    # A keep-alive connection that goes quiet is closed after the idle timeout.
    idle = connect(port)
    send_get(idle)
    r = Reader(idle)
    assert r.response()[0] == 200
    idle.settimeout(15)
    assert r.at_eof()
    idle.close()


def test_max_connections_reached_new_ones_wait(supervisor):
    s, port, _ = web(supervisor, args=["--max-connections", "2"])
    a, b = connect(port), connect(port)
    ra, rb = Reader(a), Reader(b)
    for c, r in ((a, ra), (b, rb)):
        send_get(c)
        assert r.response()[0] == 200
    # The third is queued in the listening socket, not refused.
    third = connect(port)
    send_get(third)
    ready, _, _ = select.select([third], [], [], 0.5)
    assert not ready, "a third connection was served beyond --max-connections 2"
    a.close()
    st, _, body = Reader(third).response()
    assert (st, body) == (200, "hello from rollover\n")
    send_get(b)
    assert rb.response()[0] == 200
    b.close()
    third.close()


def test_hello_runs_as_sched_batch_unless_told_not_to(supervisor):
    """SCHED_BATCH by default (see sched_batch in reactor.h), the
    supervisor's own policy kept; --no-batch keeps the inherited one.
    Everyone inherits this test's policy: a policy other than SCHED_OTHER
    is kept by hello too."""
    inherited = os.sched_getscheduler(0)
    batch = os.SCHED_BATCH if inherited == os.SCHED_OTHER else inherited
    ports = free_port(), free_port()
    s = supervisor([group_conf(name="batch", command=HELLO,
                               listen=["127.0.0.1:%d" % ports[0]]),
                    group_conf(name="other", command=HELLO, args=["--no-batch"],
                               listen=["127.0.0.1:%d" % ports[1]])])
    s.wait_ready(2)
    for port, policy in zip(ports, (batch, inherited)):
        st, body = http_get(port, "/pid")
        assert st == 200
        assert os.sched_getscheduler(json.loads(body)["pid"]) == policy
    assert os.sched_getscheduler(s.pid) == inherited


# ---- graceful drain across a rollover --------------------------------------


def test_rollover_drains_inflight_and_keepalive(supervisor):
    """Across a rollover: the /sleep in flight is answered, a keep-alive
    connection's next request is answered with Connection: close, and an
    idle one is closed after the grace -- each with a clean end of file,
    never a reset."""
    s, port, (old,) = web(supervisor, args=["--grace", "3000"])
    busy, later, idle = connect(port), connect(port), connect(port)
    readers = {c: Reader(c) for c in (busy, later, idle)}
    for c in (later, idle):
        send_get(c)
        st, h, _ = readers[c].response()
        assert st == 200 and h["connection"] == "keep-alive"
    send_get(busy, "/sleep?ms=1500")
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 serving")
    wait_stopping(s, old)
    assert pid_alive(old)
    # The next request on a keep-alive connection: answered, then closed.
    send_get(later, "/pid")
    st, h, body = readers[later].response()
    assert st == 200 and h["connection"] == "close" and '"pid":%d' % old in body
    assert readers[later].at_eof()
    # The request in flight finishes.
    st, h, body = readers[busy].response()
    assert (st, body, h["connection"]) == (200, "slept 1500 ms\n", "close")
    assert readers[busy].at_eof()
    # The idle one is closed once the grace is over; a request the client
    # sends after our end of file is absorbed, not answered with a reset.
    assert readers[idle].at_eof()
    idle.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert idle.recv(100) == b""
    for c in (busy, later, idle):
        c.close()
    s.wait_log(r"worker %d \(slot 0, generation 1\) exited with status 0" % old)
    assert '"generation":2' in http_get(port, "/pid")[1]


def test_wrk_sees_no_error_across_rollovers(supervisor):
    """A client that keeps sending on keep-alive connections (wrk) loses
    nothing while the group rolls over a few times."""
    s, port, _ = web(supervisor, workers=2)
    with WrkLoad(port, conns=32) as wrk:
        for gen in range(2, 6):
            s.signal(signal.SIGHUP)
            s.wait_log(r"web: generation %d serving" % gen, timeout=15)
        time.sleep(0.5)  # some load on the last generation
    wrk.assert_clean(500)


def test_echo_drains_on_stop(supervisor):
    """rollover-echo: echoes; on the stop signal it goes on echoing for the
    grace, then sends its end of file and absorbs what still comes."""
    s, port, (old,) = web(supervisor, command=ECHO, args=["--grace", "3000"])
    c = connect(port)
    c.sendall(b"ping\n")
    assert recv_exactly(c, 5) == b"ping\n"
    rnd = random.Random(1)
    for _ in range(20):
        chunk = bytes(rnd.getrandbits(8) for _ in range(16384))
        c.sendall(chunk)
        assert recv_exactly(c, len(chunk)) == chunk
    s.signal(signal.SIGHUP)
    s.wait_log(r"web: generation 2 serving")
    wait_stopping(s, old)
    c.sendall(b"still here\n")
    assert recv_exactly(c, 11) == b"still here\n"
    c.settimeout(15)
    assert c.recv(100) == b""  # the end of the grace
    c.sendall(b"too late\n")
    assert c.recv(100) == b""  # absorbed: no reset, no echo
    c.close()
    s.wait_log(r"worker %d \(slot 0, generation 1\) exited with status 0" % old)
    c = connect(port)
    c.sendall(b"new\n")
    assert recv_exactly(c, 4) == b"new\n"
    c.close()


def recv_exactly(c, n):
    out = b""
    while len(out) < n:
        b = c.recv(n - len(out))
        assert b, "end of file after %d of %d bytes" % (len(out), n)
        out += b
    return out


# ---- random input ----------------------------------------------------------


def test_random_bytes_do_not_crash_hello(supervisor):
    """A few seconds of random bytes and mangled requests, on many
    connections: every answer is a well-formed response or nothing, and
    the worker survives (and under ASan reports nothing)."""
    s, port, (pid,) = web(supervisor, args=["--header-timeout", "300"])
    rnd = random.Random(4)
    valid = (b"GET /sleep?ms=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
             b"Connection: keep-alive\r\n\r\nabc")
    deadline = time.monotonic() + 4
    sent = 0
    while time.monotonic() < deadline:
        if rnd.random() < 0.5:
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 3000)))
        else:
            data = bytearray(valid * rnd.randrange(1, 4))
            for _ in range(rnd.randrange(0, 4)):
                data[rnd.randrange(len(data))] = rnd.getrandbits(8)
            data = bytes(data[:rnd.randrange(1, len(data) + 1)])
        c = connect(port, timeout=2)
        try:
            for i in range(0, len(data), 97):
                c.sendall(data[i:i + 97])
            sent += len(data)
            c.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                out += b
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            out = None
        finally:
            c.close()
        if out:
            assert re.match(rb"HTTP/1\.1 \d{3} ", out), out[:100]
    assert sent > 0
    assert pid_alive(pid)
    st, body = http_get(port, "/pid")
    assert st == 200 and '"pid":%d' % pid in body
