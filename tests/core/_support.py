"""Shared helpers for the core tests: representative events and legal paths to each state.

A test never assigns ``Process.state``: it drives a process through legal
events (``drive``), so every state a test starts from is one the machine can
really reach.
"""

from dataclasses import dataclass, field

from epollshim.core import events as ev
from epollshim.core.machine import Process, Transition
from epollshim.core.states import State

PID = 4242
EXIT_3 = 3 << 8  # wait status of `exit 3` (Linux: code in bits 8..15)
SIGKILL = 9
DEADLINE = 5.0

# One representative instance per event type; test_matrix asserts that this
# covers events.EVENT_TYPES exactly, so a new event type fails until added here.
REPRESENTATIVE: dict[type[ev.Event], ev.Event] = {
    ev.PidKnown: ev.PidKnown(PID + 1),
    ev.RuntimeFailed: ev.RuntimeFailed("start", "runc said no"),
    ev.ProcessExited: ev.ProcessExited(7 << 8),
    ev.KillRequested: ev.KillRequested(15, all=True),
    ev.OutputDrained: ev.OutputDrained(),
    ev.DrainExpired: ev.DrainExpired(),
}

# Legal event sequences from a fresh process, by the state they end in.
# CLEANUP has three ways in; every one is a distinct starting point for the matrix.
PATHS: dict[str, tuple[State, tuple[ev.Event, ...]]] = {
    "starting": (State.STARTING, ()),
    "running": (State.RUNNING, (ev.PidKnown(PID),)),
    "reaping": (State.REAPING, (ev.PidKnown(PID), ev.ProcessExited(EXIT_3))),
    "cleanup-drained": (
        State.CLEANUP,
        (ev.PidKnown(PID), ev.ProcessExited(EXIT_3), ev.OutputDrained()),
    ),
    "cleanup-expired": (
        State.CLEANUP,
        (ev.PidKnown(PID), ev.ProcessExited(EXIT_3), ev.DrainExpired()),
    ),
    "cleanup-failed": (State.CLEANUP, (ev.RuntimeFailed("create", "no such image"),)),
}


@dataclass
class Recorder:
    """An observer that keeps every transition it is shown."""

    seen: list[Transition] = field(default_factory=list)

    def __call__(self, record: Transition) -> None:
        self.seen.append(record)


def new_process(*, init: bool = True, name: str = "init") -> tuple[Process, Recorder]:
    recorder = Recorder()
    return Process(name, init=init, drain_deadline=DEADLINE, observers=[recorder]), recorder


def drive(process: Process, events: tuple[ev.Event, ...], now: float = 0.0) -> None:
    """Feed legal events one by one (each must be accepted)."""
    for i, event in enumerate(events):
        process.handle(event, now + i)


def process_on(path: str, *, init: bool = True) -> tuple[Process, Recorder]:
    """A process driven along ``PATHS[path]``, with its recorder emptied afterwards."""
    state, events = PATHS[path]
    process, recorder = new_process(init=init)
    drive(process, events)
    assert process.state is state, f"path {path!r} ended in {process.state}, not {state}"
    recorder.seen.clear()
    return process, recorder


def fields(process: Process) -> tuple[object, ...]:
    """Everything an event may change, to compare before and after."""
    return (
        process.state,
        process.pid,
        process.wait_status,
        process.exit_code,
        process.failure,
    )
