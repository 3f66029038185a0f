"""Seed form, a container in the host's PID namespace: exitStatus only after the rest died.

The init of a container without a private PID namespace leaves its children running when
it dies; the shim runs ``runc kill --all ID KILL`` and writes ``exitStatus`` only once that
ended (the KILLING state, shown by ``--trace-states``). The test watches the state dir
with inotify, so it looks at the child the moment ``exitStatus`` appears, before the
shim's own ``runc delete`` (which kills such a container's processes too) can hide a
difference.
"""

from __future__ import annotations

import json
import os
import select
import signal
from pathlib import Path

from epollshim.shell.libc import inotify
from epollshim.tools.procfs import children_of, dead_or_dying

from .conftest import SeedFactory
from .supervisor import DEADLINE, Timeout, wait_for

ROUNDS = 20
IN_MOVED_TO = 0x80  # inotify(7): the shim renames .exitStatus.tmp to exitStatus


def share_host_pid_namespace(bundle: Path) -> None:
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    namespaces = config["linux"]["namespaces"]
    config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]
    path.write_text(json.dumps(config))


def wait_exit_status(state_dir: Path, watch: int) -> None:
    """Block on inotify until ``exitStatus`` exists (bounded)."""
    while not (state_dir / "exitStatus").exists():
        ready, _, _ = select.select([watch], [], [], DEADLINE)
        if not ready:
            raise Timeout(f"no exitStatus in {state_dir} within {DEADLINE} s")
        os.read(watch, 65536)


def test_exit_status_is_written_after_the_rest_was_killed(
    seed: SeedFactory, terminal: bool
) -> None:
    alive_at_exit_status = []
    for n in range(ROUNDS):
        shim = seed(["sh", "-c", "sleep 1000 & wait"], terminal=terminal, start=False, name=f"c{n}")
        share_host_pid_namespace(shim.bundle)
        watch = inotify(str(shim.state_dir), IN_MOVED_TO)
        try:
            opts = ("--trace-states=json",)
            shim.start([str(shim.state_dir), shim.id], cwd=shim.bundle, opts=opts)
            init = shim.pid()
            (child,) = wait_for(lambda init=init: children_of(init), f"the child of {init}")
            shim.container_pids.append(child)
            os.kill(init, signal.SIGKILL)  # only the init: the child is the shim's to kill
            wait_exit_status(shim.state_dir, watch)
            if not dead_or_dying(child):
                alive_at_exit_status.append((n, child))
        finally:
            os.close(watch)
        assert shim.wait_exit() == 0
        assert shim.exit_status() == 137
        shim.assert_nothing_left()
        records = [json.loads(ln) for ln in shim.stderr().splitlines() if ln.startswith("{")]
        assert [(r["from"], r["to"], r["event"]) for r in records] == [
            ("STARTING", "RUNNING", "PidKnown"),
            ("RUNNING", "KILLING", "ProcessExited"),
            ("KILLING", "REAPING", "RemainingKilled"),
            ("REAPING", "CLEANUP", "OutputDrained"),
        ]
    assert alive_at_exit_status == [], f"alive when exitStatus appeared: {alive_at_exit_status}"
