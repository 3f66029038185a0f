"""The per-process state machine: the transition table is data.

Rule 1: every state change goes through ``Process._transition``, which assigns
the state and hands one frozen ``Transition`` to each observer (the
``--trace-states`` printer, the flight recorder). Nothing else writes ``state``.

Rule 2: each (state, event type) pair is exactly one of
  * a row of ``TABLE`` (the next state, or a ``Choice`` between two by a fixed
    property of the process; the effects come from ``_effects``),
  * a member of ``NO_OPS`` (legal, nothing happens, nothing is traced), or
  * an error: ``InvalidTransition`` is raised and the state is unchanged.
``tests/core`` enumerates all three.
"""

import collections
from collections.abc import Callable

from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.exitcode import from_wait_status
from epollshim.core.record import Record
from epollshim.core.states import State

S = State


class Choice(Record):
    """A row with two targets: ``then`` when the process's ``guard`` attribute is true.

    Guards are fixed when the process is made (``kills_remaining``), so a choice is
    as predictable as a plain row; the diagram draws both arrows with their guard.
    """

    __slots__ = __match_args__ = ("guard", "then", "otherwise")
    guard: str
    then: State
    otherwise: State

    def __init__(self, guard: str, then: State, otherwise: State) -> None:
        self._set(guard=guard, then=then, otherwise=otherwise)

    def targets(self) -> tuple[State, State]:
        return (self.then, self.otherwise)


TABLE: dict[tuple[State, type[ev.Event]], State | Choice] = {
    (S.STARTING, ev.PidKnown): S.RUNNING,
    (S.STARTING, ev.RuntimeFailed): S.CLEANUP,
    # An init sharing the host's PID namespace: its other processes are killed (and that
    # kill finished) before the exit is recorded, so Wait never sees them alive.
    (S.RUNNING, ev.ProcessExited): Choice("kills_remaining", S.KILLING, S.REAPING),
    (S.RUNNING, ev.KillRequested): S.RUNNING,
    # e.g. `runc start` failed after `runc create` made the process: kill it,
    # then it is reaped like any other exit.
    (S.RUNNING, ev.RuntimeFailed): S.RUNNING,
    (S.KILLING, ev.RemainingKilled): S.REAPING,
    # e.g. `runc start` reports failure after the process already died.
    (S.KILLING, ev.RuntimeFailed): S.KILLING,
    (S.REAPING, ev.RuntimeFailed): S.REAPING,
    (S.REAPING, ev.OutputDrained): S.CLEANUP,
    (S.REAPING, ev.DrainExpired): S.CLEANUP,
}

NO_OPS: frozenset[tuple[State, type[ev.Event]]] = frozenset(
    {
        # Output may reach EOF before the process exits (it closed stdout);
        # the shell re-checks when REAPING starts.
        (S.RUNNING, ev.OutputDrained),
        (S.KILLING, ev.OutputDrained),
        # A signal for a process that is gone: the front end answers NOT_FOUND.
        (S.KILLING, ev.KillRequested),
        (S.REAPING, ev.KillRequested),
        (S.CLEANUP, ev.KillRequested),
        # Late facts about a finished process.
        (S.CLEANUP, ev.OutputDrained),
        (S.CLEANUP, ev.DrainExpired),
        (S.CLEANUP, ev.RuntimeFailed),
    }
)

SIGKILL = 9


class InvalidTransition(Exception):
    """An event that makes no sense in the current state; the state is unchanged."""

    def __init__(self, name: str, state: State, event: ev.Event) -> None:
        super().__init__(f"{name}: cannot handle {type(event).__name__} in state {state}")
        self.state = state
        self.event = event


class Transition(Record):
    """One state change, as observers see it."""

    __slots__ = __match_args__ = ("name", "pid", "old", "new", "event", "effects", "time")
    name: str
    pid: int | None
    old: State
    new: State
    event: ev.Event
    effects: tuple[fx.Effect, ...]
    time: float

    def __init__(
        self,
        name: str,
        pid: int | None,
        old: State,
        new: State,
        event: ev.Event,
        effects: tuple[fx.Effect, ...],
        time: float,
    ) -> None:
        self._set(name=name, pid=pid, old=old, new=new, event=event, effects=effects, time=time)


Observer = Callable[[Transition], None]


def target(key: tuple[State, type[ev.Event]], process: "Process") -> State:
    """The state ``TABLE[key]`` leads ``process`` to (a ``Choice`` resolved by its guard)."""
    row = TABLE[key]
    if isinstance(row, Choice):
        return row.then if getattr(process, row.guard) else row.otherwise
    return row


class Process:
    """One container process (the init, or an exec) from STARTING to CLEANUP.

    ``kills_remaining``: an init whose container has no private PID namespace; when it
    exits, the rest of the container is killed before the exit is recorded (KILLING).
    """

    def __init__(
        self,
        name: str,
        *,
        init: bool,
        drain_deadline: float,
        observers: list[Observer] | None = None,
        kills_remaining: bool = False,
    ) -> None:
        if kills_remaining and not init:
            raise ValueError(f"{name}: only an init kills the remaining processes")
        self.name = name
        self.init = init
        self.kills_remaining = kills_remaining
        self.drain_deadline = drain_deadline
        self.observers: list[Observer] = observers if observers is not None else []
        self.state = State.STARTING
        self.pid: int | None = None
        self.wait_status: int | None = None
        self.exit_code: int | None = None
        self.failure: str | None = None

    def handle(self, event: ev.Event, now: float) -> tuple[fx.Effect, ...]:
        """Feed one event; return the effects for the shell to carry out."""
        key = (self.state, type(event))
        if key in NO_OPS:
            return ()
        if key not in TABLE:
            raise InvalidTransition(self.name, self.state, event)
        new = target(key, self)
        effects = self._effects(event)
        self._transition(new, event, effects, now)
        return effects

    def _effects(self, event: ev.Event) -> tuple[fx.Effect, ...]:
        match event:
            case ev.PidKnown(pid):
                self.pid = pid
                return (fx.WatchPid(pid),)
            case ev.RuntimeFailed(step, message):
                self.failure = f"{step}: {message}"
                if self.state is State.RUNNING:
                    return (fx.ReportFailure(step, message), fx.Signal(SIGKILL, self.init))
                return (fx.ReportFailure(step, message),)
            case ev.ProcessExited(status):
                self.wait_status = status
                if self.kills_remaining:
                    return (fx.KillRemaining(self.drain_deadline),)
                return (fx.StartDrain(self.drain_deadline),)
            case ev.RemainingKilled(error):
                drain = fx.StartDrain(self.drain_deadline)
                if not error:
                    return (drain,)
                return (fx.Warn(f"{self.name}: killing the other processes: {error}"), drain)
            case ev.KillRequested(signal, all_):
                return (fx.Signal(signal, all_),)
            case ev.OutputDrained():
                return (self._record(),)
            case ev.DrainExpired():
                warn = fx.Warn(f"{self.name}: output not drained within {self.drain_deadline}s")
                return (warn, self._record())
        raise AssertionError(f"no effects for {event!r}")  # pragma: no cover

    def _record(self) -> fx.RecordExit:
        assert self.wait_status is not None
        self.exit_code = from_wait_status(self.wait_status)
        return fx.RecordExit(self.exit_code)

    def _transition(
        self, new: State, event: ev.Event, effects: tuple[fx.Effect, ...], now: float
    ) -> None:
        record = Transition(self.name, self.pid, self.state, new, event, effects, now)
        self.state = new
        for observe in self.observers:
            observe(record)


class FlightRecorder:
    """Keeps the last transitions of every process, to dump when something goes wrong."""

    def __init__(self, size: int = 64) -> None:
        self.records: collections.deque[Transition] = collections.deque(maxlen=size)

    def __call__(self, record: Transition) -> None:
        self.records.append(record)
