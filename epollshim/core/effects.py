"""Effects: imperative commands the core hands the shell to carry out.

The core never performs them; the shell (and the front end that owns the
process) does, in the order given.
"""

from epollshim.core.record import Record


class WatchPid(Record):
    """Route future exits of this pid to the process (and replay a cached one)."""

    __slots__ = __match_args__ = ("pid",)
    pid: int

    def __init__(self, pid: int) -> None:
        self._set(pid=pid)


class Signal(Record):
    """Deliver a signal to the process (``all``: every process of the container)."""

    __slots__ = __match_args__ = ("signal", "all")
    signal: int
    all: bool

    def __init__(self, signal: int, all: bool) -> None:
        self._set(signal=signal, all=all)


class KillRemaining(Record):
    """The init died sharing the host's PID namespace: ``runc kill --all`` the rest.

    The shell reports ``RemainingKilled`` when runc ends, or with an error once
    ``deadline`` seconds passed first (a hung runc must not hold the exit forever).
    """

    __slots__ = __match_args__ = ("deadline",)
    deadline: float

    def __init__(self, deadline: float) -> None:
        self._set(deadline=deadline)


class StartDrain(Record):
    """Drain the process's output to EOF; report DrainExpired after ``deadline`` seconds."""

    __slots__ = __match_args__ = ("deadline",)
    deadline: float

    def __init__(self, deadline: float) -> None:
        self._set(deadline=deadline)


class RecordExit(Record):
    """Record the exit code (0..255) exactly once: exitStatus, Wait answers, events."""

    __slots__ = __match_args__ = ("code",)
    code: int

    def __init__(self, code: int) -> None:
        self._set(code=code)


class ReportFailure(Record):
    """Tell whoever asked that the runtime failed, with runc's own words."""

    __slots__ = __match_args__ = ("step", "message")
    step: str
    message: str

    def __init__(self, step: str, message: str) -> None:
        self._set(step=step, message=message)


class Warn(Record):
    """Write a warning to the shim's log."""

    __slots__ = __match_args__ = ("message",)
    message: str

    def __init__(self, message: str) -> None:
        self._set(message=message)


Effect = WatchPid | Signal | KillRemaining | StartDrain | RecordExit | ReportFailure | Warn
