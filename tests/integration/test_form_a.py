"""The 0.2.x form: ``epollshim ID BUNDLE RUNTIME`` in a process dir with process.json.

As containerd 0.2.x lays it out: ``<state>/<id>/init/`` (and ``<state>/<id>/<exec-id>/``)
hold ``process.json``, ``exit`` and ``control``; the client's stdio FIFOs are
elsewhere and named in ``process.json`` (``containerdStdin`` ...). The
supervisor runs ``runc start`` itself once the ``pid`` file appears, unless
``EPOLLSHIM_START=1`` asks the shim to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from epollshim.bundle import write_bundle

from .conftest import Workdir
from .supervisor import Shim, pid_alive, runc, runc_list

pytestmark = pytest.mark.runc

Make = Callable[..., Shim]


def nl(text: str, terminal: bool) -> bytes:
    return (text.replace("\n", "\r\n") if terminal else text).encode()


@pytest.fixture
def form_a(workdir: Workdir) -> Iterator[Make]:
    shims: list[Shim] = []
    container_id = workdir.new_id()

    def make(
        bundle: Path,
        process: dict[str, object],
        *,
        name: str = "init",
        env: dict[str, str] | None = None,
    ) -> Shim:
        client = workdir.base / f"client-{name}"  # the client's FIFOs, away from the state dir
        client.mkdir()
        stdio = {n: client / n for n in ("stdin", "stdout", "stderr")}
        procdir = workdir.base / "state" / container_id / name
        procdir.mkdir(parents=True)
        members = {f"containerd{n.capitalize()}": str(p) for n, p in stdio.items()}
        (procdir / "process.json").write_text(json.dumps({**process, **members}))
        shim = Shim(
            state_dir=procdir,
            runc_root=workdir.runc_root,
            tmpdir=workdir.tmpdir,
            id=container_id,
            stdio=stdio,
            terminal=bool(process.get("terminal")),
        )
        shim.bundle = bundle
        shims.append(shim)
        shim.make_fifos(("exit", "control"))
        shim.open_supervisor_ends()
        shim.start([container_id, str(bundle), "runc"], cwd=procdir, env=env)
        return shim

    try:
        yield make
    finally:
        for shim in reversed(shims):
            shim.cleanup()


def init_process(workdir: Workdir, args: list[str], terminal: bool) -> tuple[Path, dict]:
    bundle = write_bundle(workdir.base / "bundle", args, terminal=terminal)
    process = json.loads((bundle / "config.json").read_text())["process"]
    return bundle, {**process, "exec": False}


def test_supervisor_runs_start(form_a: Make, workdir: Workdir, terminal: bool) -> None:
    # The container waits for a line: if it exited at once, the shim could reap it and
    # `runc delete` it before our `runc start` returned, and start would fail (the
    # 0.2.x protocol's own race, seen under load) although the container ran.
    script = "echo started; read x; exit 6"
    bundle, process = init_process(workdir, ["sh", "-c", script], terminal)
    shim = form_a(bundle, process)
    shim.pid()
    state = runc(str(workdir.runc_root), "state", shim.id)
    assert json.loads(state.stdout)["status"] == "created"  # nothing runs until we say so
    r = runc(str(workdir.runc_root), "start", shim.id)
    assert r.returncode == 0, (r.stderr, shim.stderr(), shim.shim_log())
    shim.read_until(lambda out: b"started" in out, "started")
    shim.write_stdin(b"go\n")
    assert shim.wait_exit() == 0, shim.stderr()
    assert shim.exit_status() == 6
    assert shim.stdout() == (b"started\r\ngo\r\n" if terminal else b"started\n")
    shim.assert_nothing_left()


def test_epollshim_start(form_a: Make, workdir: Workdir, terminal: bool) -> None:
    bundle, process = init_process(workdir, ["sh", "-c", "echo started; exit 0"], terminal)
    shim = form_a(bundle, process, env={"EPOLLSHIM_START": "1"})
    assert shim.wait_exit() == 0, shim.stderr()
    assert shim.exit_status() == 0
    assert shim.stdout() == nl("started\n", terminal)
    shim.assert_nothing_left()


def test_exec_into_running_container(form_a: Make, workdir: Workdir, terminal: bool) -> None:
    bundle, process = init_process(workdir, ["cat"], terminal)
    init = form_a(bundle, process, env={"EPOLLSHIM_START": "1"})
    init_pid = init.pid()
    init.write_stdin(b"init-alive\n")
    init.read_until(lambda out: nl("init-alive\n", terminal) in out, "the init's echo")

    exec_process = {**process, "args": ["sh", "-c", "echo exec-ok; echo exec-err >&2; exit 4"]}
    exec_process["exec"] = True
    ex = form_a(bundle, exec_process, name="exec1")
    assert ex.wait_exit() == 0, ex.stderr()
    assert ex.exit_status() == 4
    if terminal:
        assert ex.stdout() == b"exec-ok\r\nexec-err\r\n"
    else:
        assert ex.stdout() == b"exec-ok\n"
        assert bytes(ex.output["stderr"]) == b"exec-err\n"
    # An exec shim neither kills nor deletes the container.
    assert pid_alive(init_pid)
    assert runc_list(str(workdir.runc_root)) == [init.id]
    assert [n for n in os.listdir(workdir.tmpdir) if n.startswith("epollshim-pty-")] == []

    if terminal:
        init.write_stdin(b"\x04")
    init.close_stdin()
    assert init.wait_exit() == 0, init.stderr()
    assert init.exit_status() == 0
    init.assert_nothing_left()
    ex.assert_nothing_left()


def test_exec_of_missing_command(form_a: Make, workdir: Workdir, terminal: bool) -> None:
    bundle, process = init_process(workdir, ["cat"], terminal)
    init = form_a(bundle, process, env={"EPOLLSHIM_START": "1"})
    init.pid()
    ex = form_a(bundle, {**process, "args": ["no-such-command"], "exec": True}, name="exec1")
    assert ex.proc is not None
    assert ex.proc.wait(timeout=30) == 3
    assert "no-such-command" in ex.stderr()
    assert not (ex.state_dir / "exitStatus").exists()
    assert runc_list(str(workdir.runc_root)) == [init.id]  # the container is untouched
    if terminal:
        init.write_stdin(b"\x04")
    init.close_stdin()
    assert init.wait_exit() == 0
    assert init.exit_status() == 0
    init.assert_nothing_left()


def test_restore_from_a_checkpoint_is_refused(form_a: Make, workdir: Workdir) -> None:
    """A process.json asking for a restore gets a clear refusal, not a fresh container."""
    bundle, process = init_process(workdir, ["true"], False)
    shim = form_a(bundle, {**process, "checkpoint": "/var/lib/cp1"})
    assert shim.proc is not None
    assert shim.proc.wait(timeout=30) == 1
    assert "'checkpoint' '/var/lib/cp1': restoring is not supported" in shim.stderr()
    assert runc_list(str(workdir.runc_root)) == []
    shim.assert_nothing_left()
