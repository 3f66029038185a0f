"""Configuration: the documented file equals the defaults; bad files are named errors.

No runc here. The last tests run a fresh interpreter to check that PyYAML is
imported only when a config file is actually given (it costs ~1.2 MB per shim).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from epollshim import config

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "epollshim.yaml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "epollshim.yaml"
    path.write_text(text)
    return str(path)


def test_documented_file_equals_defaults() -> None:
    assert config.load(str(CONF)) == config.DEFAULTS


def test_no_file_gives_a_copy_of_the_defaults() -> None:
    cfg = config.load(None)
    assert cfg == config.DEFAULTS
    cfg["io"]["buffer_size"] = 1
    assert config.DEFAULTS["io"]["buffer_size"] == 65536


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")) == config.DEFAULTS


def test_override_keeps_the_other_keys(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, "log:\n  level: debug\ndrain:\n  deadline: 2\n"))
    assert cfg["log"] == {**config.DEFAULTS["log"], "level": "debug"}
    assert cfg["drain"]["deadline"] == 2.0
    assert isinstance(cfg["drain"]["deadline"], float)  # an int is fine where a float is
    assert cfg["runtime"] == config.DEFAULTS["runtime"]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("log:\n  levle: debug\n", "'log.levle'", "unknown key"),
        ("logging:\n  level: debug\n", "'logging'", "unknown key"),
        ("io:\n  buffer_size: big\n", "'io.buffer_size'", "must be a int"),
        ("io:\n  buffer_size: true\n", "'io.buffer_size'", "must be a int"),
        ("io:\n  buffer_size: 1.5\n", "'io.buffer_size'", "must be a int"),
        ("io:\n  buffer_size: 0\n", "'io.buffer_size'", "must be positive"),
        ("drain:\n  deadline: -1\n", "'drain.deadline'", "must be positive"),
        ("drain:\n  deadline: soon\n", "'drain.deadline'", "must be a float"),
        ("runtime:\n  path: 5\n", "'runtime.path'", "must be a str"),
        ("runtime:\n  root: null\n", "'runtime.root'", "must be a str"),
        ("log:\n  level: loud\n", "'log.level'", "must be one of debug, info, warn, error"),
        ("log:\n  format: xml\n", "'log.format'", "must be one of json, text"),
        ("log:\n  destination: relative/path.log\n", "'log.destination'", "absolute path"),
        ("log:\n  destination: ''\n", "'log.destination'", "absolute path"),
        ("log: debug\n", "'log'", "must be a mapping"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert key in message
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- a\n- b\n", "expected a mapping of sections, got list"),
        ("log: [unclosed\n", "not valid YAML"),
        ("\tlog: x\n", "not valid YAML"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError, match=words) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(config.ConfigError, match="cannot read config") as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: ")


# -- yaml only when needed ---------------------------------------------------------------

# A dry run of the shim's own entry point: a state dir without an exit FIFO makes it
# fail after parsing options, loading the config and setting up the log (exit 1).
DRY_RUN = """
import os, sys
from epollshim import cli
state = sys.argv[1]
code = cli.shim_main([*sys.argv[2:], state, "dry-run-id"])
assert code == 1, code
print("yaml" in sys.modules)
"""


def dry_run(tmp_path: Path, *opts: str) -> str:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-c", DRY_RUN, str(state), *opts],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        env={**os.environ, "EPOLLSHIM_NO_REEXEC": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert "exit FIFO not found" in r.stderr  # it really went down the shim's path
    return r.stdout.strip()


def test_yaml_not_imported_without_config(tmp_path: Path) -> None:
    assert dry_run(tmp_path) == "False"


def test_yaml_imported_with_config(tmp_path: Path) -> None:
    """The check above can fail: with --config the same path does import yaml."""
    assert dry_run(tmp_path, "--config", str(CONF)) == "True"


def test_lean_shim_finds_yaml_for_a_config(tmp_path: Path) -> None:
    """The re-executed shim (python -I -S) still loads a config file."""
    state = tmp_path / "state"
    state.mkdir()
    bad = write(tmp_path, "log:\n  levle: debug\n")
    r = subprocess.run(
        [sys.executable, "-m", "epollshim", "--config", bad, str(state), "some-id"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"epollshim: error: {bad}: unknown key 'log.levle'"
