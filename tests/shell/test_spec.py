"""epollshim.v0.spec: the fields the shim acts on are checked for their JSON type.

No runc here: ``load_bundle`` and ``load_process`` read files only. The
integration tests (``tests/integration/test_failures.py``) check that a bad
field ends a real shim with exit 1 and one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epollshim.v0.spec import SetupError, load_bundle, load_process


def bundle_with(tmp_path: Path, process: dict[str, object]) -> str:
    config = {"process": {"args": ["true"], "terminal": True, **process}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


@pytest.mark.parametrize(
    ("size", "want"),
    [
        (None, None),
        ({}, (0, 0)),
        ({"width": 80}, (80, 0)),
        ({"width": None, "height": 24}, (0, 24)),  # Go reads null as "leave it 0"
        ({"width": 0, "height": 65535}, (0, 65535)),
    ],
)
def test_console_size_accepted(tmp_path: Path, size: object, want: object) -> None:
    spec, _ = load_bundle(bundle_with(tmp_path, {"consoleSize": size}))
    assert spec.console_size == want


@pytest.mark.parametrize(
    ("size", "field"),
    [
        ({"width": "x"}, "'process.consoleSize.width'"),
        ({"width": "80"}, "'process.consoleSize.width'"),
        ({"width": True}, "'process.consoleSize.width'"),
        ({"width": False}, "'process.consoleSize.width'"),
        ({"height": 2.0}, "'process.consoleSize.height'"),
        ({"height": -1}, "'process.consoleSize.height'"),
        ({"height": 65536}, "'process.consoleSize.height'"),
        ({"height": [24]}, "'process.consoleSize.height'"),
        ({"width": "x" * 10_000}, "'process.consoleSize.width'"),
        ([80, 24], "'process.consoleSize'"),
        ("80x24", "'process.consoleSize'"),
    ],
)
def test_console_size_refused(tmp_path: Path, size: object, field: str) -> None:
    bundle = bundle_with(tmp_path, {"consoleSize": size})
    with pytest.raises(SetupError) as info:
        load_bundle(bundle)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: {field} must be ")
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("name", ["exec", "noPivotRoot"])
@pytest.mark.parametrize("value", ["false", 0, 1, []])
def test_form_a_flags_must_be_booleans(tmp_path: Path, name: str, value: object) -> None:
    """bool("false") is True: a flag that is not a JSON boolean is refused, not converted."""
    process = {"args": ["true"], name: value}
    (tmp_path / "process.json").write_text(json.dumps(process))
    with pytest.raises(SetupError, match=f"'{name}' must be true or false"):
        load_process(str(tmp_path), str(tmp_path))


def test_form_a_flags_read_as_booleans(tmp_path: Path) -> None:
    process = {"args": ["true"], "exec": True, "noPivotRoot": None}
    (tmp_path / "process.json").write_text(json.dumps(process))
    spec = load_process(str(tmp_path), str(tmp_path))
    assert (spec.exec, spec.no_pivot) == (True, False)


def test_json_error_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "process": tru }')
    with pytest.raises(SetupError, match=r"not valid JSON: Expecting value at line 2 column 14$"):
        load_bundle(str(tmp_path))
