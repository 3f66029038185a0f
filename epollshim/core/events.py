"""Events: past-tense facts the shell observed, fed to a process machine.

Each is a small frozen record. The shell creates them from what the kernel
told it (a reaped pid, an EOF, a timer); the core never creates IO facts.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PidKnown:
    """The runtime command succeeded and wrote this pid."""

    pid: int


@dataclass(frozen=True, slots=True)
class RuntimeFailed:
    """A runtime command for this process failed (create, start, exec, ...)."""

    step: str
    message: str


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """The watched pid was reaped with this raw wait status."""

    status: int


@dataclass(frozen=True, slots=True)
class KillRequested:
    """Someone (containerd, the caller) asked to signal the process."""

    signal: int
    all: bool = False


@dataclass(frozen=True, slots=True)
class OutputDrained:
    """Every output source of the process reached EOF and was flushed."""


@dataclass(frozen=True, slots=True)
class DrainExpired:
    """The drain deadline armed on entering REAPING passed first."""


Event = PidKnown | RuntimeFailed | ProcessExited | KillRequested | OutputDrained | DrainExpired

EVENT_TYPES: tuple[type[Event], ...] = (
    PidKnown,
    RuntimeFailed,
    ProcessExited,
    KillRequested,
    OutputDrained,
    DrainExpired,
)
