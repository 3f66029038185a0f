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
    ev.RemainingKilled: ev.RemainingKilled("runc said no"),
    ev.OutputDrained: ev.OutputDrained(),
    ev.DrainExpired: ev.DrainExpired(),
}

# The three kinds of process the shell makes: the machine's guards are fixed at birth.
KINDS: dict[str, dict[str, bool]] = {
    "exec": {"init": False},
    "init": {"init": True},  # a private PID namespace: the kernel kills the rest
    "init-host-pid": {"init": True, "kills_remaining": True},
}


def paths(kind: str) -> dict[str, tuple[State, tuple[ev.Event, ...]]]:
    """Legal event sequences from a fresh process of ``kind``, by the state they end in.

    CLEANUP has three ways in; every one is a distinct starting point for the matrix.
    KILLING is on the way only for an init sharing the host's PID namespace.
    """
    exited: tuple[ev.Event, ...] = (ev.PidKnown(PID), ev.ProcessExited(EXIT_3))
    found: dict[str, tuple[State, tuple[ev.Event, ...]]] = {
        "starting": (State.STARTING, ()),
        "running": (State.RUNNING, (ev.PidKnown(PID),)),
    }
    if KINDS[kind].get("kills_remaining"):
        found["killing"] = (State.KILLING, exited)
        exited += (ev.RemainingKilled(),)
    found["reaping"] = (State.REAPING, exited)
    found["cleanup-drained"] = (State.CLEANUP, (*exited, ev.OutputDrained()))
    found["cleanup-expired"] = (State.CLEANUP, (*exited, ev.DrainExpired()))
    found["cleanup-failed"] = (State.CLEANUP, (ev.RuntimeFailed("create", "no such image"),))
    return found


# (kind, path) for every path of every kind: the matrix's starting points.
STARTS = [(kind, path) for kind in KINDS for path in paths(kind)]


@dataclass
class Recorder:
    """An observer that keeps every transition it is shown."""

    seen: list[Transition] = field(default_factory=list)

    def __call__(self, record: Transition) -> None:
        self.seen.append(record)


def new_process(
    *, init: bool = True, name: str = "init", kills_remaining: bool = False
) -> tuple[Process, Recorder]:
    recorder = Recorder()
    process = Process(
        name,
        init=init,
        drain_deadline=DEADLINE,
        observers=[recorder],
        kills_remaining=kills_remaining,
    )
    return process, recorder


def drive(process: Process, events: tuple[ev.Event, ...], now: float = 0.0) -> None:
    """Feed legal events one by one (each must be accepted)."""
    for i, event in enumerate(events):
        process.handle(event, now + i)


def process_on(path: str, kind: str = "init") -> tuple[Process, Recorder]:
    """A process of ``kind`` driven along ``paths(kind)[path]``, its recorder emptied."""
    state, events = paths(kind)[path]
    process, recorder = new_process(**KINDS[kind])
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
