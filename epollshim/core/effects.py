"""Effects: imperative commands the core hands the shell to carry out.

The core never performs them; the shell (and the front end that owns the
process) does, in order.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WatchPid:
    """Route future exits of this pid to the process (and replay a cached one)."""

    pid: int


@dataclass(frozen=True, slots=True)
class Signal:
    """Deliver a signal to the process (``all``: every process of the container)."""

    signal: int
    all: bool


@dataclass(frozen=True, slots=True)
class KillRemaining:
    """The init died: kill whatever else still runs in the container."""


@dataclass(frozen=True, slots=True)
class StartDrain:
    """Drain the process's output to EOF; report DrainExpired after ``deadline`` seconds."""

    deadline: float


@dataclass(frozen=True, slots=True)
class RecordExit:
    """Record the exit code (0..255) exactly once: exitStatus, Wait answers, events."""

    code: int


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """Tell whoever asked that the runtime failed, with runc's own words."""

    step: str
    message: str


@dataclass(frozen=True, slots=True)
class Warn:
    """Write a warning to the shim's log."""

    message: str


Effect = WatchPid | Signal | KillRemaining | StartDrain | RecordExit | ReportFailure | Warn
