"""When the shim cannot run the container: one clear line, one record, nothing left.

Exit codes (``epollshim.v0.shim``): 1 bad input (bundle, config.json, FIFOs,
config file), 2 usage, 3 the runtime failed. Every failure must leave: one
line on stderr and an ``error`` record in ``shim-log.json`` naming the fault
(where the state dir exists and is writable); no container in the private
runc root; no runc or container process; no console socket directory; nobody
holding a file in the state directory; no mount made by the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from epollshim import minijson
from epollshim.bundle import write_bundle

from .conftest import SeedFactory, Workdir
from .supervisor import DEADLINE, Shim

pytestmark = pytest.mark.runc

EXIT_SETUP, EXIT_USAGE, EXIT_RUNTIME = 1, 2, 3


def check_failure(shim: Shim, code: int, *needles: str) -> None:
    assert shim.proc is not None
    assert shim.proc.wait(timeout=DEADLINE) == code, shim.stderr()
    lines = [ln for ln in shim.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("epollshim: error: ")
    errors = [str(r["msg"]) for r in shim.shim_log() if r["level"] == "error"]
    assert errors, "no error record in shim-log.json"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
        assert any(needle in msg for msg in errors), f"{needle!r} not in {errors}"
    assert not (shim.state_dir / "exitStatus").exists()
    shim.assert_nothing_left()


@contextlib.contextmanager
def read_only_bind_mount(path: str) -> Iterator[None]:
    """``path`` is read-only for everyone, root included, until the block ends.

    mount(8): a bind mount of ``path`` onto itself, remounted read-only. It is always
    unmounted; if something still uses it (a shim that did not end), it is detached
    lazily so that no mount outlives the test.
    """
    subprocess.run(["mount", "--bind", path, path], check=True, timeout=DEADLINE)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True, timeout=DEADLINE)
        yield
    finally:
        if subprocess.run(["umount", path], timeout=DEADLINE, check=False).returncode:
            subprocess.run(["umount", "--lazy", path], check=True, timeout=DEADLINE)


def test_command_not_in_container(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["no-such-command", "arg"], terminal=terminal)
    check_failure(shim, EXIT_RUNTIME, "no-such-command", "create")
    assert (shim.state_dir / "log.json").exists()  # runc's own words are kept too


def test_config_json_broken(seed: SeedFactory, terminal: bool) -> None:
    shim = seed(["true"], terminal=terminal, start=False)
    bundle: Path = shim.bundle
    (bundle / "config.json").write_text('{"process": {"args": ["true"],')
    shim.start([str(shim.state_dir), shim.id], cwd=bundle)
    check_failure(shim, EXIT_SETUP, str(bundle / "config.json"), "not valid JSON")


def test_config_json_missing_process(seed: SeedFactory) -> None:
    shim = seed(["true"], start=False)
    bundle: Path = shim.bundle
    config = json.loads((bundle / "config.json").read_text())
    del config["process"]["args"]
    (bundle / "config.json").write_text(json.dumps(config))
    shim.start([str(shim.state_dir), shim.id], cwd=bundle)
    check_failure(shim, EXIT_SETUP, "process.args")


@pytest.mark.parametrize(
    ("size", "needle"),
    [
        ({"width": "x", "height": 24}, "'process.consoleSize.width'"),
        ({"width": 80, "height": -1}, "'process.consoleSize.height'"),
        ({"width": True, "height": 24}, "'process.consoleSize.width'"),
        ({"width": 80, "height": 2.5}, "'process.consoleSize.height'"),
        ({"width": 80, "height": 65536}, "'process.consoleSize.height'"),
        ([80, 24], "'process.consoleSize'"),
    ],
    ids=["width-string", "height-negative", "width-bool", "height-float", "height-big", "list"],
)
def test_config_json_bad_console_size(seed: SeedFactory, size: object, needle: str) -> None:
    """A terminal size runc would misread or refuse is our bad input (exit 1), named."""
    shim = seed(["true"], terminal=True, start=False)
    bundle: Path = shim.bundle
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["consoleSize"] = size
    (bundle / "config.json").write_text(json.dumps(config))
    shim.start([str(shim.state_dir), shim.id], cwd=bundle)
    check_failure(shim, EXIT_SETUP, str(bundle / "config.json"), needle)


def test_config_json_nested_too_deep(seed: SeedFactory) -> None:
    """100,000 nested arrays: a named JSON error at the level past the limit, no RecursionError."""
    shim = seed(["true"], start=False)
    bundle: Path = shim.bundle
    prefix = '{"process": {"args": ["true"]}, "deep": '
    depth = 100_000
    (bundle / "config.json").write_text(prefix + "[" * depth + "]" * depth + "}")
    shim.start([str(shim.state_dir), shim.id], cwd=bundle)
    column = len(prefix) + minijson.MAX_DEPTH  # the first "[" past the limit, counted from 1
    check_failure(
        shim,
        EXIT_SETUP,
        str(bundle / "config.json"),
        f"nested deeper than {minijson.MAX_DEPTH}",
        f"line 1 column {column}",
    )


def test_no_bundle_in_cwd(seed: SeedFactory, workdir: Workdir) -> None:
    """Seed form: cwd is the bundle; a directory without config.json is not one."""
    shim = seed(["true"], start=False)
    empty = workdir.base / "not-a-bundle"
    empty.mkdir()
    shim.start([str(shim.state_dir), shim.id], cwd=empty)
    check_failure(shim, EXIT_SETUP, str(empty / "config.json"), "not found")


@pytest.mark.parametrize("fifo", ["exit", "stdout", "stdin"])
def test_missing_fifo(seed: SeedFactory, fifo: str) -> None:
    shim = seed(["true"], start=False)
    path = shim.state_dir / fifo
    shim.close_fds()
    path.unlink()
    shim.open_supervisor_ends()
    shim.start([str(shim.state_dir), shim.id], cwd=shim.bundle)
    check_failure(shim, EXIT_SETUP, str(path), "not found")


def test_exit_fifo_without_reader(seed: SeedFactory) -> None:
    shim = seed(["true"], start=False)
    os.close(shim.exit_fd)  # the supervisor forgot to open its end first
    shim.exit_fd = -1
    shim.start([str(shim.state_dir), shim.id], cwd=shim.bundle)
    check_failure(shim, EXIT_SETUP, str(shim.state_dir / "exit"), "nobody is reading")


def test_missing_state_dir(seed: SeedFactory, workdir: Workdir) -> None:
    shim = seed(["true"], start=False)
    gone = workdir.base / "no-such-state-dir"
    shim.start([str(gone), shim.id], cwd=shim.bundle)
    assert shim.proc is not None
    assert shim.proc.wait(timeout=DEADLINE) == EXIT_SETUP
    lines = [ln for ln in shim.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(gone) in lines[0], lines
    assert not gone.exists()  # nowhere to write a record, and nothing created
    shim.assert_nothing_left()


@pytest.mark.parametrize(
    "config",
    ["", "log:\n  destination: stderr\n  format: text\n"],
    ids=["log-in-state-dir", "log-to-stderr"],
)
def test_read_only_state_dir(seed: SeedFactory, workdir: Workdir, config: str) -> None:
    """A state dir the shim cannot write: one line naming it; no record is possible there.

    Root ignores file modes, so the dir is made read-only with a read-only bind mount
    of itself (mount(8): a bind mount is made read-only by remounting it). Whether the
    log goes there or not, it is our bad input (1), not runc's failure (3).
    """
    opts: tuple[str, ...] = ()
    if config:
        (workdir.base / "log.yaml").write_text(config)
        opts = ("--config", str(workdir.base / "log.yaml"))
    shim = seed(["true"], start=False)
    state = str(shim.state_dir)
    with read_only_bind_mount(state):
        shim.start([state, shim.id], cwd=shim.bundle, opts=opts)
        assert shim.proc is not None
        assert shim.proc.wait(timeout=DEADLINE) == EXIT_SETUP, shim.stderr()
    assert not os.path.ismount(state)
    lines = [ln for ln in shim.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("epollshim: error: ")
    assert f"{state}: state directory not writable: on a read-only file system" in lines[0]
    assert sorted(os.listdir(state)) == ["control", "exit", "stderr", "stdin", "stdout"]
    shim.assert_nothing_left()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("log:\n  levle: debug\n", "'log.levle'"),
        ("runtime:\n  path: 5\n", "'runtime.path'"),
        ("log:\n  level: loud\n", "'log.level'"),
        ("nonsense: {}\n", "'nonsense'"),
        ("log:\n  destination: relative/path.log\n", "'log.destination'"),
    ],
    ids=["unknown-key", "wrong-type", "bad-choice", "unknown-section", "relative-log-path"],
)
def test_bad_config_file(seed: SeedFactory, workdir: Workdir, text: str, needle: str) -> None:
    config = workdir.base / "bad.yaml"
    config.write_text(text)
    shim = seed(["true"], opts=("--config", str(config)))
    check_failure(shim, EXIT_SETUP, str(config), needle)


def test_log_destination_cannot_be_opened(seed: SeedFactory, workdir: Workdir) -> None:
    """An absolute log.destination in a missing dir: named; the record goes to the state dir."""
    config = workdir.base / "log.yaml"
    gone = workdir.base / "no-such-dir" / "shim.log"
    config.write_text(f"log:\n  destination: {gone}\n")
    shim = seed(["true"], opts=("--config", str(config)))
    check_failure(shim, EXIT_SETUP, f"{gone}: cannot open the shim log: No such file or directory")
    assert not gone.parent.exists()


def test_usage_error(workdir: Workdir) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "epollshim", "only-one-arg"],
        cwd=workdir.base,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE,
        check=False,
    )
    assert r.returncode == EXIT_USAGE
    assert r.stderr.startswith("epollshim: usage:")


def test_form_a_missing_bundle(workdir: Workdir) -> None:
    """0.2.x form: a BUNDLE argument that does not exist."""
    procdir = workdir.base / "proc"
    procdir.mkdir()
    os.mkfifo(procdir / "exit")
    os.mkfifo(procdir / "control")
    bundle = write_bundle(workdir.base / "b", ["true"])
    process = json.loads((bundle / "config.json").read_text())["process"]
    (procdir / "process.json").write_text(json.dumps({**process, "exec": False}))
    shim = Shim(
        state_dir=procdir,
        runc_root=workdir.runc_root,
        tmpdir=workdir.tmpdir,
        id=workdir.new_id(),
        stdio={},
    )
    shim.open_supervisor_ends(stdin=False)
    try:
        gone = workdir.base / "gone"
        shim.start([shim.id, str(gone), "runc"], cwd=procdir)
        check_failure(shim, EXIT_SETUP, str(gone / "config.json"), "not found")
    finally:
        shim.cleanup()
