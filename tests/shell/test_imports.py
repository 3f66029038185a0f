"""Memory by construction: a shim imports nothing it does not need.

Measured here (python -I -S, private memory): dataclasses +1.7 MB, typing
+0.7 MB, logging +1.2 MB, yaml +1.2 MB, google.protobuf +3.3 MB, argparse
+0.3 MB. These tests import each shim's entry point in a fresh lean
interpreter, exactly as the shims run, and list what came in.
"""

import subprocess
import sys

import pytest

import epollshim.lean

EXPENSIVE = {
    "dataclasses",
    "typing",
    "logging",
    "yaml",
    "google.protobuf",
    "argparse",
    "asyncio",
    "threading",
    "subprocess",
    "inspect",
    "tempfile",
    "shutil",
}

ENTRY_POINTS = {
    "seed shim": "import epollshim.cli, epollshim.v0.shim, epollshim.config, epollshim.trace",
    "v2 daemon": "import epollshim.v2.daemon",
    "v2 start/delete": "import epollshim.v2.main, epollshim.v2.start, epollshim.v2.delete",
    "conmon monitor": "import epollshim.conmon.main, epollshim.conmon.monitor, "
    "epollshim.conmon.options, epollshim.conmon.exitcmd, epollshim.trace",
}


def imported_by(statement: str) -> set[str]:
    code = (
        f"import sys; sys.path.insert(0, {epollshim.lean.PACKAGE_PARENT!r}); {statement}; "
        "print('\\n'.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


# Measured the same way: socket +1.26 MB (IntEnum constants), signal +0.88, enum +0.85,
# re +1.10, json +1.22 (imports re), array +0.52, ctypes +0.25 over _ctypes, copy +0.15.
# Shims use _socket (epollshim.shell.sock), _signal, epollshim.minijson, _ctypes
# (epollshim.shell.libc) and plain int constants instead.
REPLACED = {"enum", "socket", "signal", "re", "json", "array", "copy", "ctypes"}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_shim_entry_points_import_nothing_expensive(name: str) -> None:
    assert imported_by(ENTRY_POINTS[name]) & (EXPENSIVE | REPLACED) == set()


def test_the_check_can_fail() -> None:
    assert "dataclasses" in imported_by("import dataclasses") & EXPENSIVE


# What only some containers need, imported by the v2 daemon when one does (about 90 KiB
# less private memory in every other shim): a terminal's console code, termios and struct,
# the relay pumps (terminal, file:// and binary:// logs), heapq's Python half (never: the
# loop uses _heapq), the message classes and handlers of calls and events a container may
# never see (Exec, Pids, Stats, OOM, ...). And json's C half (12 KiB), at the first JSON
# read or written: config.json at Create, so not before a shim has a container.
ON_DEMAND = {
    "epollshim.v2.messages_more",
    "epollshim.v2.service_more",
    "termios",
    "struct",
    "_struct",
    "_json",
    "heapq",
    "epollshim.shell.console",
    "epollshim.shell.pump",
}


def test_the_v2_daemon_imports_the_terminal_and_encoder_parts_on_demand() -> None:
    assert imported_by(ENTRY_POINTS["v2 daemon"]) & ON_DEMAND == set()
