"""Every (state, event type) pair is a table row, a legal no-op, or an error: all checked.

Each state is reached through legal events (``_support.PATHS``: CLEANUP by all
three ways in), for an init and for an exec, and then fed one representative
event of every type.
"""

import itertools

import pytest

from epollshim.core import events as ev
from epollshim.core.machine import NO_OPS, TABLE, InvalidTransition
from epollshim.core.states import STATES, State

from ._support import PATHS, REPRESENTATIVE, fields, process_on

NOW = 1000.5


def test_representatives_cover_every_event_type() -> None:
    assert set(REPRESENTATIVE) == set(ev.EVENT_TYPES)
    assert len(ev.EVENT_TYPES) == len(set(ev.EVENT_TYPES))
    for event_type, event in REPRESENTATIVE.items():
        assert type(event) is event_type


def test_paths_reach_every_state() -> None:
    assert {state for state, _ in PATHS.values()} == set(STATES)


def test_table_and_no_ops_are_disjoint() -> None:
    assert set(TABLE).isdisjoint(NO_OPS)


def test_table_and_no_ops_use_only_known_states_and_events() -> None:
    for state, event_type in itertools.chain(TABLE, NO_OPS):
        assert isinstance(state, State)
        assert event_type in ev.EVENT_TYPES
    assert all(isinstance(target, State) for target in TABLE.values())


def test_cleanup_is_terminal_and_starting_is_only_initial() -> None:
    assert [key for key in TABLE if key[0] is State.CLEANUP] == []
    assert [key for key, target in TABLE.items() if target is State.STARTING] == []


def test_every_state_but_cleanup_has_a_way_out() -> None:
    for state in STATES:
        leaves = any(src is state and dst is not state for (src, _), dst in TABLE.items())
        assert leaves == (state is not State.CLEANUP), state


@pytest.mark.parametrize("init", [True, False], ids=["init", "exec"])
@pytest.mark.parametrize("event_type", ev.EVENT_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("path", PATHS)
def test_pair(path: str, event_type: type[ev.Event], init: bool) -> None:
    process, recorder = process_on(path, init=init)
    state = process.state
    key = (state, event_type)
    event = REPRESENTATIVE[event_type]
    before = fields(process)

    if key in TABLE:
        effects = process.handle(event, NOW)
        assert process.state is TABLE[key]
        assert len(recorder.seen) == 1
        (record,) = recorder.seen
        assert record.old is state
        assert record.new is TABLE[key]
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
    """24 pairs: 8 rows, 6 no-ops, 10 errors (update deliberately when the table changes)."""
    pairs = set(itertools.product(STATES, ev.EVENT_TYPES))
    assert len(pairs) == 24
    assert (len(TABLE), len(NO_OPS), len(pairs - set(TABLE) - NO_OPS)) == (8, 6, 10)
