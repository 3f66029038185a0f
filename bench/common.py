"""Shared pieces of the benchmark: /proc readers, results, the run context.

Rules of this package:

* Every figure is a ``Cell``: a number, or the reason there is none (``n/a (error: ...)``). A
  scenario that fails records the error and the run goes on; ``make bench`` always completes.
* We end only what we started, by pid (or by container id in our own namespace / runc root).
* Subjects run alternately (round-robin within each scenario), so slow drift of a shared
  machine hits all of them alike; every table figure is a median.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from epollshim.tools.wait import until

T = TypeVar("T")

CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30
MB = 1_000_000

# The subjects (columns of the comparison).
RUNC_V2 = "runc-v2"
RUNC_V2_GROUPED = "runc-v2 grouped"
EPOLL_V2 = "epollshim-v2"
EPOLL_V2_GROUPED = "epollshim-v2 grouped"
SEED = "epollshim seed"
CONMON = "conmon"

RUNTIMES = {
    RUNC_V2: "io.containerd.runc.v2",
    RUNC_V2_GROUPED: "io.containerd.runc.v2",
    EPOLL_V2: "io.containerd.epollshim.v2",
    EPOLL_V2_GROUPED: "io.containerd.epollshim.v2",
}
SANDBOX_ANNOTATION = "io.kubernetes.cri.sandbox-id"


class BenchError(Exception):
    """A scenario could not be measured for one subject; the message goes into the table."""


class Cell:
    """A measured value (with its samples) or the reason it is missing."""

    __slots__ = ("error", "samples", "value")

    def __init__(
        self, value: float | None = None, samples: Iterable[float] = (), error: str = ""
    ) -> None:
        self.value = value
        self.samples = list(samples)
        self.error = error

    @classmethod
    def of(cls, samples: Iterable[float]) -> Cell:
        s = list(samples)
        return cls(statistics.median(s), s) if s else cls(error="no samples")

    @classmethod
    def failed(cls, e: BaseException | str) -> Cell:
        text = " ".join(str(e).split()) or type(e).__name__
        if len(text) > 130:  # keep the head (what failed) and the tail (why)
            text = text[:55] + " ... " + text[-70:]
        return cls(error=text)

    @property
    def ok(self) -> bool:
        return self.value is not None

    def __repr__(self) -> str:
        return f"Cell({self.value!r})" if self.ok else f"Cell(error={self.error!r})"


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(5)}"


# -- /proc ---------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (RssAnon, VmRSS...)."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


def pss_kb(pid: int) -> int:
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise BenchError(f"no Pss in /proc/{pid}/smaps_rollup")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def context_switches(pid: int) -> int:
    """voluntary + involuntary context switches summed over all threads of PID."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = _read(f"/proc/{pid}/task/{tid}/status")
        except OSError:  # the thread ended while we looked
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def ppid_comm(pid: int) -> tuple[int, str]:
    stat = _read(f"/proc/{pid}/stat")
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    return int(stat[stat.rindex(")") + 2 :].split()[1]), comm


def cmdline(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def children_named(parent: int, comm: str) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            ppid, name = ppid_comm(pid)
        except OSError:
            continue
        if ppid == parent and name == comm:
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        ppid_comm(pid)
    except OSError:
        return False
    return _read(f"/proc/{pid}/stat").split(")")[-1].split()[0] != "Z"


# -- waiting and killing ---------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, poll: float = 0.01) -> T:
    return until(what, probe, timeout, interval=poll, error=BenchError)


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def run(argv: list[str], timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("capture_output", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, timeout=timeout, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


class LoadWatch:
    """The 1-min load average, sampled every ``every`` seconds in a thread for the notes: on a
    shared machine it says how much other work ran beside the bench (ours counts too)."""

    def __init__(self, every: float = 5.0) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []  # (monotonic time, load)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), os.getloadavg()[0]))
            if self._stop.wait(self._every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> list[float]:
        return [load for t, load in self.samples if t0 <= t <= t1]
