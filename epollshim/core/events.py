"""Events: past-tense facts the shell observed, fed to a process machine.

Each is a small immutable record. The shell creates them from what the kernel
told it (a reaped pid, an EOF, a timer); the core never observes IO itself.
"""

from epollshim.core.record import Record


class PidKnown(Record):
    """The runtime command succeeded and wrote this pid."""

    __slots__ = __match_args__ = ("pid",)
    pid: int

    def __init__(self, pid: int) -> None:
        self._set(pid=pid)


class RuntimeFailed(Record):
    """A runtime command for this process failed (create, start, exec, ...)."""

    __slots__ = __match_args__ = ("step", "message")
    step: str
    message: str

    def __init__(self, step: str, message: str) -> None:
        self._set(step=step, message=message)


class ProcessExited(Record):
    """The watched pid was reaped with this raw wait status."""

    __slots__ = __match_args__ = ("status",)
    status: int

    def __init__(self, status: int) -> None:
        self._set(status=status)


class KillRequested(Record):
    """Someone (containerd, the caller) asked to signal the process."""

    __slots__ = __match_args__ = ("signal", "all")
    signal: int
    all: bool

    def __init__(self, signal: int, all: bool = False) -> None:
        self._set(signal=signal, all=all)


class RemainingKilled(Record):
    """``runc kill --all`` for the other processes of the container ended.

    ``error`` is empty when it succeeded, else what went wrong (runc's words, or the
    deadline that passed first).
    """

    __slots__ = __match_args__ = ("error",)
    error: str

    def __init__(self, error: str = "") -> None:
        self._set(error=error)


class OutputDrained(Record):
    """Every output source of the process reached EOF and was flushed."""

    __slots__ = ()


class DrainExpired(Record):
    """The drain deadline armed on entering REAPING passed first."""

    __slots__ = ()


Event = (
    PidKnown
    | RuntimeFailed
    | ProcessExited
    | KillRequested
    | RemainingKilled
    | OutputDrained
    | DrainExpired
)

EVENT_TYPES: tuple[type[Event], ...] = (
    PidKnown,
    RuntimeFailed,
    ProcessExited,
    KillRequested,
    RemainingKilled,
    OutputDrained,
    DrainExpired,
)
