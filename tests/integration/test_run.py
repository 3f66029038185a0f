"""``epollshim run`` and ``epollshim attach``: the caller as a person (or a script) uses it.

Pipes mode runs the caller under ``subprocess``; terminal mode under
``ptyprocess``, typing as a person would. State directories go to a private
``EPOLLSHIM_STATE_BASE`` and containers to a private runc root; whatever a
test leaves running is killed by pid at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ptyprocess import PtyProcess

from .conftest import Workdir
from .supervisor import DEADLINE, Timeout, pid_alive, runc, runc_list, wait_for

pytestmark = pytest.mark.runc


class Runs:
    """Callers started by one test, and what they left behind."""

    def __init__(self, workdir: Workdir) -> None:
        self.workdir = workdir
        self.base = workdir.base / "run-state"
        self.env = dict(os.environ, EPOLLSHIM_STATE_BASE=str(self.base), TMPDIR=str(workdir.tmpdir))
        self.env.pop("EPOLLSHIM_START", None)
        self.root = str(workdir.runc_root)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ptys: list[PtyProcess] = []
        self.seen: dict[str, dict[str, object]] = {}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "epollshim", *args]

    def run_argv(self, command: list[str], *, tty: bool = False) -> list[str]:
        opts = ["--tty"] if tty else []
        return self.argv("run", *opts, "--runtime-root", self.root, "--", *command)

    def popen(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, env=self.env, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def pty(self, argv: list[str], rows: int = 24, cols: int = 80) -> PtyProcess:
        p = PtyProcess.spawn(argv, env=self.env, dimensions=(rows, cols))
        self.ptys.append(p)
        return p

    def state_dir(self) -> Path:
        """The one state dir a run made, once its attach.json is written (bounded poll)."""

        def find() -> Path | None:
            dirs = list(self.base.glob("*/attach.json")) if self.base.exists() else []
            return dirs[0].parent if dirs else None

        found = wait_for(find, "attach.json")
        assert isinstance(found, Path)
        self.seen[str(found)] = json.loads((found / "attach.json").read_text())
        return found

    def cleanup(self) -> None:
        for p in self.ptys:
            if p.isalive():
                p.kill(signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait()
            p.close(force=True)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=DEADLINE)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        # Also the state dirs the test never looked at (e.g. a caller that timed out).
        for path in self.base.glob("*/attach.json") if self.base.exists() else []:
            self.seen.setdefault(str(path.parent), json.loads(path.read_text()))
        for state, info in self.seen.items():
            pid_text = _read(Path(state) / "pid")
            for pid in (int(str(info["shim_pid"])), int(pid_text or 0)):
                if pid and pid_alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            runc(self.root, "delete", "--force", str(info["id"]))

    def assert_nothing_left(self) -> None:
        for info in self.seen.values():
            pid = int(str(info["shim_pid"]))
            wait_for(lambda pid=pid: not pid_alive(pid), "the shim to be gone")
        assert runc_list(self.root) == []
        assert not self.base.exists() or os.listdir(self.base) == [], "a state dir is left"
        left = [n for n in os.listdir(self.workdir.tmpdir) if n.startswith("epollshim-pty-")]
        assert left == [], "a console socket dir is left"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


@pytest.fixture
def runs(workdir: Workdir) -> Iterator[Runs]:
    r = Runs(workdir)
    try:
        yield r
    finally:
        r.cleanup()


PROMPT = b"/ # "  # busybox sh's prompt for root in /


class Screen:
    """What a terminal shows, read with deadlines (ptyprocess's read blocks)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = b""
        self.mark = 0

    def expect(self, needle: bytes) -> bytes:
        """Read until ``needle`` appears after the mark; move the mark past it."""
        end = time.monotonic() + DEADLINE
        while (i := self.text.find(needle, self.mark)) < 0:
            if time.monotonic() > end:
                raise Timeout(f"no {needle!r} on the screen: {self.text[self.mark :]!r}")
            if not self.read(0.1):
                raise AssertionError(f"the terminal closed before {needle!r}: {self.text!r}")
        before = self.text[self.mark : i]
        self.mark = i + len(needle)
        return before

    def read(self, timeout: float) -> bool:
        """False at EOF."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the other side of the pty is gone
                return False
            if not data:
                return False
            self.text += data
        return True

    def drain(self) -> None:
        end = time.monotonic() + DEADLINE
        while self.read(0.1):
            if time.monotonic() > end:
                raise Timeout("the terminal never closed")


def read_pipe_until(fd: int, needle: bytes) -> bytes:
    seen = b""
    end = time.monotonic() + DEADLINE
    while needle not in seen:
        if time.monotonic() > end:
            raise Timeout(f"no {needle!r} in {seen!r}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"EOF before {needle!r}: {seen!r}")
            seen += data
    return seen


# -- pipes ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_run_exit_code(runs: Runs, code: int) -> None:
    command = ["sh", "-c", f"echo out; echo err >&2; exit {code}"]
    r = subprocess.run(
        runs.run_argv(command),
        env=runs.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert r.returncode == code, r.stderr
    assert r.stdout == b"out\n"
    assert r.stderr == b"err\n"
    runs.assert_nothing_left()


def test_run_stdin_from_pipe(runs: Runs) -> None:
    r = subprocess.run(
        runs.run_argv(["sh", "-c", "tr a-z A-Z; exit 9"]),
        env=runs.env,
        input=b"shout\n" * 1000,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert r.returncode == 9, r.stderr
    assert r.stdout == b"SHOUT\n" * 1000
    runs.assert_nothing_left()


def test_run_failure_is_125(runs: Runs) -> None:
    r = subprocess.run(
        runs.run_argv(["no-such-command"]),
        env=runs.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert r.returncode == 125
    assert b"no-such-command" in r.stderr
    runs.assert_nothing_left()


def test_attach_after_caller_killed(runs: Runs) -> None:
    script = "echo first; read x; echo got-$x; exit 7"
    caller = runs.popen(
        runs.run_argv(["sh", "-c", script]), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert caller.stdout is not None
    read_pipe_until(caller.stdout.fileno(), b"first\n")
    state = runs.state_dir()
    shim_pid = int(str(runs.seen[str(state)]["shim_pid"]))
    container = int(str(wait_for(lambda: _read(state / "pid"), "the pid file")))
    caller.kill()
    assert caller.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert pid_alive(shim_pid) and pid_alive(container)

    attach = runs.popen(
        runs.argv("attach", str(state)), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    out, _ = attach.communicate(b"hello\n", timeout=DEADLINE)
    assert out == b"got-hello\n"
    assert attach.returncode == 7
    runs.assert_nothing_left()


def _orphaned_run(runs: Runs) -> tuple[Path, int]:
    """A run of `read x; exit 4` whose caller was killed: (its state dir, its shim's pid)."""
    caller = runs.popen(runs.run_argv(["sh", "-c", "read x; exit 4"]), stdin=subprocess.PIPE)
    state = runs.state_dir()
    wait_for(lambda: _read(state / "pid"), "the pid file")  # the shim opened its FIFOs
    caller.kill()
    caller.wait(timeout=DEADLINE)
    return state, int(str(runs.seen[str(state)]["shim_pid"]))


def _attach_without_input(runs: Runs, state: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        runs.argv("attach", str(state)),
        env=runs.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )


def test_attach_after_the_end(runs: Runs) -> None:
    """Attaching to a finished container answers its status at once."""
    state, shim_pid = _orphaned_run(runs)
    stdin = os.open(state / "stdin", os.O_WRONLY | os.O_NONBLOCK)  # the container reads it
    os.write(stdin, b"go\n")
    os.close(stdin)
    wait_for(lambda: not pid_alive(shim_pid), "the shim to finish")
    r = _attach_without_input(runs, state)
    assert r.returncode == 4, r.stderr
    assert not state.exists(), "attach leaves the state dir of an ended shim behind"


def test_attach_to_a_dead_shim(runs: Runs) -> None:
    """A shim killed before it wrote exitStatus: attach answers 125 instead of waiting for ever.

    Its exit FIFO will never hang up for a reader that opens it now (a FIFO reader
    that never saw a writer gets no HUP), so attach must notice the shim is gone.
    """
    state, shim_pid = _orphaned_run(runs)
    os.kill(shim_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(shim_pid), "the shim to die")
    r = _attach_without_input(runs, state)
    assert r.returncode == 125, r.stderr
    assert not state.exists()


def test_run_shim_fails_before_its_fifos(runs: Runs) -> None:
    """The shim dies before opening any FIFO: our readers would never see HUP."""
    argv = runs.argv("run", "--config", "/nonexistent/epollshim.toml", "--", "true")
    r = subprocess.run(
        argv, env=runs.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=DEADLINE
    )
    assert r.returncode == 125
    assert b"/nonexistent/epollshim.toml" in r.stderr
    runs.assert_nothing_left()


BIG = 20 * 1024 * 1024  # far more than the stdin and stdout FIFOs hold together


def test_run_big_piped_input_and_output(runs: Runs) -> None:
    """`producer | epollshim run -- cat | consumer`: input and output flow at once.

    A caller that blocks writing stdin while the container blocks writing stdout
    (nobody draining it) stalls for ever.
    """
    data = os.urandom(BIG)
    caller = runs.popen(runs.run_argv(["cat"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = caller.communicate(data, timeout=DEADLINE)
    assert caller.returncode == 0
    assert len(out) == len(data)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    runs.assert_nothing_left()


def test_run_big_file_as_input(runs: Runs) -> None:
    """Stdin a regular file (epoll can't watch it): copied as the FIFO has room."""
    data = os.urandom(BIG)
    path = runs.workdir.base / "input"
    path.write_bytes(data)
    with open(path, "rb") as stdin:
        caller = runs.popen(runs.run_argv(["cat"]), stdin=stdin, stdout=subprocess.PIPE)
        out, _ = caller.communicate(timeout=DEADLINE)
    assert caller.returncode == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    runs.assert_nothing_left()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_run_forwards_signals(runs: Runs, sig: signal.Signals) -> None:
    """Without a terminal, ^C (and kill) reach the container, as with ctr/docker run."""
    name = sig.name[3:]
    script = f"trap 'echo got-{name}; exit 3' {name}; echo ready; sleep 1000 & wait"
    caller = runs.popen(runs.run_argv(["sh", "-c", script]), stdout=subprocess.PIPE)
    assert caller.stdout is not None
    read_pipe_until(caller.stdout.fileno(), b"ready\n")
    caller.send_signal(sig)
    out, _ = caller.communicate(timeout=DEADLINE)
    assert out == f"got-{name}\n".encode()
    assert caller.returncode == 3
    runs.assert_nothing_left()


# -- terminal ---------------------------------------------------------------------------


def test_run_tty_as_a_person(runs: Runs) -> None:
    p = runs.pty(runs.run_argv(["sh"], tty=True), rows=24, cols=80)
    screen = Screen(p.fd)
    screen.expect(PROMPT)
    p.write(b"echo hi-$((6*7))\r")
    screen.expect(b"hi-42\r\n")
    screen.expect(PROMPT)
    p.write(b"stty size\r")  # the caller's terminal size is the container's from the start
    assert screen.expect(PROMPT).endswith(b"24 80\r\n")

    p.setwinsize(30, 100)  # the caller gets SIGWINCH and writes "1 100 30" to control
    # The new size reaches the container asynchronously: ask until it is seen (bounded).
    end = time.monotonic() + DEADLINE
    while True:
        p.write(b"stty size\r")
        if screen.expect(PROMPT).endswith(b"30 100\r\n"):
            break
        if time.monotonic() > end:
            raise Timeout("the container never saw 30 100")

    p.write(b"exit 5\r")
    screen.drain()
    p.wait()
    assert p.exitstatus == 5
    runs.assert_nothing_left()


@pytest.mark.parametrize("code", [0, 3])
def test_run_tty_exit_code(runs: Runs, code: int) -> None:
    p = runs.pty(runs.run_argv(["sh", "-c", f"echo out; echo err >&2; exit {code}"], tty=True))
    screen = Screen(p.fd)
    screen.drain()
    p.wait()
    assert p.exitstatus == code
    assert b"out\r\nerr\r\n" in screen.text
    runs.assert_nothing_left()


def test_attach_tty_after_caller_killed(runs: Runs) -> None:
    script = "echo first; read x; echo got-$x; exit 7"
    caller = runs.pty(runs.run_argv(["sh", "-c", script], tty=True))
    Screen(caller.fd).expect(b"first\r\n")
    state = runs.state_dir()
    assert runs.seen[str(state)]["terminal"] is True
    shim_pid = int(str(runs.seen[str(state)]["shim_pid"]))
    caller.kill(signal.SIGKILL)
    caller.wait()
    assert pid_alive(shim_pid)

    p = runs.pty(runs.argv("attach", str(state)))
    screen = Screen(p.fd)
    # Type only once attach has put its terminal in raw mode: tty.setraw flushes
    # type-ahead (TCSAFLUSH). On Linux the master reports the slave's termios.
    wait_for(lambda: not termios.tcgetattr(p.fd)[3] & termios.ECHO, "raw mode")
    p.write(b"hello\r")
    screen.expect(b"got-hello\r\n")
    screen.drain()
    p.wait()
    assert p.exitstatus == 7
    runs.assert_nothing_left()


def test_attach_tty_keeps_type_ahead(runs: Runs) -> None:
    """What is typed before attach's terminal is raw still reaches the container."""
    script = "echo first; read x; echo got-$x; exit 7"
    caller = runs.pty(runs.run_argv(["sh", "-c", script], tty=True))
    Screen(caller.fd).expect(b"first\r\n")
    state = runs.state_dir()
    caller.kill(signal.SIGKILL)
    caller.wait()

    p = runs.pty(runs.argv("attach", str(state)))
    p.write(b"hello\r")  # at once: attach is still starting, its terminal still cooked
    screen = Screen(p.fd)
    screen.expect(b"got-hello\r\n")
    screen.drain()
    p.wait()
    assert p.exitstatus == 7
    runs.assert_nothing_left()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_run_tty_detaches_on_signal(runs: Runs, sig: signal.Signals) -> None:
    """With a terminal, SIGTERM/SIGHUP detach: terminal restored, container kept for attach."""
    script = "echo first; read x; echo got-$x; exit 7"
    p = runs.pty(runs.run_argv(["sh", "-c", script], tty=True))
    screen = Screen(p.fd)
    screen.expect(b"first\r\n")
    state = runs.state_dir()
    shim_pid = int(str(runs.seen[str(state)]["shim_pid"]))
    p.kill(sig)
    # Not screen.drain(): the shim writes its errors to our stderr, so it holds the terminal.
    screen.expect(b"epollshim attach " + str(state).encode())
    wait_for(lambda: not p.isalive(), "the caller to leave")
    assert p.exitstatus == 128 + sig
    assert termios.tcgetattr(p.fd)[3] & termios.ECHO, "the terminal was left raw"
    assert pid_alive(shim_pid)

    attach = runs.popen(
        runs.argv("attach", str(state)), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    out, _ = attach.communicate(b"hello\n", timeout=DEADLINE)
    assert b"got-hello" in out
    assert attach.returncode == 7
    runs.assert_nothing_left()


def test_run_whose_reader_leaves_detaches_like_a_pipeline(runs: Runs) -> None:
    """`epollshim run -- yes | head -1`: run ends with 141 (SIGPIPE), the container stays."""
    caller = runs.popen(runs.run_argv(["yes"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert caller.stdout is not None
    read_pipe_until(caller.stdout.fileno(), b"y\n")
    state = runs.state_dir()
    container = int(str(wait_for(lambda: _read(state / "pid"), "the pid file")))
    caller.stdout.close()  # the `head -1` of the pipeline has what it wanted
    assert caller.wait(timeout=DEADLINE) == 128 + signal.SIGPIPE
    assert caller.stderr is not None  # the shim holds it too (its own errors): no read to EOF
    read_pipe_until(caller.stderr.fileno(), b"epollshim attach " + str(state).encode())
    assert pid_alive(container), "the container went with the caller"

    os.kill(container, signal.SIGKILL)  # end it as its owner would; the shim records it
    wait_for(lambda: _read(state / "exitStatus"), "the exit status")
    assert _read(state / "exitStatus") == "137"
    attach = runs.popen(runs.argv("attach", str(state)), stdout=subprocess.DEVNULL)
    assert attach.wait(timeout=DEADLINE) == 137
    runs.assert_nothing_left()
