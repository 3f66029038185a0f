"""Scripted lifetimes of a process, checked effect by effect."""

import pytest

from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.machine import FlightRecorder, InvalidTransition, Process, Transition
from epollshim.core.states import State

from ._support import DEADLINE, EXIT_3, PID, SIGKILL, new_process

S = State


def test_init_happy_path() -> None:
    process, recorder = new_process(init=True)
    assert (process.state, process.pid) == (S.STARTING, None)

    assert process.handle(ev.PidKnown(PID), 1.0) == (fx.WatchPid(PID),)
    assert (process.state, process.pid) == (S.RUNNING, PID)

    # A private PID namespace (the default): the kernel killed the rest, nothing to wait for.
    assert process.handle(ev.ProcessExited(EXIT_3), 2.0) == (fx.StartDrain(DEADLINE),)
    # No exit code before the output is drained.
    assert (process.state, process.wait_status, process.exit_code) == (S.REAPING, EXIT_3, None)

    assert process.handle(ev.OutputDrained(), 3.0) == (fx.RecordExit(3),)
    assert (process.state, process.exit_code, process.failure) == (S.CLEANUP, 3, None)

    assert [(t.old, t.new, t.time) for t in recorder.seen] == [
        (S.STARTING, S.RUNNING, 1.0),
        (S.RUNNING, S.REAPING, 2.0),
        (S.REAPING, S.CLEANUP, 3.0),
    ]
    # The record of PidKnown already carries the pid it made known.
    assert [t.pid for t in recorder.seen] == [PID, PID, PID]


def test_init_sharing_the_host_pid_namespace_records_after_the_kill() -> None:
    process, recorder = new_process(init=True, kills_remaining=True)
    process.handle(ev.PidKnown(PID), 1.0)
    assert process.handle(ev.ProcessExited(EXIT_3), 2.0) == (fx.KillRemaining(DEADLINE),)
    assert (process.state, process.exit_code) == (S.KILLING, None)
    # Nothing is drained or recorded while runc kill --all runs; a late EOF is ignored.
    assert process.handle(ev.OutputDrained(), 2.5) == ()
    assert process.handle(ev.KillRequested(9, True), 2.6) == ()
    assert process.handle(ev.RemainingKilled(), 3.0) == (fx.StartDrain(DEADLINE),)
    assert process.state is S.REAPING
    assert process.handle(ev.OutputDrained(), 4.0) == (fx.RecordExit(3),)
    assert [(t.old, t.new, type(t.event).__name__) for t in recorder.seen] == [
        (S.STARTING, S.RUNNING, "PidKnown"),
        (S.RUNNING, S.KILLING, "ProcessExited"),
        (S.KILLING, S.REAPING, "RemainingKilled"),
        (S.REAPING, S.CLEANUP, "OutputDrained"),
    ]


def test_a_failed_kill_of_the_rest_is_logged_and_the_exit_still_recorded() -> None:
    process, _ = new_process(init=True, kills_remaining=True)
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(SIGKILL), 1)
    warn, drain = process.handle(ev.RemainingKilled("runc kill --all: cgroup gone"), 2)
    assert isinstance(warn, fx.Warn) and "cgroup gone" in warn.message
    assert drain == fx.StartDrain(DEADLINE)
    assert process.handle(ev.DrainExpired(), 3)[-1] == fx.RecordExit(137)


def test_runtime_failed_while_killing_reports_and_keeps_killing() -> None:
    process, _ = new_process(init=True, kills_remaining=True)
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(EXIT_3), 1)
    assert process.handle(ev.RuntimeFailed("start", "late"), 2) == (
        fx.ReportFailure("start", "late"),
    )
    assert process.state is S.KILLING
    with pytest.raises(InvalidTransition, match="DrainExpired in state KILLING"):
        process.handle(ev.DrainExpired(), 3)


def test_only_an_init_can_kill_the_rest() -> None:
    with pytest.raises(ValueError, match="only an init"):
        Process("exec-1", init=False, drain_deadline=DEADLINE, kills_remaining=True)


def test_exec_exit_kills_nothing_else() -> None:
    process, _ = new_process(init=False, name="exec-1")
    process.handle(ev.PidKnown(PID), 0)
    assert process.handle(ev.ProcessExited(0), 1) == (fx.StartDrain(DEADLINE),)
    assert process.handle(ev.OutputDrained(), 2) == (fx.RecordExit(0),)


@pytest.mark.parametrize(
    ("status", "code"),
    [(SIGKILL, 137), (15, 143), (11 | 0x80, 139), (64, 192), (0, 0), (255 << 8, 255)],
    ids=["SIGKILL", "SIGTERM", "SIGSEGV+core", "signal-64", "exit-0", "exit-255"],
)
def test_death_maps_to_exit_code(status: int, code: int) -> None:
    process, _ = new_process()
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(status), 1)
    assert process.handle(ev.OutputDrained(), 2) == (fx.RecordExit(code),)
    assert process.wait_status == status


@pytest.mark.parametrize("init", [True, False])
def test_drain_deadline_warns_then_records(init: bool) -> None:
    process, recorder = new_process(init=init, name="web")
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(SIGKILL), 1)
    effects = process.handle(ev.DrainExpired(), 6)
    assert len(effects) == 2
    warn, record = effects
    assert isinstance(warn, fx.Warn)
    assert "web" in warn.message and str(DEADLINE) in warn.message
    assert record == fx.RecordExit(137)
    assert process.state is S.CLEANUP
    assert recorder.seen[-1].effects == effects
    # The output that ends after the deadline changes nothing.
    assert process.handle(ev.OutputDrained(), 7) == ()
    assert len(recorder.seen) == 3


@pytest.mark.parametrize("init", [True, False])
def test_runtime_failed_while_starting_cleans_up_without_exit(init: bool) -> None:
    process, recorder = new_process(init=init)
    effects = process.handle(ev.RuntimeFailed("create", "exec format error"), 1)
    assert effects == (fx.ReportFailure("create", "exec format error"),)
    assert process.state is S.CLEANUP
    assert (process.pid, process.wait_status, process.exit_code) == (None, None, None)
    assert process.failure == "create: exec format error"
    assert [(t.old, t.new, t.pid) for t in recorder.seen] == [(S.STARTING, S.CLEANUP, None)]
    assert not any(isinstance(e, fx.RecordExit) for t in recorder.seen for e in t.effects)


@pytest.mark.parametrize("init", [True, False])
def test_runtime_failed_while_running_kills_then_reaps(init: bool) -> None:
    process, _ = new_process(init=init)
    process.handle(ev.PidKnown(PID), 0)
    effects = process.handle(ev.RuntimeFailed("start", "cgroup busy"), 1)
    # The init's failure kills the whole container; an exec's only itself.
    assert effects == (fx.ReportFailure("start", "cgroup busy"), fx.Signal(SIGKILL, init))
    assert process.state is S.RUNNING
    assert process.failure == "start: cgroup busy"
    process.handle(ev.ProcessExited(SIGKILL), 2)
    assert process.handle(ev.OutputDrained(), 3) == (fx.RecordExit(137),)


def test_runtime_failed_after_exit_reports_and_keeps_reaping() -> None:
    process, _ = new_process()
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(EXIT_3), 1)
    assert process.handle(ev.RuntimeFailed("start", "late"), 2) == (
        fx.ReportFailure("start", "late"),
    )
    assert process.state is S.REAPING
    assert process.handle(ev.OutputDrained(), 3) == (fx.RecordExit(3),)


@pytest.mark.parametrize(("signal", "all_"), [(15, False), (9, True), (1, False), (64, True)])
def test_kill_requested_forwards_the_signal(signal: int, all_: bool) -> None:
    process, recorder = new_process()
    process.handle(ev.PidKnown(PID), 0)
    assert process.handle(ev.KillRequested(signal, all_), 1) == (fx.Signal(signal, all_),)
    assert process.state is S.RUNNING
    assert [(t.old, t.new) for t in recorder.seen[1:]] == [(S.RUNNING, S.RUNNING)]


def test_kill_requested_defaults_to_the_process_only() -> None:
    process, _ = new_process()
    process.handle(ev.PidKnown(PID), 0)
    assert process.handle(ev.KillRequested(2), 1) == (fx.Signal(2, False),)


def test_kill_before_pid_is_an_error() -> None:
    process, recorder = new_process()
    with pytest.raises(InvalidTransition, match="KillRequested in state STARTING"):
        process.handle(ev.KillRequested(15), 0)
    assert process.state is S.STARTING and recorder.seen == []


def test_kill_after_exit_is_a_silent_no_op() -> None:
    process, recorder = new_process()
    process.handle(ev.PidKnown(PID), 0)
    process.handle(ev.ProcessExited(0), 1)
    assert process.handle(ev.KillRequested(9, True), 2) == ()
    process.handle(ev.OutputDrained(), 3)
    assert process.handle(ev.KillRequested(9, True), 4) == ()
    assert len(recorder.seen) == 3


def test_output_eof_before_exit_is_ignored_and_needed_again() -> None:
    process, recorder = new_process()
    process.handle(ev.PidKnown(PID), 0)
    assert process.handle(ev.OutputDrained(), 1) == ()
    process.handle(ev.ProcessExited(EXIT_3), 2)
    assert process.state is S.REAPING  # the shell re-checks EOF; the machine waits
    assert process.handle(ev.OutputDrained(), 3) == (fx.RecordExit(3),)
    assert len(recorder.seen) == 3


def test_second_pid_and_second_exit_are_errors() -> None:
    process, _ = new_process()
    process.handle(ev.PidKnown(PID), 0)
    with pytest.raises(InvalidTransition, match="PidKnown in state RUNNING"):
        process.handle(ev.PidKnown(PID + 1), 1)
    assert process.pid == PID
    process.handle(ev.ProcessExited(EXIT_3), 2)
    with pytest.raises(InvalidTransition, match="ProcessExited in state REAPING"):
        process.handle(ev.ProcessExited(SIGKILL), 3)
    assert process.wait_status == EXIT_3
    process.handle(ev.OutputDrained(), 4)
    with pytest.raises(InvalidTransition, match="ProcessExited in state CLEANUP"):
        process.handle(ev.ProcessExited(SIGKILL), 5)
    assert process.exit_code == 3


def test_every_observer_sees_the_same_record_in_order() -> None:
    calls: list[tuple[str, Transition]] = []
    process = Process(
        "init",
        init=True,
        drain_deadline=DEADLINE,
        observers=[lambda t: calls.append(("a", t)), lambda t: calls.append(("b", t))],
    )
    process.handle(ev.PidKnown(PID), 0)
    assert [who for who, _ in calls] == ["a", "b"]
    assert calls[0][1] is calls[1][1]


def test_transition_records_are_frozen() -> None:
    process, recorder = new_process()
    process.handle(ev.PidKnown(PID), 0)
    with pytest.raises(AttributeError):
        recorder.seen[0].new = S.CLEANUP


def _lifetime(process: Process, start: float) -> None:
    process.handle(ev.PidKnown(PID), start)
    process.handle(ev.KillRequested(15), start + 1)
    process.handle(ev.ProcessExited(15), start + 2)
    process.handle(ev.OutputDrained(), start + 3)


def test_flight_recorder_keeps_only_the_last_n() -> None:
    flight = FlightRecorder(size=3)
    process = Process("init", init=True, drain_deadline=DEADLINE, observers=[flight])
    _lifetime(process, 10.0)
    assert [(t.old, t.new, t.time) for t in flight.records] == [
        (S.RUNNING, S.RUNNING, 11.0),
        (S.RUNNING, S.REAPING, 12.0),
        (S.REAPING, S.CLEANUP, 13.0),
    ]
    # No-ops are not transitions: they do not push older records out.
    process.handle(ev.KillRequested(9), 14.0)
    assert [t.time for t in flight.records] == [11.0, 12.0, 13.0]


def test_flight_recorder_is_shared_by_processes_and_defaults_to_64() -> None:
    flight = FlightRecorder()
    assert flight.records.maxlen == 64
    for i in range(20):
        _lifetime(Process(f"exec-{i}", init=False, drain_deadline=1.0, observers=[flight]), i)
    assert len(flight.records) == 64  # 20 lifetimes x 4 transitions, the last 64 kept
    assert flight.records[-1].name == "exec-19"
    assert flight.records[0].name == "exec-4"
    assert [t.name for t in flight.records][:4] == ["exec-4"] * 4
