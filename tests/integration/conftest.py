"""Fixtures for tests that drive a real shim with a real runc.

* ``terminal`` (parametrized): False (pipes) and True (a pty); every behaviour
  that exists in both modes runs in both.
* ``seed``: a factory for seed-form shims (``Shim`` from ``supervisor.py``):
  ``seed(args, terminal=..., opts=..., start=True)`` writes a busybox bundle
  running ``args``, a state dir with the five FIFOs, opens the supervisor's
  and client's ends, and starts the shim. Everything is cleaned up by pid and
  with ``runc delete --force`` in the test's private runc root.
* ``workdir``: the test's tmp dir plus a short private ``TMPDIR`` for the shim
  (console sockets must fit in 108 bytes of ``sun_path``).

Requires root, ``runc`` and ``/bin/busybox``; skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from epollshim.bundle import write_bundle

from .supervisor import Shim


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.runc)


@pytest.fixture(autouse=True)
def _require_runc() -> None:
    if os.geteuid() != 0:
        pytest.skip("runc tests need root")
    if shutil.which("runc") is None or not os.access("/bin/busybox", os.X_OK):
        pytest.skip("needs runc and /bin/busybox (run `make deps`)")


@pytest.fixture(params=[False, True], ids=["pipes", "tty"])
def terminal(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Workdir:
    def __init__(self, base: Path, tmpdir: Path) -> None:
        self.base = base
        self.tmpdir = tmpdir
        self.runc_root = base / "runc"

    def new_id(self) -> str:
        return "es-" + secrets.token_hex(6)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Workdir]:
    short = Path(tempfile.mkdtemp(prefix="es-"))
    try:
        yield Workdir(tmp_path, short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


SeedFactory = Callable[..., Shim]


@pytest.fixture
def seed(workdir: Workdir) -> Iterator[SeedFactory]:
    shims: list[Shim] = []

    def make(
        args: list[str],
        *,
        terminal: bool = False,
        opts: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        start: bool = True,
        name: str = "c",
    ) -> Shim:
        bundle = write_bundle(workdir.base / f"{name}-bundle", args, terminal=terminal)
        state = workdir.base / f"{name}-state"
        state.mkdir()
        shim = Shim(
            state_dir=state,
            runc_root=workdir.runc_root,
            tmpdir=workdir.tmpdir,
            id=workdir.new_id(),
            terminal=terminal,
        )
        shim.bundle = bundle
        shims.append(shim)
        shim.make_fifos(("exit", "control"))
        shim.open_supervisor_ends()
        if start:
            shim.start([str(state), shim.id], cwd=bundle, env=env, opts=opts)
        return shim

    try:
        yield make
    finally:
        for shim in shims:
            shim.cleanup()
