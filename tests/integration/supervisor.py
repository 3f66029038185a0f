"""A test supervisor: drives a real shim the way a v0 supervisor does.

Seed form (spec 16.1 Form B): the state dir holds the FIFOs ``exit``,
``control``, ``stdin``, ``stdout``, ``stderr``; the exit FIFO's read end is
opened (O_RDONLY|O_NONBLOCK) before the shim starts; the shim runs as
``python -m epollshim --runtime-root ROOT STATE_DIR ID`` with cwd = bundle.
0.2.x form (Form A): the process dir holds ``process.json``, ``exit`` and
``control``; the stdio FIFOs live wherever the client put them.

Rules: every wait is a bounded poll on an fd, a file or a pid (``deadline``),
never a sleep used as synchronisation; ``cleanup`` kills by pid what the test
started and runs ``runc delete --force`` in the test's private runc root.

Facts used (fifo(7), pipe_poll in fs/pipe.c): a reader opened with no writer
sees no event until a writer came and went, so POLLHUP on ``exit`` means "the
shim (the last writer) is gone" and never fires early. Reading a FIFO with no
writer returns b"" at once, so a stdio reader reads only after poll said so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from epollshim.tools.wait import until

RUNC = "runc"
DEADLINE = 30.0  # seconds; generous for a loaded CI machine, never a timing assertion
CHUNK = 1 << 16


class Timeout(AssertionError):
    pass


def runc(root: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNC, "--root", root, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def runc_list(root: str) -> list[str]:
    """Container ids in a private runc root (empty when the root has none)."""
    if not os.path.isdir(root):
        return []
    out = runc(root, "list", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout or "null") or []
    return [c["id"] for c in data]


def wait_for(
    predicate: Callable[[], object], what: str, deadline: float = DEADLINE, fd: int = -1
) -> object:
    """Poll ``predicate`` until it is truthy; between tries block on ``fd`` (if any) up to 20 ms,
    else wait 10 ms (a file or /proc: the kernel gives no event to block on)."""
    return until(
        what, predicate, deadline, interval=0.02 if fd >= 0 else 0.01, fd=fd, error=Timeout
    )


def read_file(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


def pid_alive(pid: int) -> bool:
    """True unless ``pid`` is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in (b"Z", b"X")


def fionread(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, sys.byteorder)


def holders_of(directory: str | Path, *, exclude: Iterable[int] = ()) -> list[str]:
    """Processes (other than ``exclude``) with an fd or cwd inside ``directory``."""
    prefix = os.path.realpath(directory) + "/"
    skip = {os.getpid(), *exclude}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            targets = [os.readlink(f"/proc/{entry}/fd/{fd}") for fd in fds]
            targets.append(os.readlink(f"/proc/{entry}/cwd"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        hits = [t for t in targets if (t + "/").startswith(prefix)]
        if hits:
            found.append(f"pid {entry}: {hits}")
    return found


def processes_mentioning(needle: str) -> list[str]:
    """Command lines (other than ours) that contain ``needle`` (a container id)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if needle in cmdline and pid_alive(int(entry)):
            found.append(f"pid {entry}: {cmdline}")
    return found


class Shim:
    """One shim process plus the supervisor's and the client's ends of its FIFOs."""

    def __init__(
        self,
        *,
        state_dir: Path,
        runc_root: Path,
        tmpdir: Path,
        id: str,
        stdio: dict[str, Path] | None = None,
        terminal: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.runc_root = runc_root
        self.tmpdir = tmpdir  # the shim's TMPDIR: console socket dirs go here
        self.id = id
        self.bundle = Path("/nonexistent")  # set by whoever writes the bundle
        self.terminal = terminal
        self.stdio = stdio or {n: state_dir / n for n in ("stdin", "stdout", "stderr")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = state_dir.parent / f"{state_dir.name}.shim-stderr"
        self.exit_fd = self.control_fd = self.stdin_fd = -1
        self.out_fds: dict[str, int] = {}
        self.output: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.eof: set[str] = set()
        self.hup = False
        self.container_pids: list[int] = []

    # -- set-up --------------------------------------------------------------
    def make_fifos(self, names: Iterable[str] = ("exit", "control")) -> None:
        for name in names:
            os.mkfifo(self.state_dir / name, 0o600)
        for path in self.stdio.values():
            if not path.exists():
                os.mkfifo(path, 0o600)

    def open_supervisor_ends(self, *, stdin: bool = True) -> None:
        """Exit reader, control, output readers, stdin writer: all before the shim starts."""
        exit_path = self.state_dir / "exit"
        if exit_path.exists():
            self.exit_fd = os.open(exit_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        control = self.state_dir / "control"
        if control.exists():
            self.control_fd = os.open(control, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        streams = ("stdout",) if self.terminal else ("stdout", "stderr")
        for name in streams:
            path = self.stdio.get(name)
            if path is not None and path.exists():
                self.out_fds[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        for name in ("stdout", "stderr"):
            if name not in self.out_fds:
                self.eof.add(name)
        if stdin and self.stdio["stdin"].exists():
            # O_RDWR: opens without a reader and never fails with EPIPE while the shim
            # has not opened its reader yet; bytes wait in the pipe. Closing it is what
            # "the client's writer is gone" means to the shim.
            self.stdin_fd = os.open(self.stdio["stdin"], os.O_RDWR | os.O_CLOEXEC)

    def start(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        opts: Iterable[str] = (),
        stdout: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """``python -m epollshim --runtime-root ROOT [opts] ARGS`` in its own session."""
        full_env = dict(os.environ, TMPDIR=str(self.tmpdir))
        full_env.pop("EPOLLSHIM_START", None)
        full_env.update(env or {})
        argv = [sys.executable, "-m", "epollshim", "--runtime-root", str(self.runc_root)]
        argv += [*opts, *args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=err,
                start_new_session=True,
            )
        return self.proc

    # -- talking to it ---------------------------------------------------------
    def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.stdin_fd, view)
            view = view[n:]

    def control(self, message: bytes, *, wait_consumed: bool = True) -> None:
        """Write a control line; by default wait until the shim has read it.

        The shim handles every line in the callback that read it, so an empty
        FIFO means the message has been acted upon.
        """
        os.write(self.control_fd, message)
        if wait_consumed:
            wait_for(lambda: fionread(self.control_fd) == 0, "the shim to read control")

    def close_stdin(self) -> None:
        """What a 0.2.x client does: close its writer, then ``0 0 0`` on control."""
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1
        self.control(b"0 0 0\n")

    def resize(self, cols: int, rows: int) -> None:
        self.control(f"1 {cols} {rows}\n".encode())

    def pid(self, deadline: float = DEADLINE) -> int:
        """The container pid, once runc wrote the pid file (bounded poll)."""
        text = wait_for(
            lambda: (read_file(self.state_dir / "pid") or "").strip(), "the pid file", deadline
        )
        pid = int(str(text))
        self.container_pids.append(pid)
        return pid

    # -- reading -----------------------------------------------------------------
    def pump(self, timeout: float) -> bool:
        """One poll over the output readers and the exit FIFO; False if nothing happened."""
        poller = select.poll()
        fds: dict[int, str] = {}
        for name, fd in self.out_fds.items():
            if name not in self.eof:
                poller.register(fd, select.POLLIN)
                fds[fd] = name
        if not self.hup and self.exit_fd >= 0:
            poller.register(self.exit_fd, select.POLLIN)
            fds[self.exit_fd] = "exit"
        if self.proc is not None and self.exit_fd < 0 and self.proc.poll() is not None:
            self.hup = True
        events = poller.poll(timeout * 1000)
        for fd, mask in events:
            name = fds[fd]
            if name == "exit":
                if mask & (select.POLLHUP | select.POLLERR):
                    self.hup = True
                continue
            self._read(name, fd)
        return bool(events)

    def _read(self, name: str, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if data:
            self.output[name] += data
        else:
            self.eof.add(name)

    def read_until(
        self, predicate: Callable[[bytes], bool], what: str, stream: str = "stdout"
    ) -> bytes:
        """Read output until ``predicate(all of stream so far)`` holds."""
        end = time.monotonic() + DEADLINE
        while not predicate(bytes(self.output[stream])):
            if time.monotonic() > end:
                raise Timeout(f"timed out waiting for {what}; got {bytes(self.output[stream])!r}")
            if stream in self.eof:
                got = bytes(self.output[stream])
                raise AssertionError(f"{stream} ended before {what}: {got!r}")
            self.pump(0.1)
        return bytes(self.output[stream])

    def wait_exit(self, deadline: float = DEADLINE) -> int:
        """Drain output to EOF, wait for the exit FIFO hang-up and the shim's end.

        Returns the shim's exit code.
        """
        assert self.proc is not None
        end = time.monotonic() + deadline
        while not (self.hup and len(self.eof) == 2):
            if time.monotonic() > end:
                raise Timeout(
                    f"shim {self.id}: hup={self.hup} eof={sorted(self.eof)} "
                    f"alive={self.proc.poll() is None}; stderr: {self.stderr()!r}; "
                    f"shim-log: {self.shim_log()!r}; exitStatus: {self.state_file('exitStatus')!r}"
                )
            self.pump(0.1)
        return self.proc.wait(timeout=deadline)

    def exit_status(self) -> int:
        text = read_file(self.state_dir / "exitStatus")
        assert text is not None, f"no exitStatus; stderr: {self.stderr()!r}"
        assert text == text.strip() and text.isdigit(), f"exitStatus is {text!r}"
        return int(text)

    def state_file(self, name: str) -> str | None:
        return read_file(self.state_dir / name)

    def stdout(self) -> bytes:
        return bytes(self.output["stdout"])

    def stderr(self) -> str:
        return read_file(self.stderr_path) or ""

    def shim_log(self) -> list[dict[str, object]]:
        text = read_file(self.state_dir / "shim-log.json") or ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- the end ---------------------------------------------------------------------
    def close_fds(self) -> None:
        for fd in (self.exit_fd, self.control_fd, self.stdin_fd, *self.out_fds.values()):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.exit_fd = self.control_fd = self.stdin_fd = -1
        self.out_fds = {}

    def cleanup(self) -> None:
        """Kill what is left of this test (by pid), delete the container, close our fds."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=DEADLINE)
        for pid in self.container_pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if os.path.isdir(self.runc_root):
            runc(str(self.runc_root), "delete", "--force", self.id)
        self.close_fds()

    def assert_nothing_left(self) -> None:
        """The shim is gone and left no container, child, console dir or FIFO holder."""
        assert self.proc is not None and self.proc.poll() is not None, "the shim still runs"
        assert runc_list(str(self.runc_root)) == [], "runc still lists the container"
        assert processes_mentioning(self.id) == [], "a runc or container process is left"
        for pid in self.container_pids:
            wait_for(lambda pid=pid: not pid_alive(pid), f"container pid {pid} to be gone")
        left = [n for n in os.listdir(self.tmpdir) if n.startswith("epollshim-pty-")]
        assert left == [], "a console socket directory is left"
        self.close_fds()
        dirs = {self.state_dir, *(p.parent for p in self.stdio.values())}
        for d in dirs:
            assert holders_of(d) == [], f"someone still holds files in {d}"
