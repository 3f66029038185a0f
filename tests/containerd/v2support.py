"""Helpers for the ctr-driven tests of the runtime v2 shim (tests/containerd/test_v2_*.py).

Rules of this module:

* Every wait is a bounded poll on something observable (a line of output, a pid, a task
  status, a file), with a generous deadline for a noisy shared machine; never a bare sleep.
* Each test runs against ``EPOLL`` and, where the behaviour is containerd's contract rather
  than an epollshim choice, also against the stock ``RUNC`` shim: a test that passes against
  runc-v2 is a test that asserts real outcomes (and shows what the harness can catch).
* ``nothing_left`` is the clean-up contract: after a test, our containerd has no task, no
  container, no shim process and no mount left. It cleans up first (so one failing test does
  not break the next) and then fails the test if anything had been left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ptyprocess import PtyProcess

from epollshim.tools.containerd import PrivateContainerd, mounts_under
from epollshim.tools.ttrpc_client import ShimConnection as ShimConnection  # re-exported
from epollshim.tools.wait import until

EPOLL = "io.containerd.epollshim.v2"
RUNC = "io.containerd.runc.v2"
EPOLL_BINARY = "containerd-shim-epollshim-v2"
# Both runtimes, epollshim first; the runc-v2 case proves the test itself.
RUNTIMES = [pytest.param(EPOLL, id="epollshim"), pytest.param(RUNC, id="runc-v2")]
DEADLINE = 30.0  # seconds: generous, the machine is shared
POLL = 0.02
TASKS_DIR = "io.containerd.runtime.v2.task"


def poll(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Wait for ``check()`` to return something truthy (returned) with a deadline."""
    return until(what, check, timeout, interval=POLL, error=pytest.fail.Exception)


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def deterministic_bytes(size: int, seed: bytes) -> bytes:
    """``size`` bytes of every value, the same for the same seed (a SHA-256 counter stream)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"


def check(r: subprocess.CompletedProcess[Any], what: str = "") -> subprocess.CompletedProcess[Any]:
    """Assert a ctr call succeeded, showing its output when it did not."""
    assert r.returncode == 0, f"{what or r.args}: rc {r.returncode}\n{r.stderr}\n{r.stdout}"
    return r


# -- tasks ---------------------------------------------------------------------------------


def tasks(ctd: PrivateContainerd) -> dict[str, tuple[int, str]]:
    """``ctr task ls``: id -> (pid, status)."""
    out = check(ctd.ctr("task", "ls", timeout=DEADLINE)).stdout.splitlines()[1:]
    return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) == 3}


def status(ctd: PrivateContainerd, cid: str) -> str | None:
    entry = tasks(ctd).get(cid)
    return entry[1] if entry else None


def wait_status(ctd: PrivateContainerd, cid: str, want: str, timeout: float = DEADLINE) -> int:
    """Poll ``ctr task ls`` until the task has status ``want``; returns its pid."""
    entry = poll(
        f"task {cid} to be {want} (last seen: {tasks(ctd).get(cid)})",
        lambda: (tasks(ctd).get(cid) or (0, ""))[1] == want and tasks(ctd)[cid],
        timeout,
    )
    return int(entry[0])


def containers(ctd: PrivateContainerd) -> list[str]:
    return check(ctd.ctr("containers", "ls", "-q", timeout=DEADLINE)).stdout.split()


def run_detached(ctd: PrivateContainerd, runtime: str, cid: str, *cmd: str, **kw: Any) -> int:
    """``ctr run -d``; returns the init pid once the task is RUNNING."""
    extra: list[str] = list(kw.pop("options", []))
    check(ctd.ctr("run", "-d", "--runtime", runtime, *extra, ctd.image or "", cid, *cmd, **kw))
    return wait_status(ctd, cid, "RUNNING")


@contextlib.contextmanager
def detached(ctd: PrivateContainerd, runtime: str, cid: str, *cmd: str, **kw: Any) -> Iterator[int]:
    """``run_detached`` for a ``with`` block: yields the init pid, then ``remove`` however the
    block ends."""
    init = run_detached(ctd, runtime, cid, *cmd, **kw)
    try:
        yield init
    finally:
        remove(ctd, cid)


def shim_pid_of(task_pid: int) -> int:
    """The shim serving a task: the parent of its init (the shim is a subreaper)."""
    return ppid(task_pid)


def bundle(ctd: PrivateContainerd, cid: str) -> str:
    return os.path.join(ctd.state, TASKS_DIR, ctd.namespace, cid)


def shim_socket(ctd: PrivateContainerd, cid: str) -> str:
    """The shim's ttrpc socket, from the ``address`` file it wrote into the bundle."""
    with open(os.path.join(bundle(ctd, cid), "address")) as f:
        address = f.read().strip()
    if address.startswith("unix://"):
        return address.removeprefix("unix://")
    return "\0" + address  # no scheme: an abstract socket (spec section 2.3)


def shim_pids(ctd: PrivateContainerd) -> list[int]:
    """Shims of our containerd: ``-address <sock>`` or ``-address=<sock>`` in their argv.

    (epollshim's daemon re-executes itself with the ``-flag=value`` spelling; ctr's own
    ``--address`` has two dashes and is not counted.)
    """
    ours = ctd.address
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        argv = cmdline(int(entry))
        nexts = [*argv[1:], ""]
        if any(  # single dash: ctr's own ``--address`` is not a shim
            (a == "-address" and nexts[i] == ours) or a == f"-address={ours}"
            for i, a in enumerate(argv)
        ):
            found.append(int(entry))
    return found


def remove(ctd: PrivateContainerd, cid: str) -> None:
    """Kill (SIGKILL), delete the task and the container; checked."""
    if status(ctd, cid) is not None:
        check(ctd.ctr("task", "delete", "--force", cid, timeout=DEADLINE))
    check(ctd.ctr("containers", "delete", cid, timeout=DEADLINE))


def nothing_left(ctd: PrivateContainerd) -> Iterator[None]:
    """Generator body of an autouse fixture: after the test, nothing of it may remain."""
    yield
    problems = []
    left = tasks(ctd)
    if left:
        problems.append(f"tasks {left}")
    for cid in left:
        ctd.ctr("task", "delete", "--force", cid, timeout=DEADLINE)
    names = containers(ctd)
    if names:
        problems.append(f"containers {names}")
    for cid in names:
        ctd.ctr("containers", "delete", cid, timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while shim_pids(ctd) and time.monotonic() < deadline:
        time.sleep(POLL)
    shims = shim_pids(ctd)
    if shims:
        problems.append(f"shim processes {[(p, cmdline(p)) for p in shims]}")
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    mounts = mounts_under(ctd.base)
    if mounts:
        problems.append(f"mounts {mounts}")
    if problems:
        pytest.fail("left behind: " + "; ".join(problems) + "\n" + ctd.log_tail(20))


# -- ctr events -------------------------------------------------------------------------------


class Event:
    __slots__ = ("data", "namespace", "topic")

    def __init__(self, namespace: str, topic: str, data: dict[str, Any]) -> None:
        self.namespace, self.topic, self.data = namespace, topic, data

    def __repr__(self) -> str:
        return f"{self.topic} {self.data}"


class Events:
    """``ctr events`` in the background, read line by line with deadlines.

    ``start`` returns only once the subscription is live: it labels our namespace with a
    random token and waits for that ``/namespaces/update`` event to come through.
    """

    def __init__(self, ctd: PrivateContainerd) -> None:
        self.ctd = ctd
        self.seen: list[Event] = []
        self._buf = b""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Events:
        argv = ["ctr", "--address", self.ctd.address, "events"]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            self._sync()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _sync(self) -> None:
        """Label the namespace until ``ctr events`` shows it: the subscription is then live.

        (An event published before ctr has subscribed is not shown, hence the repetition.)
        """
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            token = secrets.token_hex(4)
            label = f"epollshim-sync={token}"
            check(self.ctd.ctr("namespaces", "label", self.ctd.namespace, label))
            found = self._find(
                lambda e, t=token: e.topic == "/namespaces/update" and t in json.dumps(e.data),
                1.0,
            )
            if found is not None:
                self.seen.clear()
                return
        pytest.fail(f"ctr events showed no /namespaces/update in {DEADLINE:g} s: {self.seen}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=DEADLINE)
            assert self._proc.stdout is not None
            self._proc.stdout.close()

    def _read_line(self, deadline: float) -> Event | None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    pytest.fail(f"ctr events ended: {self._buf!r}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        # "<date> <time> +0000 UTC <namespace> <topic> <json>"
        text = line.decode(errors="replace")
        if " UTC " not in text:
            return Event("", "", {"raw": text})
        fields = text.split(" UTC ", 1)[1].split(" ", 2)
        if len(fields) < 3:
            return Event("", "", {"raw": text})
        try:
            data = json.loads(fields[2])
        except ValueError:
            data = {"raw": fields[2]}
        return Event(fields[0], fields[1], data)

    def wait_for(self, match: Callable[[Event], bool], timeout: float = DEADLINE) -> Event:
        """The first event of our namespace seen so far (or within ``timeout``) that matches."""
        found = self._find(match, timeout)
        if found is None:
            pytest.fail(f"no matching event within {timeout:g} s; saw {self.seen}")
        return found

    def _find(self, match: Callable[[Event], bool], timeout: float) -> Event | None:
        for event in self.seen:
            if match(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_line(deadline)
            if event is None:
                return None
            if event.namespace == self.ctd.namespace or not event.namespace:
                self.seen.append(event)
                if match(event):
                    return event

    def topics(self, cid: str) -> list[str]:
        """Topics seen so far that concern container ``cid``."""
        return [
            e.topic
            for e in self.seen
            if e.topic.startswith("/tasks/") and e.data.get("container_id") == cid
        ]


# -- terminals --------------------------------------------------------------------------------


class Terminal:
    """A program on a pty of its own, driven as a person would type (ptyprocess)."""

    def __init__(self, argv: list[str], rows: int, cols: int) -> None:
        env = dict(os.environ, TERM="xterm")
        self.proc = PtyProcess.spawn(argv, dimensions=(rows, cols), env=env)
        self.out = b""

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.isalive():
            self.proc.terminate(force=True)
        self.proc.close(force=True)

    def type(self, text: str) -> None:
        self.proc.write(text.encode())

    def expect(self, pattern: bytes, timeout: float = DEADLINE, since: int = 0) -> re.Match[bytes]:
        """Read until ``pattern`` matches the output after offset ``since``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.out, since)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} within {timeout:g} s; terminal showed {self.out!r}")
            if not self._read(left):
                pytest.fail(f"terminal closed before {pattern!r}; it showed {self.out!r}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.proc.fd], [], [], timeout)
        if ready:
            try:
                self.out += self.proc.read(65536)
            except EOFError:
                return False
        return True

    def exit_status(self, timeout: float = DEADLINE) -> int:
        """Drain the output to EOF, then the program's exit status."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"terminal still open after {timeout:g} s; it showed {self.out!r}")
        poll("the terminal program to exit", lambda: not self.proc.isalive(), timeout)
        if self.proc.exitstatus is None:
            pytest.fail(f"killed by signal {self.proc.signalstatus}; showed {self.out!r}")
        return int(self.proc.exitstatus)

    def resize(self, rows: int, cols: int) -> None:
        """Change our terminal's size: the kernel sends SIGWINCH to the program."""
        self.proc.setwinsize(rows, cols)

    def size_after(self, want: tuple[int, int], timeout: float = DEADLINE) -> tuple[int, int]:
        """Type ``stty size`` until the shell reports ``want`` (rows, cols) or time is up.

        Each attempt has a numbered marker so an earlier answer can never be taken for a later
        one; the typed line (echoed back) shows ``$(stty size)`` literally, never digits.
        Between attempts the program gets SIGWINCH again, as when a person drags the window
        once more: ctr only listens for SIGWINCH after its first resize, so one sent earlier
        is lost (a ctr race, not the shim's). An empty answer is a terminal with no size yet:
        ctr sends its first resize only after Start returns, so on a loaded machine the shell
        can ask first (busybox's stty then fails with rows 0); that is asked again too.
        """
        deadline = time.monotonic() + timeout
        seen = (0, 0)
        for n in range(1_000_000):
            mark = len(self.out)
            self.type(f'echo "SZ{n}:$(stty size):"\r')
            m = self.expect(
                rb"SZ%d:(?:(\d+) (\d+))?:" % n, max(1.0, deadline - time.monotonic()), mark
            )
            seen = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, 0)
            if seen == want or time.monotonic() > deadline:
                break
            self.proc.kill(signal.SIGWINCH)
            time.sleep(0.1)  # the poll interval, not a synchronisation
        return seen
