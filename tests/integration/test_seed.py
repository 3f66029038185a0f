"""The seed-form shim driven directly, as a supervisor would, with real runc.

Every test that applies to both terminal modes runs in both (``terminal``):
with a pty, stdout carries everything and the line discipline turns each
``\\n`` into ``\\r\\n`` (and echoes what we type).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

from epollshim.tools.procfs import EPOLLET, ptmx_registrations

from .conftest import SeedFactory, Workdir
from .supervisor import Shim, pid_alive, wait_for

pytestmark = pytest.mark.runc


def nl(text: str, terminal: bool) -> bytes:
    """What ``text`` looks like on our stdout FIFO in this terminal mode."""
    return (text.replace("\n", "\r\n") if terminal else text).encode()


def finish(shim: Shim) -> int:
    """Wait for the shim to end (exit 0), check it left nothing; the container's status."""
    assert shim.wait_exit() == 0, shim.stderr()
    status = shim.exit_status()
    shim.assert_nothing_left()
    return status


def end_input(shim: Shim, terminal: bool) -> None:
    """Make ``cat`` see end of input: ^D on a terminal, close stdin on pipes."""
    if terminal:
        shim.write_stdin(b"\x04")
    shim.close_stdin()


# -- exit statuses -----------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code(seed: SeedFactory, terminal: bool, code: int) -> None:
    shim = seed(["sh", "-c", f"echo out; echo err >&2; exit {code}"], terminal=terminal)
    assert finish(shim) == code
    if terminal:
        assert shim.stdout() == b"out\r\nerr\r\n"
    else:
        assert shim.stdout() == b"out\n"
        assert bytes(shim.output["stderr"]) == b"err\n"
    assert shim.stderr() == ""
    assert [r for r in shim.shim_log() if r["level"] == "error"] == []


def test_sigkill_is_137(seed: SeedFactory, terminal: bool) -> None:
    # SIGKILL from inside a pid namespace cannot kill its init: kill it from the host.
    shim = seed(["sh", "-c", "echo ready; exec sleep 1000"], terminal=terminal)
    shim.read_until(lambda out: b"ready" in out, "ready")
    os.kill(shim.pid(), signal.SIGKILL)
    assert finish(shim) == 137


def test_container_signals_itself(seed: SeedFactory, terminal: bool) -> None:
    # A child of the container's init kills itself; init reports that as 128+9.
    script = 'sh -c "kill -9 \\$\\$"; exit $?'
    shim = seed(["sh", "-c", script], terminal=terminal)
    assert finish(shim) == 137


@pytest.mark.parametrize("round", [1, 2])
def test_immediate_exit(seed: SeedFactory, terminal: bool, round: int) -> None:
    """``true`` may exit before the pid file is read (the early-exit race)."""
    shim = seed(["true"], terminal=terminal)
    assert finish(shim) == 0
    assert shim.stdout() == b""


# -- output ---------------------------------------------------------------------------


def test_50mb_byte_exact(seed: SeedFactory, workdir: Workdir) -> None:
    data = os.urandom(50 * 1024 * 1024)
    shim = seed(["cat", "/data"], start=False)
    bundle: Path = shim.bundle
    (bundle / "rootfs" / "data").write_bytes(data)
    shim.start([str(shim.state_dir), shim.id], cwd=bundle)
    assert finish(shim) == 0
    out = shim.stdout()
    assert len(out) == len(data)
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()
    assert shim.output["stderr"] == b""


def test_tty_text_line_exact(seed: SeedFactory) -> None:
    shim = seed(["seq", "1", "30000"], terminal=True)
    assert finish(shim) == 0
    expected = "".join(f"{i}\r\n" for i in range(1, 30001)).encode()
    assert shim.stdout() == expected


def test_reader_closes_and_reopens(seed: SeedFactory, terminal: bool) -> None:
    """The stdout reader leaves mid-stream and comes back: nothing dies, nothing is lost.

    The shim keeps an O_RDWR descriptor on the stdout FIFO, so while no client
    reads, the container's writes block on the full pipe (no EPIPE, no SIGPIPE)
    and bytes already in the pipe stay there: the pipe's buffer belongs to the
    pipe, not to a reader. What the first reader consumed plus what the second
    reads must be the whole stream, byte for byte.
    """
    count = 200_000
    shim = seed(["seq", "1", str(count)], terminal=terminal)
    pid = shim.pid()
    shim.read_until(lambda out: len(out) >= 100_000, "the first 100 kB")
    os.close(shim.out_fds.pop("stdout"))
    # Far more than the pipe and the pty can hold is still unwritten: the container
    # must be blocked, not dead, and the shim alive.
    assert pid_alive(pid)
    assert shim.proc is not None and shim.proc.poll() is None
    assert not (shim.state_dir / "exitStatus").exists()
    path = shim.stdio["stdout"]
    shim.out_fds["stdout"] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    assert finish(shim) == 0
    expected = "".join(f"{i}\n" for i in range(1, count + 1))
    assert shim.stdout() == nl(expected, terminal)


# -- input and control ----------------------------------------------------------------


def test_stdin_round_trip(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["cat"], terminal=terminal)
    shim.write_stdin(b"hello over stdin\n")
    # On a tty the line discipline echoes the line, then cat prints it.
    want = 2 if terminal else 1
    line = nl("hello over stdin\n", terminal)
    shim.read_until(lambda out: out.count(line) == want, "the echo")
    end_input(shim, terminal)
    assert finish(shim) == 0


def test_close_stdin_ends_cat(seed: SeedFactory, terminal: bool) -> None:
    """Our writer leaving is not EOF (the shim keeps stdin open); ``0 0 0`` is."""
    shim = seed(["sh", "-c", "cat; echo cat-ended"], terminal=terminal)
    shim.write_stdin(b"one\n")
    shim.read_until(lambda out: nl("one\n", terminal) in out, "one")
    os.close(shim.stdin_fd)  # the client leaves...
    shim.stdin_fd = -1
    # ...and comes back: cat is still reading, so the stream never ended.
    dummy = os.open(shim.stdio["stdin"], os.O_RDONLY | os.O_NONBLOCK)
    shim.stdin_fd = os.open(shim.stdio["stdin"], os.O_WRONLY)
    os.close(dummy)
    shim.write_stdin(b"two\n")
    shim.read_until(lambda out: nl("two\n", terminal) in out, "two")
    end_input(shim, terminal)
    assert finish(shim) == 0
    assert shim.stdout().endswith(nl("cat-ended\n", terminal))


def test_stdout_pipe_ends_once_fifos_are_open(seed: SeedFactory, terminal: bool) -> None:
    """A pipe as the shim's fd 1 sees EOF once the shim holds its FIFOs, long before its end.

    ``epollshim run`` waits for that EOF before closing its stdin writer. Here the
    container blocks on stdin, so only the shim's own release can end the pipe.
    """
    shim = seed(["sh", "-c", "read x; echo got-$x"], terminal=terminal, start=False)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        shim.start([str(shim.state_dir), shim.id], cwd=shim.bundle, stdout=w)
        os.close(w)
        w = -1
        os.set_blocking(r, False)

        def eof() -> bool:
            try:
                return os.read(r, 4096) == b""
            except BlockingIOError:
                return False

        wait_for(eof, "EOF on the shim's stdout pipe", fd=r)
        assert shim.proc is not None and shim.proc.poll() is None
        assert not (shim.state_dir / "exitStatus").exists()
        shim.write_stdin(b"go\n")
        shim.read_until(lambda out: nl("got-go\n", terminal) in out, "got-go")
        end_input(shim, terminal)
        assert finish(shim) == 0
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_resize_seen_by_stty(seed: SeedFactory) -> None:
    shim = seed(["sh", "-c", "read a; stty size; read b; stty size"], terminal=True)
    shim.resize(100, 40)  # returns once the shim has read (and applied) it
    shim.write_stdin(b"\n")
    shim.read_until(lambda out: b"40 100\r\n" in out, "the first size")
    shim.resize(132, 50)
    shim.write_stdin(b"\n")
    shim.read_until(lambda out: b"50 132\r\n" in out, "the second size")
    assert finish(shim) == 0


def test_the_shim_waits_on_the_pty_master_edge_triggered(seed: SeedFactory) -> None:
    """Level-triggered, every wait of the loop would poll the master again, and n_tty's poll
    waits for the tty's buffer worker when the container writes (shell/loop.py)."""
    shim = seed(["cat"], terminal=True)
    shim.write_stdin(b"ping\n")
    shim.read_until(lambda out: b"ping\r\n" in out, "the echo")
    assert shim.proc is not None
    flags = ptmx_registrations(shim.proc.pid)
    end_input(shim, True)
    assert finish(shim) == 0
    assert flags and all(f & EPOLLET for f in flags), [hex(f) for f in flags]


def test_control_garbage_is_ignored(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["cat"], terminal=terminal)
    shim.control(b"hello\n7 1 1\n" + b"9" * 300 + b"\n1 x 2\n")
    shim.write_stdin(b"still here\n")
    shim.read_until(lambda out: nl("still here\n", terminal) in out, "the echo")
    assert shim.proc is not None and shim.proc.poll() is None
    end_input(shim, terminal)
    assert finish(shim) == 0


# -- signals to the shim ---------------------------------------------------------------


def test_sigterm_and_sigint_are_ignored(
    seed: SeedFactory, terminal: bool, workdir: Workdir
) -> None:
    config = workdir.base / "debug.yaml"
    config.write_text("log:\n  level: debug\n")
    shim = seed(["cat"], terminal=terminal, opts=("--config", str(config)))
    pid = shim.pid()
    assert shim.proc is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        shim.proc.send_signal(sig)
        # The shim logs each signal it ignores: wait for that, not for time to pass.
        wait_for(
            lambda sig=sig: any(sig.name in str(r["msg"]) for r in shim.shim_log()),
            f"the shim to log {sig.name}",
        )
    assert shim.proc.poll() is None, "the shim died of a signal"
    assert pid_alive(pid), "the container died with the shim's signal"
    shim.write_stdin(b"after signals\n")
    shim.read_until(lambda out: nl("after signals\n", terminal) in out, "the echo")
    end_input(shim, terminal)
    assert finish(shim) == 0


# -- --trace-states -----------------------------------------------------------------------

PATH = [("STARTING", "RUNNING"), ("RUNNING", "REAPING"), ("REAPING", "CLEANUP")]


def test_trace_states_text(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["sh", "-c", "exit 3"], terminal=terminal, opts=("--trace-states",))
    assert finish(shim) == 3
    lines = [ln for ln in shim.stderr().splitlines() if ln.startswith("epollshim: trace:")]
    steps = [re.search(r" (\w+) -> (\w+) on (\w+)", ln) for ln in lines]
    assert all(steps), lines
    assert [(m.group(1), m.group(2)) for m in steps if m] == PATH
    assert [m.group(3) for m in steps if m] == ["PidKnown", "ProcessExited", "OutputDrained"]


def test_trace_states_json(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["sh", "-c", "exit 3"], terminal=terminal, opts=("--trace-states=json",))
    pid = shim.pid()
    assert finish(shim) == 3
    records = [json.loads(ln) for ln in shim.stderr().splitlines() if ln.startswith("{")]
    assert [(r["from"], r["to"]) for r in records] == PATH
    for r in records:
        assert {"from", "to", "event", "pid", "time"} <= r.keys()
        assert isinstance(r["time"], float)
        assert r["pid"] == pid
    assert records[1]["event"] == "ProcessExited"


def test_harness_can_fail(seed: SeedFactory) -> None:
    """The helpers notice a container that is still running and an unexpected status."""
    shim = seed(["sh", "-c", "exit 4"])
    assert shim.wait_exit() == 0
    with pytest.raises(AssertionError):
        assert shim.exit_status() == 0
    with pytest.raises(AssertionError, match="ended before"):
        shim.read_until(lambda out: b"never" in out, "never")
    shim.assert_nothing_left()
