"""Failure paths through the runtime v2 shim: a command that cannot start, a shim that dies,
an out-of-memory kill, an exec id used twice. Nothing may be left behind by any of them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from v2support import (
    DEADLINE,
    EPOLL,
    RUNC,
    RUNTIMES,
    Events,
    alive,
    bundle,
    check,
    containers,
    detached,
    nothing_left,
    poll,
    remove,
    run_detached,
    shim_pid_of,
    shim_socket,
    status,
)

from epollshim.tools.containerd import PrivateContainerd, mounts_under

pytestmark = pytest.mark.containerd


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_create_failure_is_reported_and_leaves_nothing(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    r = containerd.ctr(
        "run", "--rm", "--runtime", runtime, containerd.image or "", unique_id, "/bin/nonexistent"
    )
    assert r.returncode != 0
    assert "/bin/nonexistent" in r.stderr and "no such file or directory" in r.stderr, r.stderr
    assert unique_id not in containers(containerd)
    poll("the bundle to go", lambda: not os.path.exists(bundle(containerd, unique_id)))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_runc_that_cannot_be_run_fails_create_and_leaves_nothing(
    containerd: PrivateContainerd,
    containerd_available: None,
    unique_id: str,
    runtime: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A runc binary that does not exist: spawning ``runc create`` fails, Create answers
    with the reason, and the container, its mount and its bundle go. runc-v2 is told by
    ``ctr --runc-binary`` (ctr allows it for runc-v2 only); epollshim by its configuration
    (``runtime.path``), in a containerd of its own started with ``EPOLLSHIM_CONFIG``."""
    missing = "/nonexistent/runc"
    if runtime == RUNC:
        found = _create_failure(containerd, runtime, unique_id, ["--runc-binary", missing])
    else:
        conf = tmp_path / "epollshim.yaml"
        conf.write_text(f"runtime:\n  path: {missing}\n")
        monkeypatch.setenv("EPOLLSHIM_CONFIG", str(conf))
        with PrivateContainerd() as ctd:
            ctd.import_image()
            found = _create_failure(ctd, runtime, unique_id, [])
    assert missing in found and "no such file or directory" in found.lower(), found


def _create_failure(ctd: PrivateContainerd, runtime: str, cid: str, options: list[str]) -> str:
    """``ctr run`` that must fail at Create and leave nothing behind; its stderr."""
    r = ctd.ctr("run", "--rm", "--runtime", runtime, *options, ctd.image or "", cid, "true")
    assert r.returncode != 0
    assert cid not in containers(ctd)
    poll("the bundle to go", lambda: not os.path.exists(bundle(ctd, cid)))
    assert not mounts_under(bundle(ctd, cid))
    return r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_normal_end_removes_the_shim_socket(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim, sock = shim_pid_of(init), shim_socket(containerd, unique_id)
    assert os.path.exists(sock)
    remove(containerd, unique_id)
    poll(f"shim {shim} to exit", lambda: not alive(shim))
    assert not os.path.exists(sock), f"{sock} left behind"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_shim_is_cleaned_up_by_delete(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """SIGKILL the shim: containerd runs ``<shim> delete``; the container goes with it."""
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim, sock = shim_pid_of(init), shim_socket(containerd, unique_id)
    rootfs = os.path.join(bundle(containerd, unique_id), "rootfs")
    assert rootfs in mounts_under(containerd.base)
    os.kill(shim, signal.SIGKILL)  # ours: started by our containerd for this test
    try:
        poll(f"init {init} to be killed by the delete subcommand", lambda: not alive(init))
        poll("containerd to forget the task", lambda: status(containerd, unique_id) is None)
        poll("rootfs to be unmounted", lambda: rootfs not in mounts_under(containerd.base))
        poll("the bundle to go", lambda: not os.path.exists(bundle(containerd, unique_id)))
        if runtime == EPOLL:  # runc-v2 leaves it (spec section 2.5); a cleaner shim does not
            assert not os.path.exists(sock), f"{sock} left behind"
    finally:
        remove(containerd, unique_id)
        if os.path.exists(sock):  # runc-v2's, left by design; this test's own shim made it
            os.unlink(sock)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_out_of_memory_is_137_with_an_oom_event(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with open("/proc/swaps") as f:
        if len(f.readlines()) > 1:
            pytest.skip("swap is on: the memory limit would not force an OOM kill")
    with Events(containerd) as events:
        r = containerd.ctr(
            "run", "--rm", "--runtime", runtime, "--memory-limit", str(16 << 20),
            containerd.image or "", unique_id, "sh", "-c", 'a=x; while :; do a="$a$a"; done',
            timeout=DEADLINE * 2,
        )  # fmt: skip
        assert r.returncode == 137, r.stderr
        events.wait_for(
            lambda e: e.topic == "/tasks/oom" and e.data.get("container_id") == unique_id
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_id_in_use_is_refused(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        check(containerd.ctr("task", "exec", "-d", "--exec-id", "dup", unique_id, "sleep", "500"))
        r = containerd.ctr("task", "exec", "-d", "--exec-id", "dup", unique_id, "true")
        assert r.returncode != 0 and "already exists" in r.stderr, r.stderr
        assert status(containerd, unique_id) == "RUNNING"
