"""``start`` with runtime options on stdin: the daemon joins ``shim_cgroup`` (real processes).

Run as containerd runs it: cwd = a bundle, the options Any on stdin, a private socket
directory (EPOLLSHIM_CONFIG). The daemon is found through the cgroup it joined and ended
by pid.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import epollshim.lean
from epollshim.v2.messages_more import CreateOptions
from epollshim.v2.pb import pack_any

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make cgroups")
CGROUP_ROOT = "/sys/fs/cgroup"


def hierarchy() -> str:
    """One writable hierarchy: the unified one (cgroup v2) or v1's pids controller."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return CGROUP_ROOT
    return os.path.join(CGROUP_ROOT, "pids")


@pytest.fixture
def cgroup() -> Iterator[str]:
    name = "epollshim-test-" + os.urandom(4).hex()
    path = os.path.join(hierarchy(), name)
    os.mkdir(path)
    yield "/" + name
    for pid in _procs(path):  # a daemon the test did not end
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _procs(path) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: the kernel empties cgroup.procs as they die
    os.rmdir(path)


def _procs(path: str) -> list[int]:
    with open(os.path.join(path, "cgroup.procs")) as f:
        return [int(line) for line in f.read().split()]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short directory: socket paths must stay under 107 bytes (pytest's are long)."""
    path = Path(tempfile.mkdtemp(prefix="es-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(tmp_path: Path, options: bytes) -> subprocess.CompletedProcess[bytes]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    conf = tmp_path / "epollshim.yaml"
    conf.write_text(f"v2:\n  socket_dir: {tmp_path / 's'}\n")
    env = dict(os.environ, EPOLLSHIM_CONFIG=str(conf))
    boot = (
        f"import sys; sys.path.insert(0, {epollshim.lean.PACKAGE_PARENT!r}); "
        "from epollshim.v2.main import main; sys.exit(main())"
    )
    argv = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        boot,
        "-namespace",
        "ns",
        "-address",
        str(tmp_path / "c.sock"),
        "-id",
        "c1",
        "start",
    ]
    return subprocess.run(argv, cwd=bundle, env=env, input=options, capture_output=True, timeout=60)


def test_daemon_joins_the_shim_cgroup(tmp_path: Path, cgroup: str) -> None:
    options = pack_any(CreateOptions(shim_cgroup=cgroup)).encode()
    r = start(tmp_path, options)
    assert r.returncode == 0, r.stderr
    address = r.stdout.decode()
    assert address.startswith(f"unix://{tmp_path / 's'}/")
    [daemon] = _procs(os.path.join(hierarchy(), cgroup.lstrip("/")))
    # forked from start (no second interpreter), start's command line without "start"
    cmdline = [a for a in Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0") if a]
    assert b"epollshim.v2.main" in b" ".join(cmdline)
    assert cmdline[-2:] == [b"-id", b"c1"]
    assert any(
        arg.endswith(cgroup.encode()) for arg in Path(f"/proc/{daemon}/cgroup").read_bytes().split()
    )
    os.kill(daemon, signal.SIGTERM)  # no container: SIGTERM shuts it down


def test_missing_shim_cgroup_fails_start_and_leaves_nothing(tmp_path: Path) -> None:
    options = pack_any(CreateOptions(shim_cgroup="/epollshim-no-such-cgroup")).encode()
    r = start(tmp_path, options)
    assert r.returncode == 1
    assert b"shim cgroup /epollshim-no-such-cgroup: not found" in r.stderr
    assert r.stdout == b""
    assert not list((tmp_path / "s").iterdir()), "the socket was left behind"


def test_malformed_options_fail_start_with_one_line(tmp_path: Path) -> None:
    r = start(tmp_path, b"\x0a\xff")
    assert r.returncode == 1
    assert r.stderr.count(b"\n") == 1 and b"runtime options on stdin" in r.stderr


def test_no_options_is_the_common_case(tmp_path: Path) -> None:
    r = start(tmp_path, b"")
    assert r.returncode == 0, r.stderr
    sock = r.stdout.decode().removeprefix("unix://")
    import socket

    with socket.socket(socket.AF_UNIX) as s:  # the daemon accepts: ask it to stop
        s.connect(sock)
    ours = str(tmp_path / "c.sock").encode()  # the -address start was given: the daemon's too
    pids = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and ours in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGTERM)
