"""The supervisor core: listeners, the worker protocol, restarts, stops."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from conftest import (HELLO, ROLLOVER, TESTWORKER, children, free_port, recv_all,
                      group_conf, http_get, pid_alive, wait_for, wait_gone, write_conf)


def unix_http_get(path, url="/"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url).encode())
    data = recv_all(s)
    s.close()
    return data.decode()


def test_serves_ipv4_ipv6_and_unix(supervisor, tmp_path):
    p4, p6 = free_port(), free_port(socket.AF_INET6, "::1")
    sock = str(tmp_path / "hello.sock")
    s = supervisor([group_conf(name="web", command=HELLO, workers=2,
                               listen=["127.0.0.1:%d" % p4, "[::1]:%d" % p6,
                                       "unix:" + sock])])
    pids = s.wait_ready(2)
    assert http_get(p4, "/")[0] == 200
    assert http_get(p6, "/", host="::1")[0] == 200
    assert " 200 " in unix_http_get(sock).split("\r\n")[0] + " "
    st, body = http_get(p4, "/pid")
    info = json.loads(body)
    assert info["pid"] in pids and info["generation"] == 1 and info["slot"] in (0, 1)
    assert re.search(r"listening on 127\.0\.0\.1:%d" % p4, s.log())
    assert re.search(r"listening on \[::1\]:%d" % p6, s.log())


def test_worker_sees_protocol_environment(supervisor, tmp_path):
    p1, p2 = free_port(), free_port()
    dump = str(tmp_path / "w%p.json")
    s = supervisor([group_conf(
        name="probe", command=TESTWORKER, workers=1,
        args=["--dump", dump], env={"APP_ENV": "test"},
        directory=str(tmp_path), listen=["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2])])
    (pid,) = s.wait_ready(1)
    info = json.load(open(str(tmp_path / ("w%d.json" % pid))))
    env = info["env"]
    assert env["LISTEN_FDS"] == "2"
    assert env["LISTEN_PID"] == str(pid)
    assert env["LISTEN_FDNAMES"] == "probe:probe"
    assert env["NOTIFY_SOCKET"].startswith("@")
    assert env["ROLLOVER_GROUP"] == "probe"
    assert env["ROLLOVER_SLOT"] == "0"
    assert env["ROLLOVER_GENERATION"] == "1"
    assert env["APP_ENV"] == "test"
    assert info["argv"][1:] == ["--dump", dump]
    assert info["cwd"] == str(tmp_path)
    assert info["fds"]["3"].startswith("socket:") and info["fds"]["4"].startswith("socket:")
    # The worker leads its own session and process group.
    assert info["sid"] == pid and info["pgid"] == pid


def test_worker_signal_state_is_clean(supervisor, tmp_path):
    """No blocked or ignored signal of the supervisor survives exec."""
    out = tmp_path / "sigs"
    s = supervisor([group_conf(name="sh", command="/bin/sh", ready=0, args=[
        "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status > %s.tmp && mv %s.tmp %s; "
        "exec sleep 60" % (out, out, out)])])
    s.wait_ready(1)
    wait_for(out.exists, 10, "the signal dump")
    sigs = dict(line.split(":") for line in out.read_text().splitlines())
    assert int(sigs["SigBlk"], 16) == 0
    assert int(sigs["SigIgn"], 16) == 0


def test_no_fd_leaks_into_workers(tmp_path):
    """Neither the supervisor's fds nor one it inherited reach a worker."""
    port = free_port()
    dump = str(tmp_path / "w%p.json")
    conf = write_conf(str(tmp_path / "r.conf"), [group_conf(
        name="probe", command=TESTWORKER, args=["--dump", dump],
        listen=["127.0.0.1:%d" % port])])
    inherited = open(str(tmp_path / "inherited"), "w")
    log = open(str(tmp_path / "log"), "wb")
    p = subprocess.Popen([ROLLOVER, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                         pass_fds=[inherited.fileno()])
    try:
        wait_for(lambda: children(p.pid), 10, "a worker")
        pid = children(p.pid)[0]
        path = str(tmp_path / ("w%d.json" % pid))
        wait_for(lambda: os.path.exists(path), 10, "the dump")
        fds = json.load(open(path))["fds"]
        own = {fd for fd, target in fds.items() if target.startswith("/proc/")}
        assert sorted(set(fds) - own, key=int) == ["0", "1", "2", "3"], fds
        assert fds["0"] == "/dev/null"
        # Also list the live worker from outside.
        live = os.listdir("/proc/%d/fd" % pid)
        targets = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in live]
        assert not any("inherited" in t for t in targets)
        assert not any(t.startswith("anon_inode:") for t in targets), targets
    finally:
        p.kill()
        p.wait()
        for c in children(p.pid):
            os.kill(c, signal.SIGKILL)


def test_ready_by_notify_and_timeout(supervisor):
    s = supervisor([group_conf(name="late", command=TESTWORKER, args=["--no-ready"],
                               ready="notify", ready_timeout=0.5, stop_timeout=1)])
    s.wait_log(r"late: worker \d+ \(slot 0, generation 1\) not ready after 500 ms; stopping it")
    s.wait_log(r"late: worker \d+ .* exited with status 0 .*restarting in 100 ms")
    assert ") ready after" not in s.log()


def test_ready_by_seconds(supervisor):
    s = supervisor([group_conf(name="secs", command=TESTWORKER, args=["--no-ready"],
                               ready=1)])
    s.wait_log(r"secs: worker \d+ .* started")
    t0 = time.monotonic()
    s.wait_log(r"secs: worker \d+ .* ready after (\d+) ms")
    ms = int(re.search(r"ready after (\d+) ms", s.log()).group(1))
    assert 1000 <= ms < 3000
    assert time.monotonic() - t0 < 3


def test_ready_zero_seconds_rolls_over(supervisor):
    """ready = 0: a worker is ready as soon as it runs, and the generation
    takes over once all its slots hold one.  (A worker's readiness used to
    be counted before its slot held it, so the generation never served.)"""
    port = free_port()
    s = supervisor([group_conf(name="now", command=HELLO, workers=2, ready=0,
                               listen=["127.0.0.1:%d" % port])])
    s.wait_log(r"now: generation 1 ready after")
    old = set(s.ready_pids())
    s.signal(signal.SIGHUP)
    s.wait_log(r"now: generation 2 serving after \d+ ms \(trigger: signal\); "
               r"stopping 2 workers of generation 1")
    wait_gone(old)
    st, body = http_get(port, "/pid")
    assert st == 200 and json.loads(body)["generation"] == 2


def test_killed_worker_is_restarted_while_others_serve(supervisor):
    port = free_port()
    s = supervisor([group_conf(name="web", command=HELLO, workers=2,
                               listen=["127.0.0.1:%d" % port])])
    pids = s.wait_ready(2)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    # The other worker answers every request meanwhile.
    for _ in range(20):
        assert http_get(port, "/")[0] == 200
    s.wait_log(r"worker %d \(slot \d, generation 1\) killed by signal 9 \(KILL\) "
               r"after \d+ ms; restarting in 100 ms" % victim)
    s.wait_ready(3)
    new = set(s.ready_pids()) - set(pids)
    assert len(new) == 1 and victim not in s.wait_workers(2)
    assert http_get(port, "/")[0] == 200


def test_crash_loop_backs_off(supervisor):
    s = supervisor([group_conf(name="crash", command=TESTWORKER, args=["--exit", "3"])])
    t0 = time.monotonic()
    s.wait_log(r"exited with status 3")
    time.sleep(max(0, 3.0 - (time.monotonic() - t0)))
    log = s.log()
    starts = len(re.findall(r"crash: worker \d+ .* started", log))
    delays = [int(d) for d in re.findall(r"restarting in (\d+) ms", log)]
    # 0, 0.1, 0.3, 0.7, 1.5 s (then 3.1 s): five starts in three seconds.
    assert 3 <= starts <= 6, log
    assert delays[:4] == [100, 200, 400, 800], delays
    with open("/proc/%d/stat" % s.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert cpu < 0.5, "supervisor used %.2fs of CPU" % cpu


def test_graceful_stop_waits_for_slow_worker(supervisor):
    s = supervisor([group_conf(name="slow", command=TESTWORKER,
                               args=["--stop-delay", "1.0"], stop_timeout=10)])
    (pid,) = s.wait_ready(1)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(10) == 0
    assert time.monotonic() - t0 >= 0.9
    assert not pid_alive(pid)
    assert re.search(r"worker %d .* exited with status 0" % pid, s.log())
    assert "killing" not in s.log()


def test_graceful_stop_kills_worker_ignoring_term(supervisor):
    s = supervisor([group_conf(name="stubborn", command=TESTWORKER,
                               args=["--ignore-term"], stop_timeout=1)])
    (pid,) = s.wait_ready(1)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(10) == 0
    assert 0.9 <= time.monotonic() - t0 < 5
    assert not pid_alive(pid)
    assert re.search(r"worker %d .* did not stop within 1000 ms; killing it" % pid, s.log())
    assert re.search(r"worker %d .* killed by signal 9" % pid, s.log())


def test_quit_stops_immediately(supervisor):
    s = supervisor([group_conf(name="q", command=TESTWORKER, workers=2,
                               args=["--ignore-term"], stop_timeout=30)])
    pids = s.wait_ready(2)
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(5) == 0
    for p in pids:
        assert not pid_alive(p)


def test_no_worker_survives_supervisor_sigkill(supervisor):
    port = free_port()
    s = supervisor([group_conf(name="web", command=HELLO, workers=3,
                               listen=["127.0.0.1:%d" % port])])
    pids = s.wait_ready(3)
    s.signal(signal.SIGKILL)
    s.wait_exit(5)
    wait_gone(pids, 5)


def test_second_instance_refused_by_pid_file(supervisor, tmp_path):
    port = free_port()
    pidfile = str(tmp_path / "rollover.pid")
    g = [group_conf(name="web", command=HELLO, listen=["127.0.0.1:%d" % port])]
    s = supervisor(g, pid_file=pidfile)
    s.wait_ready(1)
    assert open(pidfile).read() == "%d\n" % s.pid
    r = subprocess.run([ROLLOVER, "-c", s.conf], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.decode().strip() == \
        "rollover: %s: another instance is running as pid %d" % (pidfile, s.pid)
    assert http_get(port, "/")[0] == 200
    s.signal(signal.SIGTERM)
    assert s.wait_exit(10) == 0
    assert not os.path.exists(pidfile)


def test_second_instance_refused_by_control_socket(supervisor, tmp_path):
    port = free_port()
    g = [group_conf(name="web", command=HELLO, listen=["127.0.0.1:%d" % port])]
    s = supervisor(g)
    s.wait_ready(1)
    r = subprocess.run([ROLLOVER, "-c", s.conf], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "rollover: %s: another instance is running" % (
        tmp_path / "control.sock")
    assert http_get(port, "/")[0] == 200


def test_second_instance_refused_by_port(supervisor, tmp_path):
    """Another config (its own control socket) on the same address."""
    port = free_port()
    g = [group_conf(name="web", command=HELLO, listen=["127.0.0.1:%d" % port])]
    s = supervisor(g)
    s.wait_ready(1)
    other = tmp_path / "other"
    other.mkdir()
    conf2 = write_conf(str(other / "r.conf"), g)
    r = subprocess.run([ROLLOVER, "-c", conf2], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert "127.0.0.1:%d: Address already in use" % port in r.stderr.decode()
    assert http_get(port, "/")[0] == 200
    assert not (other / "control.sock").exists()


def test_bind_error_names_address(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    conf = write_conf(str(tmp_path / "r.conf"), [group_conf(
        name="web", command=HELLO, listen=["127.0.0.1:%d" % port])])
    r = subprocess.run([ROLLOVER, "-c", conf], capture_output=True, timeout=10)
    busy.close()
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert lines[-1].endswith("error: 127.0.0.1:%d: Address already in use" % port)


def test_exec_failure_is_reported_and_retried(supervisor, tmp_path):
    script = tmp_path / "broken"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    s = supervisor([group_conf(name="broken", command=str(script))])
    s.wait_log(r"broken: slot 0, generation 1: cannot start %s: exec: "
               r"No such file or directory" % re.escape(str(script)), 2)
    s.wait_log(r"retrying in 200 ms")
    assert s.proc.poll() is None


def test_bad_config_exits_78_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('groups = (\n  {\n    name = "web";\n    command = "/bin/true";\n'
                    '    workerz = 2;\n  }\n);\n')
    r = subprocess.run([ROLLOVER, "-t", "-c", str(conf)], capture_output=True, timeout=10)
    assert r.returncode == 78
    assert r.stderr.decode().startswith("%s:5: " % conf)
    assert "workerz" in r.stderr.decode()
    r = subprocess.run([ROLLOVER, "-c", str(conf)], capture_output=True, timeout=10)
    assert r.returncode == 78


def test_good_config_checks_ok(tmp_path):
    conf = write_conf(str(tmp_path / "ok.conf"), [group_conf(name="web", command=HELLO)])
    r = subprocess.run([ROLLOVER, "-t", "-c", conf], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_usage_errors_exit_2():
    assert subprocess.run([ROLLOVER, "-x"], capture_output=True).returncode == 2
    assert subprocess.run([ROLLOVER, "extra"], capture_output=True).returncode == 2
    r = subprocess.run([ROLLOVER, "-V"], capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"rollover ")
