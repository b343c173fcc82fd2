"""`make install` and the systemd units it installs.

The units are checked as installed, by systemd's own parser: `make install`
into a scratch DESTDIR that also holds a copy of the host's system units
(sysinit.target and the rest), then `systemd-analyze verify --root` on it,
which loads rollover.service and rollover.socket from the unit path, checks
that the programs they run exist in that root, and, with MANPATH pointing
into it, that the manual pages they name are installed.
"""
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import ROLLOVER, ROOT

UNITDIR = "usr/local/lib/systemd/system"
CONF = "etc/rollover/rollover.conf"

# Everything `make install DESTDIR=D PREFIX=/usr/local` puts in D, with its mode.
PROGRAMS = ["usr/local/sbin/rollover", "usr/local/bin/rolloverctl",
            "usr/local/lib/rollover/rollover-hello",
            "usr/local/lib/rollover/rollover-echo"]
DATA = [UNITDIR + "/rollover.service", UNITDIR + "/rollover.socket", CONF]


def man_pages():
    """Every page in man/, where it is installed: NAME.N in share/man/manN."""
    out = []
    for name in sorted(os.listdir(os.path.join(ROOT, "man"))):
        m = re.fullmatch(r"[\w.-]+\.([1-8])", name)
        if m:
            out.append("usr/local/share/man/man%s/%s" % (m.group(1), name))
    return out


def make(*args):
    """make -C ROOT ARGS..., free of any make that runs this test."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR",
                        "PREFIX", "SYSCONFDIR")}
    r = subprocess.run(["make", "-s", "-C", ROOT] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    assert r.returncode == 0, "make %s failed:\n%s" % (
        " ".join(args), r.stdout.decode(errors="replace"))


def install(destdir, *args):
    make("install", "DESTDIR=%s" % destdir, "PREFIX=/usr/local",
         "SYSCONFDIR=/etc", *args)


def files_under(top):
    """Every non-directory under top, relative to it."""
    out = set()
    for d, _, names in os.walk(top):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), top))
    return out


def read(path):
    with open(path) as f:
        return f.read()


def unit_value(text, key):
    """The last value of `key=` in a unit file's text."""
    values = re.findall(r"^%s=(.*)$" % re.escape(key), text, re.M)
    assert values, "no %s= in the unit" % key
    return values[-1].strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    install(d)
    return d


def test_install_puts_every_file_in_place(installed):
    expected = set(PROGRAMS + DATA + man_pages())
    got = files_under(installed)
    assert got == expected, "missing: %s; unexpected: %s" % (
        sorted(expected - got), sorted(got - expected))
    for f in sorted(expected):
        mode = stat.S_IMODE(os.stat(os.path.join(installed, f)).st_mode)
        want = 0o755 if f in PROGRAMS else 0o644
        assert mode == want, "%s: mode %o, not %o" % (f, mode, want)


def test_installed_units_and_config_are_the_shipped_ones(installed):
    for shipped, dest in (("rollover.service", UNITDIR + "/rollover.service"),
                          ("rollover.socket", UNITDIR + "/rollover.socket"),
                          ("rollover.production.conf", CONF)):
        assert read(os.path.join(installed, dest)) == \
            read(os.path.join(ROOT, "etc", shipped)), dest


def test_install_rewrites_paths_for_prefix_and_sysconfdir(tmp_path):
    d = str(tmp_path)
    make("install", "DESTDIR=%s" % d, "PREFIX=/opt/ro", "SYSCONFDIR=/opt/ro/etc")
    unit = read(os.path.join(d, "opt/ro/lib/systemd/system/rollover.service"))
    assert unit_value(unit, "ExecStart") == \
        "/opt/ro/sbin/rollover -c /opt/ro/etc/rollover/rollover.conf"
    assert unit_value(unit, "ExecReload") == \
        "/opt/ro/bin/rolloverctl -c /opt/ro/etc/rollover/rollover.conf reload"
    conf = read(os.path.join(d, "opt/ro/etc/rollover/rollover.conf"))
    assert '"/opt/ro/lib/rollover/rollover-hello"' in conf
    assert "/usr/local/" not in unit + conf


def test_install_keeps_an_edited_config_and_uninstall_removes_the_rest(tmp_path):
    d = str(tmp_path)
    install(d)
    conf = os.path.join(d, CONF)
    with open(conf, "a") as f:
        f.write("# edited\n")
    install(d)
    assert read(conf).endswith("# edited\n"), "make install replaced the config"
    make("uninstall", "DESTDIR=%s" % d, "PREFIX=/usr/local", "SYSCONFDIR=/etc")
    assert files_under(d) == {CONF}, "left or removed the wrong files"
    os.unlink(conf)
    install(d)
    make("uninstall", "DESTDIR=%s" % d, "PREFIX=/usr/local", "SYSCONFDIR=/etc")
    assert files_under(d) == set()


def test_units_agree_with_the_installed_config(installed):
    unit = read(os.path.join(installed, UNITDIR, "rollover.service"))
    socket_unit = read(os.path.join(installed, UNITDIR, "rollover.socket"))
    conf = read(os.path.join(installed, CONF))
    args = unit_value(unit, "ExecStart").split()
    assert args[1:] == ["-c", "/" + CONF]
    assert unit_value(unit, "ExecReload").split()[1:3] == ["-c", "/" + CONF]
    # systemd's stop timeout must leave rollover the time to stop its
    # workers itself: every stop_timeout, and the default of 30 s.
    stop = re.fullmatch(r"(\d+)s?", unit_value(unit, "TimeoutStopSec"))
    assert stop, "TimeoutStopSec= is not in plain seconds"
    timeouts = [float(t) for t in re.findall(r"stop_timeout\s*=\s*([\d.]+)", conf)]
    assert int(stop.group(1)) > max(timeouts + [30.0])
    listen = re.findall(r'"([^"]+)"', " ".join(re.findall(r"listen\s*=\s*\[([^]]*)\]", conf)))
    for addr in re.findall(r"^ListenStream=(.*)$", socket_unit, re.M):
        assert addr in listen, "rollover.socket listens on %s, not in %s" % (addr, CONF)


def test_installed_config_passes_rollover_t(installed, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the installed config sets `user`, which needs root")
    # Its absolute paths name the installed files: point them into DESTDIR.
    text = read(os.path.join(installed, CONF)).replace(
        '"/usr/local/', '"%s/usr/local/' % installed)
    conf = tmp_path / "rollover.conf"
    conf.write_text(text)
    r = subprocess.run([ROLLOVER, "-t", "-c", str(conf)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, r.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def systemd_root(installed, tmp_path_factory):
    """A DESTDIR install plus the host's own system units."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd): "
                    "the units are not verified")
    host = next((p for p in ("/usr/lib/systemd/system", "/lib/systemd/system")
                 if os.path.isfile(os.path.join(p, "sysinit.target"))), None)
    assert host, "systemd-analyze is here but systemd's units are not"
    root = str(tmp_path_factory.mktemp("root"))
    shutil.copytree(installed, root, symlinks=True, dirs_exist_ok=True)
    shutil.copytree(host, os.path.join(root, "usr/lib/systemd/system"),
                    symlinks=True)
    return root


def analyze(root, *args):
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/local/share/man"),
               SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    r = subprocess.run(["systemd-analyze"] + list(args) + ["--root=" + root],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode(errors="replace")


def test_systemd_analyze_verify_is_silent(systemd_root):
    # verify exits 0 even after "Unknown key" or a bad value, so any
    # output at all fails.
    rc, out = analyze(systemd_root, "verify", "rollover.service",
                      "rollover.socket")
    assert rc == 0 and out == "", "systemd-analyze verify:\n" + out


def test_systemd_analyze_verify_catches_a_broken_unit(systemd_root, tmp_path):
    # The same check on a unit with a typo and a missing program fails:
    # the check above is not silent because it looks at nothing.
    root = str(tmp_path / "root")
    shutil.copytree(systemd_root, root, symlinks=True)
    path = os.path.join(root, UNITDIR, "rollover.service")
    text = read(path).replace("\nKillMode=", "\nKilMode=").replace(
        "/sbin/rollover ", "/sbin/rollover-missing ")
    with open(path, "w") as f:
        f.write(text)
    rc, out = analyze(root, "verify", "rollover.service")
    assert "Unknown key 'KilMode'" in out, out
    assert "rollover-missing is not executable" in out, out


def test_service_hardening_stays(systemd_root):
    # systemd's exposure score, 0 (locked down) to 10 (none at all; an
    # unhardened root service scores 9.6); rollover.service scores 5.2.
    rc, out = analyze(systemd_root, "security", "--offline=true",
                      "--threshold=55", "--no-pager", "rollover.service")
    assert rc == 0, "exposure above 5.5:\n" + out
