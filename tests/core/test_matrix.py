"""Every (state, event type) pair is a table row, a legal no-op, or an error: all checked.

Each state is reached through legal events (``_support.paths``: CLEANUP by all
three ways in), for each kind of process (an exec, an init in its own PID namespace,
an init sharing the host's), and then fed one representative event of every type.
"""

import itertools

import pytest

from epollshim.core import events as ev
from epollshim.core.machine import NO_OPS, TABLE, Choice, InvalidTransition, target
from epollshim.core.states import STATES, State

from ._support import KINDS, REPRESENTATIVE, STARTS, fields, paths, process_on

NOW = 1000.5


def test_representatives_cover_every_event_type() -> None:
    assert set(REPRESENTATIVE) == set(ev.EVENT_TYPES)
    assert len(ev.EVENT_TYPES) == len(set(ev.EVENT_TYPES))
    for event_type, event in REPRESENTATIVE.items():
        assert type(event) is event_type


def test_paths_reach_every_state() -> None:
    reached = {state for kind in KINDS for state, _ in paths(kind).values()}
    assert reached == set(STATES)


def _targets(row: State | Choice) -> tuple[State, ...]:
    return row.targets() if isinstance(row, Choice) else (row,)


def test_table_and_no_ops_are_disjoint() -> None:
    assert set(TABLE).isdisjoint(NO_OPS)


def test_table_and_no_ops_use_only_known_states_and_events() -> None:
    for state, event_type in itertools.chain(TABLE, NO_OPS):
        assert isinstance(state, State)
        assert event_type in ev.EVENT_TYPES
    for row in TABLE.values():
        assert all(isinstance(state, State) for state in _targets(row))


def test_cleanup_is_terminal_and_starting_is_only_initial() -> None:
    assert [key for key in TABLE if key[0] is State.CLEANUP] == []
    assert [key for key, row in TABLE.items() if State.STARTING in _targets(row)] == []


def test_every_state_but_cleanup_has_a_way_out() -> None:
    for state in STATES:
        leaves = any(
            src is state and any(dst is not state for dst in _targets(row))
            for (src, _), row in TABLE.items()
        )
        assert leaves == (state is not State.CLEANUP), state


def test_only_an_init_sharing_the_host_pid_namespace_passes_killing() -> None:
    for kind in KINDS:
        process, _ = process_on("running", kind)
        assert target((State.RUNNING, ev.ProcessExited), process) is (
            State.KILLING if kind == "init-host-pid" else State.REAPING
        )


@pytest.mark.parametrize("event_type", ev.EVENT_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize(("kind", "path"), STARTS, ids=[f"{k}-{p}" for k, p in STARTS])
def test_pair(kind: str, path: str, event_type: type[ev.Event]) -> None:
    process, recorder = process_on(path, kind)
    state = process.state
    key = (state, event_type)
    event = REPRESENTATIVE[event_type]
    before = fields(process)

    if key in TABLE:
        expected = target(key, process)
        effects = process.handle(event, NOW)
        assert process.state is expected
        assert len(recorder.seen) == 1
        (record,) = recorder.seen
        assert record.old is state
        assert record.new is expected
        assert record.event is event
        assert record.effects == effects
        assert record.time == NOW
        assert record.name == process.name
        assert record.pid == process.pid
    elif key in NO_OPS:
        assert process.handle(event, NOW) == ()
        assert fields(process) == before
        assert recorder.seen == []
    else:
        with pytest.raises(InvalidTransition) as caught:
            process.handle(event, NOW)
        assert caught.value.state is state
        assert caught.value.event is event
        assert f"cannot handle {event_type.__name__} in state {state}" in str(caught.value)
        assert fields(process) == before
        assert recorder.seen == []


def test_matrix_size() -> None:
    """35 pairs: 10 rows, 8 no-ops, 17 errors (update deliberately when the table changes)."""
    pairs = set(itertools.product(STATES, ev.EVENT_TYPES))
    assert len(pairs) == 35
    assert (len(TABLE), len(NO_OPS), len(pairs - set(TABLE) - NO_OPS)) == (10, 8, 17)
