"""Hypothesis: invariants of Process under arbitrary event sequences, and ExitRouter vs a model.

Derandomized and without an example database, so a run is the same every time
and leaves no files behind.
"""

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.exitcode import from_wait_status
from epollshim.core.exits import ExitRouter
from epollshim.core.machine import NO_OPS, TABLE, InvalidTransition, Process, target
from epollshim.core.states import State

from ._support import Recorder, fields

SETTINGS = settings(max_examples=400, derandomize=True, database=None, deadline=None)

pids = st.integers(min_value=1, max_value=2**22)  # Linux pid_max is at most 2**22
signals = st.integers(min_value=1, max_value=64)
wait_statuses = st.one_of(
    st.integers(min_value=0, max_value=255).map(lambda code: code << 8),  # exited
    signals,  # killed
    signals.map(lambda sig: sig | 0x80),  # killed, core dumped
)
# One strategy per event type, every field arbitrary within what the shell can report.
EVENT_STRATEGIES: dict[type[ev.Event], st.SearchStrategy[ev.Event]] = {
    ev.PidKnown: st.builds(ev.PidKnown, pids),
    ev.RuntimeFailed: st.builds(
        ev.RuntimeFailed, st.sampled_from(["create", "start", "exec"]) | st.text(), st.text()
    ),
    ev.ProcessExited: st.builds(ev.ProcessExited, wait_statuses),
    ev.KillRequested: st.builds(ev.KillRequested, signals, st.booleans()),
    ev.RemainingKilled: st.builds(ev.RemainingKilled, st.text()),
    ev.OutputDrained: st.just(ev.OutputDrained()),
    ev.DrainExpired: st.just(ev.DrainExpired()),
}
event_strategy = st.one_of(*EVENT_STRATEGIES.values())


def test_strategies_cover_every_event_type() -> None:
    """If EVENT_TYPES grows, the property below must learn the new type."""
    assert set(EVENT_STRATEGIES) == set(ev.EVENT_TYPES)


@SETTINGS
@given(
    events=st.lists(event_strategy, max_size=40),
    kind=st.sampled_from(["exec", "init", "init-host-pid"]),
    deadline=st.floats(min_value=0.001, max_value=60),
)
def test_process_invariants(events: list[ev.Event], kind: str, deadline: float) -> None:
    recorder = Recorder()
    init, kills = kind != "exec", kind == "init-host-pid"
    process = Process(
        "p", init=init, drain_deadline=deadline, observers=[recorder], kills_remaining=kills
    )
    reached_cleanup = False
    record_exits: list[fx.RecordExit] = []
    drains: list[ev.Event] = []
    accepted_status: int | None = None
    remaining_killed = False

    for now, event in enumerate(events):
        before = fields(process)
        old = process.state
        key = (old, type(event))
        seen = len(recorder.seen)
        try:
            effects = process.handle(event, float(now))
        except InvalidTransition as error:
            assert key not in TABLE and key not in NO_OPS
            assert error.state is old and error.event is event
            assert fields(process) == before
            assert len(recorder.seen) == seen
            continue

        if key in NO_OPS:
            assert effects == () and fields(process) == before and len(recorder.seen) == seen
        else:
            assert process.state is target(key, process)
            assert len(recorder.seen) == seen + 1
            record = recorder.seen[-1]
            assert (record.old, record.new, record.event) == (old, process.state, event)
            assert record.effects == effects and record.time == float(now)

        if isinstance(event, ev.ProcessExited) and old is State.RUNNING:
            accepted_status = event.status
        if isinstance(event, ev.RemainingKilled) and old is State.KILLING:
            remaining_killed = True
        for effect in effects:
            if isinstance(effect, fx.StartDrain):
                drains.append(event)
                # the output is drained only once whatever else ran is dead
                assert remaining_killed == kills
            if isinstance(effect, fx.RecordExit):
                assert (old, process.state) == (State.REAPING, State.CLEANUP)
                assert remaining_killed == kills
                assert 0 <= effect.code <= 255
                assert accepted_status is not None
                assert effect.code == from_wait_status(accepted_status) == process.exit_code
                record_exits.append(effect)
            if isinstance(effect, fx.KillRemaining):
                assert kills and isinstance(event, ev.ProcessExited)
                assert process.state is State.KILLING
            if isinstance(effect, fx.WatchPid):
                assert isinstance(event, ev.PidKnown) and effect.pid == process.pid

        if reached_cleanup:
            assert process.state is State.CLEANUP, "CLEANUP was left"
        reached_cleanup = process.state is State.CLEANUP

    assert len(record_exits) <= 1
    assert len(drains) <= 1
    assert (process.exit_code is not None) == bool(record_exits)
    previous = State.STARTING
    for record in recorder.seen:
        assert record.old is previous
        previous = record.new
    assert previous is process.state


@dataclass
class _Op:
    kind: str  # "exit" (kept), "dropped", "served" (watched or replayed), "idle"
    pid: int = 0
    status: int = 0


class RouterVsModel(RuleBasedStateMachine):
    """ExitRouter against a model that answers from the whole history instead of caches.

    Model rules: a reaped pid goes to its latest watcher if one is registered
    and has not been served. Otherwise the exit is "early" if some process was
    starting when it came; ``watch`` replays the latest early exit of the pid
    unless every starting process settled since ("idle") or it was replayed already.
    """

    def __init__(self) -> None:
        super().__init__()
        self.router = ExitRouter()
        self.history: list[_Op] = []
        self.watchers: dict[int, str] = {}
        self.starting = 0

    def _model_watch(self, pid: int) -> int | None:
        for op in reversed(self.history):
            if op.kind == "idle" or (op.kind in ("served", "dropped") and op.pid == pid):
                return None
            if op.kind == "exit" and op.pid == pid:
                return op.status
        return None

    @rule()
    def expect(self) -> None:
        self.router.expect()
        self.starting += 1

    @rule()
    def settle(self) -> None:
        self.router.settle()
        self.starting = max(0, self.starting - 1)
        if self.starting == 0:
            self.history.append(_Op("idle"))

    @rule(pid=st.integers(1, 5), key=st.sampled_from(["a", "b", "c"]))
    def watch(self, pid: int, key: str) -> None:
        expected = self._model_watch(pid)
        assert self.router.watch(pid, key) == expected
        self.history.append(_Op("served", pid))
        if expected is None:
            self.watchers[pid] = key

    @rule(pid=st.integers(1, 5), status=wait_statuses)
    def exited(self, pid: int, status: int) -> None:
        expected = self.watchers.pop(pid, None)
        assert self.router.exited(pid, status) == expected
        if expected is not None:
            self.history.append(_Op("served", pid))
        elif self.starting:
            self.history.append(_Op("exit", pid, status))
        else:  # an orphan while nothing starts
            self.history.append(_Op("dropped", pid))

    @precondition(lambda self: self.starting == 0)
    @invariant()
    def nothing_cached_while_idle(self) -> None:
        assert self.router.early == {}

    @invariant()
    def cache_stays_small(self) -> None:
        assert set(self.router.early) <= set(range(1, 6))
        assert self.router.starting == self.starting


TestRouterVsModel = RouterVsModel.TestCase
TestRouterVsModel.settings = settings(
    max_examples=150, stateful_step_count=30, derandomize=True, database=None, deadline=None
)
