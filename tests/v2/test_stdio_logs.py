"""``file://`` and ``binary://`` stdio without containerd: the URI parser, ``spawn_quick``'s
extra fds, the ``Logger`` and ``ProcIO``'s relays, with real fds, children and a real Loop.

A "container" here is this test writing into the ends ``ProcIO.open`` returns; children are
reaped by ``reap_into`` on the same ExitRouter the shim uses. Every wait is bounded.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from epollshim.core.exits import ExitRouter
from epollshim.log import Log
from epollshim.shell.loop import Loop
from epollshim.shell.process import reap_into
from epollshim.v2 import stdio_uri
from epollshim.v2.logger import Logger
from epollshim.v2.stdio import BINARY, FIFO, FILE, FILE_CHUNK, Output, ProcIO
from epollshim.v2.stdio_uri import StdioError

BOUND = 20.0  # seconds: generous on a shared machine; never a timing assertion

# -- the URI --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("", Output(FIFO, "")),
        ("/run/containerd/fifo/1/c-stdout", Output(FIFO, "/run/containerd/fifo/1/c-stdout")),
        ("rel/p?x%zz", Output(FIFO, "rel/p?x%zz")),  # a plain path is used as given
        ("fifo:///run/x", Output(FIFO, "/run/x")),
        ("file:///var/log/a.log", Output(FILE, "/var/log/a.log")),
        ("FILE:///a%20b?ignored=1#frag", Output(FILE, "/a b")),
        ("file://localhost/x", Output(FILE, "/x")),
        ("binary:///bin/lg", Output(BINARY, "/bin/lg")),
        (
            "binary:///bin/lg?b=2&a=1&flag&a=3&sp=x+y%21",
            Output(BINARY, "/bin/lg", ("b", "2", "a", "1", "flag", "", "sp", "x y!")),
        ),
    ],
)
def test_uri_targets(uri: str, want: Output) -> None:
    assert stdio_uri.parse(uri) == want


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://host/x", "unknown STDIO scheme 'http'"),
        ("tcp://1.2.3.4:5", "unknown STDIO scheme 'tcp'"),
        ("garbage:", "unknown STDIO scheme 'garbage'"),
        (":x", "missing protocol scheme"),
        ("a b:c", "first path segment cannot contain a colon"),
        ("file://var/log/x", "host 'var' is not supported"),
        ("file:relative", "must be absolute"),
        ("binary://", "must be absolute"),
        ("file:///a%zz", "bad escape '%zz'"),
        ("file:///a%2", "bad escape '%2'"),
        ("file:///a%00b", "NUL byte"),
        ("binary:///x?a=1;b=2", "';' is not a query separator"),
    ],
)
def test_uri_errors_name_the_uri(uri: str, message: str) -> None:
    with pytest.raises(StdioError, match=message) as e:
        stdio_uri.parse(uri)
    assert repr(uri) in str(e.value)


# -- spawn_quick's extra fds ---------------------------------------------------------------


def test_spawn_quick_maps_extra_fds_that_sit_on_each_others_targets(tmp_path: Path) -> None:
    """Sources on 4, 3 and 5 for targets 3, 4 and 5: a naive dup2 sequence would clobber."""
    for i in range(3):
        (tmp_path / f"m{i}").write_text(f"mark{i}")
    child = f"""
import os
from epollshim.shell.process import spawn_quick
d = {str(tmp_path)!r}
for fd, name in ((4, "m0"), (3, "m1"), (5, "m2")):
    src = os.open(os.path.join(d, name), os.O_RDONLY)
    if src != fd:
        os.dup2(src, fd, inheritable=False)
        os.close(src)
out = os.open(os.path.join(d, "out"), os.O_WRONLY | os.O_CREAT, 0o600)
null = os.open(os.devnull, os.O_RDONLY)
script = "cat <&3; cat <&4; cat <&5"
pid = spawn_quick(["/bin/sh", "-c", script], stdio=(null, out, out), env={{}}, fds=(4, 3, 5))
assert os.waitpid(pid, 0)[1] == 0
"""
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=BOUND)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_text() == "mark0mark1mark2"


# -- a loop with a reaper --------------------------------------------------------------------


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = Loop()
        self.router = ExitRouter()
        self.log = Log()
        self.log_path = tmp / "shim.log"
        self.log.open_file(str(self.log_path), "text", "debug")

    def run_until(self, what: str, done: Callable[[], object]) -> None:
        end = time.monotonic() + BOUND
        while not done():
            if time.monotonic() > end:
                pytest.fail(f"not within {BOUND} s: {what}")
            self.loop.call_later(0.01, self.loop.stop)
            self.loop.run()
            reap_into(self.router)

    def script(self, name: str, body: str) -> str:
        path = self.tmp / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return str(path)

    def logger(self, path: str, *args: str) -> Logger:
        return Logger(self.loop, self.router, self.log, path, args)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.loop.close()


def feed(rig: Rig, fd: int, data: bytes) -> None:
    """Write ``data`` to the container end ``fd``, running the loop while the pipe is full."""
    os.set_blocking(fd, False)
    view = memoryview(data)

    def written() -> bool:
        nonlocal view
        try:
            while view:
                view = view[os.write(fd, view) :]
        except BlockingIOError:  # EAGAIN: the shim has not read yet
            return False
        return True

    rig.run_until(f"{len(data)} bytes to be taken", written)


def drained(io: ProcIO) -> list[bool]:
    flag: list[bool] = []
    io.drain(lambda: flag.append(True))
    return flag


# -- the logger -------------------------------------------------------------------------------


def test_logger_gets_fds_env_args_and_its_exit_ends_the_drain(rig: Rig) -> None:
    out = rig.tmp / "got"
    body = (
        f'printf "%s|" "$@" > {out}.args; env > {out}.env; exec 5>&-\n'
        f"cat <&3 > {out}.1 & cat <&4 > {out}.2; wait\n"
    )
    logger = rig.logger(rig.script("lg", body), "k", "v w")
    io = ProcIO(
        rig.loop,
        rig.log,
        "c",
        ("", "binary:///lg", "binary:///lg"),
        False,
        65536,
        output=Output(BINARY, "/lg", ()),
        logger=logger,
        logger_env={"CONTAINER_ID": "c", "CONTAINER_NAMESPACE": "ns"},
    )
    _, stdout, stderr = io.open()
    errors: list[str] = []
    io.when_ready(errors.append)
    rig.run_until("the logger to be ready", lambda: errors)
    assert errors == [""]
    feed(rig, stdout, b"to-stdout\n")
    feed(rig, stderr, b"to-stderr\n")
    done = drained(io)
    io.ran()  # the "container" closes its ends: the logger sees EOF and exits
    rig.run_until("the drain to end with the logger's exit", lambda: done)
    assert not logger.running and logger.status == 0
    assert (out.with_suffix(".1").read_text(), out.with_suffix(".2").read_text()) == (
        "to-stdout\n",
        "to-stderr\n",
    )
    assert Path(f"{out}.args").read_text() == "k|v w|"
    env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines())
    env.pop("PWD", None)  # the shell adds it
    assert env == {"CONTAINER_ID": "c", "CONTAINER_NAMESPACE": "ns"}
    io.close()


def test_logger_never_ready_is_killed_and_reported(rig: Rig) -> None:
    pid_file = rig.tmp / "pid"
    logger = rig.logger(rig.script("never", f"echo $$ > {pid_file}; exec sleep 600\n"))
    logger.ready_timeout = 0.2  # a bound, not a measurement
    r1, w1 = os.pipe2(os.O_CLOEXEC)
    r2, w2 = os.pipe2(os.O_CLOEXEC)
    logger.start({}, r1, r2)
    for fd in (r1, r2, w1, w2):
        os.close(fd)
    errors: list[str] = []
    logger.wait_ready(errors.append)
    rig.run_until("the timeout", lambda: errors)
    assert "did not signal it was ready" in errors[0] and "fd 5" in errors[0]
    rig.run_until("the logger to be reaped", lambda: logger.status is not None)
    assert logger.status is not None and logger.status & 0x7F == 9  # SIGKILL
    logger.close()


def test_logger_stop_terminates_then_kills(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("epollshim.v2.logger.STOP_GRACE", 0.2)
    logger = rig.logger(rig.script("stubborn", "trap '' TERM; exec 5>&- sleep 600\n"))
    r1, w1 = os.pipe2(os.O_CLOEXEC)
    logger.start({}, r1, r1)
    os.close(r1)
    os.close(w1)
    ready: list[str] = []
    logger.wait_ready(ready.append)
    rig.run_until("ready", lambda: ready)
    logger.stop()
    rig.run_until("SIGKILL after the grace", lambda: logger.status is not None)
    assert logger.status is not None and logger.status & 0x7F == 9
    logger.close()


# -- relays: file:// and io_uid ---------------------------------------------------------------


def test_file_output_appends_both_streams_through_pipes(rig: Rig) -> None:
    log = rig.tmp / "new" / "dir" / "app.log"
    io = ProcIO(
        rig.loop,
        rig.log,
        "c",
        ("", f"file://{log}", f"file://{log}"),
        False,
        65536,
        output=Output(FILE, str(log)),
    )
    _, stdout, stderr = io.open()
    assert stat.S_ISFIFO(os.fstat(stdout).st_mode) and stat.S_ISFIFO(os.fstat(stderr).st_mode)
    assert fcntl.fcntl(stdout, fcntl.F_GETPIPE_SZ) == FILE_CHUNK  # fewer, bigger copies
    assert stat.S_IMODE(log.stat().st_mode) == 0o644 & ~_umask()
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o755 & ~_umask()
    big = b"".join(b"line %d\n" % i for i in range(20000))  # several pipe buffers
    feed(rig, stdout, big)
    feed(rig, stderr, b"err\n")
    done = drained(io)
    io.ran()
    rig.run_until("both pumps to reach EOF", lambda: done)
    assert sorted(log.read_bytes().splitlines(keepends=True)) == sorted(
        [*big.splitlines(keepends=True), b"err\n"]
    )
    io.finish()
    io.close()


def test_io_uid_gives_the_container_pipes_it_owns(rig: Rig) -> None:
    out = rig.tmp / "out"
    os.mkfifo(out)
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    io = ProcIO(rig.loop, rig.log, "c", ("", str(out), ""), False, 65536, io_ids=(65534, 65533))
    try:
        _, stdout, _ = io.open()
        st = os.fstat(stdout)
        assert stat.S_ISFIFO(st.st_mode) and (st.st_uid, st.st_gid) == (65534, 65533)
        assert os.stat(out).st_uid == 0  # the client's FIFO is not touched
        feed(rig, stdout, b"relayed\n")
        done = drained(io)
        io.ran()
        rig.run_until("the relay to reach EOF", lambda: done)
        assert os.read(reader, 100) == b"relayed\n"
    finally:
        io.close()
        os.close(reader)


def test_a_full_destination_is_discarded_with_a_warning(rig: Rig) -> None:
    """/dev/full says ENOSPC as a full disk would: the process must not block."""
    io = ProcIO(rig.loop, rig.log, "c", ("", "/dev/full", ""), False, 65536, io_ids=(1, 1))
    _, stdout, _ = io.open()
    done = drained(io)
    feed(rig, stdout, b"x" * (1 << 20))  # 16 pipe buffers: taken only if the shim reads on
    io.ran()
    rig.run_until("the drain", lambda: done)
    assert "writing its output failed; discarding the rest" in rig.log_path.read_text()
    io.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
