"""1,000 rollovers in a row: the supervisor's fds and memory do not grow.

Rollovers are asked for over the control socket (`reload web`), which
answers once each has ended, so the loop runs as fast as the machine.
Under `make check-asan` the same run also has LeakSanitizer check the
daemon at exit.
"""
import os
import signal
import time

from conftest import HELLO, control, free_port, group_conf, http_get

ROLLOVERS = 1000


def fd_count(pid):
    """The fewest fds of three looks: a sanitizer's runtime opens some
    briefly (to read /proc/self/maps, say) that are not ours."""
    counts = []
    for _ in range(3):
        counts.append(len(os.listdir("/proc/%d/fd" % pid)))
        time.sleep(0.05)
    return min(counts)


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_thousand_rollovers_leak_nothing(supervisor, tmp_path):
    port = free_port()
    s = supervisor([group_conf(name="web", command=HELLO, workers=1,
                               listen=["127.0.0.1:%d" % port])])
    s.wait_ready(1)
    ctl = str(tmp_path / "control.sock")
    deadline = time.monotonic() + 240

    def roll(n):
        for _ in range(n):
            assert time.monotonic() < deadline, "rollovers too slow"
            lines = control(ctl, "reload web", timeout=30)
            assert lines[-1] == "ok", lines

    roll(50)  # warm up: allocator pools, the first timers
    fds, rss = fd_count(s.pid), rss_kb(s.pid)
    roll(ROLLOVERS - 50)
    # Old workers may still be draining: wait until only one is left.
    deadline2 = time.monotonic() + 10
    while len(s.workers()) != 1 and time.monotonic() < deadline2:
        time.sleep(0.05)
    assert len(s.workers()) == 1
    assert http_get(port, "/pid")[0] == 200
    assert fd_count(s.pid) <= fds, os.listdir("/proc/%d/fd" % s.pid)
    grown = rss_kb(s.pid) - rss
    print("after %d rollovers: %d fds, RSS %+d KiB" % (ROLLOVERS, fds, grown))
    # AddressSanitizer holds freed memory in quarantine, so RSS grows by
    # design there; LeakSanitizer checks for leaks at exit instead.
    if "libasan" not in open("/proc/%d/maps" % s.pid).read():
        assert grown < 256, "RSS grew by %d KiB" % grown
    s.signal(signal.SIGTERM)
    assert s.wait_exit(20) == 0
