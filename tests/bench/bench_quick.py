#!/usr/bin/python3
"""Quick mode: time from `cc` finishing (the binary replaced on disk) to
the first response from the new code, over 20 edits of a small C server.

Prints numbers only; it exits non-zero only if something is broken.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
from test_quick import SERVER  # noqa: E402  the same server as the test

BUILD = os.environ.get("ROLLOVER_BUILD", os.path.join(ROOT, "build"))
ROLLOVER = os.path.join(BUILD, "rollover")
EDITS = 20


def get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
    return data.decode().partition("\r\n\r\n")[2]


def main():
    d = tempfile.mkdtemp(prefix="rollover-bench-quick-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def build(version):
        src = os.path.join(d, "server.c")
        with open(src, "w") as f:
            f.write('#define VERSION "%s"\n#define EXIT_AT_START 0\n' % version + SERVER)
        subprocess.run(["cc", "-O0", "-o", os.path.join(d, "myserver"), src],
                       check=True, timeout=60)

    build("v00")
    log = open(os.path.join(d, "quick.out"), "wb")
    p = subprocess.Popen([ROLLOVER, "-w", "-l", "127.0.0.1:%d" % port, "--", "./myserver"],
                         cwd=d, stdout=log, stderr=subprocess.STDOUT)
    times = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if get(port) == "v00\n":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("quick mode did not start")
            time.sleep(0.01)
        for i in range(1, EDITS + 1):
            want = "v%02d\n" % i
            build(want.strip())  # returns when cc (and its linker) is done
            t0 = time.monotonic()
            while True:
                try:
                    if get(port) == want:
                        break
                except OSError:
                    pass
                if time.monotonic() - t0 > 10:
                    sys.exit("edit %d never answered" % i)
                time.sleep(0.0005)
            times.append((time.monotonic() - t0) * 1000)
    finally:
        p.terminate()
        p.wait(10)
        log.close()
    # The linker's last step (the chmod that makes the file executable)
    # comes before cc has exited, so the rollover is often done by then.
    print("quick mode: cc finished -> first response from the new code, %d edits" % EDITS)
    print("  median %.1f ms, min %.1f ms, max %.1f ms" %
          (statistics.median(times), min(times), max(times)))
    print("SUMMARY quick mode edit-to-response median %.1f ms max %.1f ms (n=%d)" %
          (statistics.median(times), max(times), EDITS))


if __name__ == "__main__":
    main()
