"""``python -m epollshim.core.diagram``: every row, every no-op, nothing else."""

import runpy

import pytest

import epollshim.core.diagram
from epollshim.core.diagram import mermaid
from epollshim.core.machine import NO_OPS, TABLE, Choice
from epollshim.core.states import STATES, State


def test_every_row_is_an_arrow() -> None:
    lines = [line.strip() for line in mermaid().splitlines()]
    assert lines[0] == "stateDiagram-v2"
    arrows = [line for line in lines if "-->" in line and "[*]" not in line]
    expected = []
    for (src, event), row in TABLE.items():
        if isinstance(row, Choice):
            expected.append(f"{src} --> {row.then}: {event.__name__} [{row.guard}]")
            expected.append(f"{src} --> {row.otherwise}: {event.__name__} [not {row.guard}]")
        else:
            expected.append(f"{src} --> {row}: {event.__name__}")
    assert sorted(arrows) == sorted(expected)
    assert len(arrows) == len(TABLE) + sum(isinstance(row, Choice) for row in TABLE.values())


def test_start_and_end() -> None:
    lines = [line.strip() for line in mermaid().splitlines()]
    assert f"[*] --> {State.STARTING}" in lines
    assert [line for line in lines if line.endswith("--> [*]")] == [f"{State.CLEANUP} --> [*]"]


def test_every_no_op_is_in_its_state_note() -> None:
    lines = [line.strip() for line in mermaid().splitlines()]
    for state in STATES:
        expected = {event.__name__ for source, event in NO_OPS if source is state}
        header = f"note right of {state}"
        if not expected:
            assert header not in lines
            continue
        body = lines[lines.index(header) + 1]
        assert body.startswith("ignores: ")
        assert set(body.removeprefix("ignores: ").split(", ")) == expected


def test_running_as_a_module_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    # run_path, not run_module: re-running an imported module warns, and warnings are errors.
    runpy.run_path(epollshim.core.diagram.__file__, run_name="__main__")
    assert capsys.readouterr().out == mermaid() + "\n"
