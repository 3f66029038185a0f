"""The shim across containerd restarts, and two containers of one group in one shim.

Quirk: ``ctr run --annotation K=V`` sets an OCI annotation in config.json (``--label`` only
labels containerd's container record); ``io.kubernetes.cri.sandbox-id`` is one of the two
annotations the runc shim groups by (spec section 2.6).
"""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import time
from collections.abc import Iterator

import pytest
from v2support import (
    DEADLINE,
    EPOLL,
    RUNTIMES,
    alive,
    check,
    cmdline,
    detached,
    nothing_left,
    poll,
    remove,
    run_detached,
    shim_pid_of,
    shim_socket,
    status,
    tasks,
    wait_status,
)

from epollshim.tools.containerd import PrivateContainerd

pytestmark = pytest.mark.containerd
# what the shim daemon's command line names (epollshim's is forked from `start`, which
# containerd ran through our lean launcher; the daemon drops the word "start")
SHIM_MARKS = {
    EPOLL: "containerd-shim-epollshim-v2",
    "io.containerd.runc.v2": "containerd-shim-runc-v2",
}


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = DEADLINE) -> bytes:
    """Read a child's stdout until ``marker`` shows up (bounded)."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {marker!r} within {timeout:g} s; got {out!r}")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"output ended before {marker!r}; got {out!r}")
            out += chunk
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_shim_gets_containerds_oom_score_adj_plus_one(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """Under memory pressure the kernel kills a shim before containerd (as runc-v2 has it)."""
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        scores = []
        for pid in (containerd.pid, shim_pid_of(init)):
            with open(f"/proc/{pid}/oom_score_adj") as f:
                scores.append(int(f.read()))
        assert scores[1] == min(1000, scores[0] + 1), scores


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_task_survives_containerd_restart(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """After a restart containerd reconnects: exec, IO, kill and wait all still work."""
    token = secrets.token_hex(4)
    loop = f'while :; do if [ -e /tmp/go ]; then echo "GO-{token}-$(cat /tmp/go)"; rm /tmp/go; fi; sleep 0.05; done'  # noqa: E501
    with detached(containerd, runtime, unique_id, "sh", "-c", loop) as init:
        shim = shim_pid_of(init)
        first_ctd = containerd.pid
        containerd.restart()
        assert containerd.pid != first_ctd
        assert tasks(containerd)[unique_id] == (init, "RUNNING")
        assert shim_pid_of(init) == shim and alive(shim)
        r = containerd.ctr(
            "task", "exec", "--exec-id", "after", unique_id,
            "sh", "-c", "echo exec-ok; echo 1 > /tmp/go",
        )  # fmt: skip
        assert (r.returncode, r.stdout) == (0, "exec-ok\n"), r.stderr
        argv = ["ctr", "--address", containerd.address, "--namespace", containerd.namespace]
        with subprocess.Popen(
            [*argv, "task", "attach", unique_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as attach:
            try:
                read_until(attach, f"GO-{token}-1\n".encode())  # written after the restart
                exec_two = ("task", "exec", "--exec-id", "two", unique_id)
                check(containerd.ctr(*exec_two, "sh", "-c", "echo 2 > /tmp/go"))
                read_until(attach, f"GO-{token}-2\n".encode())  # and while attached
                check(containerd.ctr("task", "kill", "-s", "SIGKILL", unique_id))
                assert attach.wait(timeout=DEADLINE) == 137  # ctr waited through the shim
            finally:
                if attach.poll() is None:
                    attach.kill()
        poll("the task to stop", lambda: status(containerd, unique_id) in (None, "STOPPED"))
    poll(f"shim {shim} to exit", lambda: not alive(shim))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_containers_of_one_group_share_a_shim(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    group = f"g{unique_id}"
    ids = [f"{unique_id}-a", f"{unique_id}-b"]
    annotation = ["--annotation", f"io.kubernetes.cri.sandbox-id={group}"]
    try:
        # different init commands tell the containers apart from inside
        inits = [
            run_detached(containerd, runtime, c, "sleep", str(600 + n), options=annotation)
            for n, c in enumerate(ids)
        ]
        shims = {shim_pid_of(pid) for pid in inits}
        assert len(shims) == 1, f"inits {inits} have parents {shims}"
        (shim,) = shims
        assert any(SHIM_MARKS[runtime] in arg for arg in cmdline(shim)), cmdline(shim)
        assert "start" not in cmdline(shim), cmdline(shim)
        assert shim_socket(containerd, ids[0]) == shim_socket(containerd, ids[1])
        for n, cid in enumerate(ids):
            r = containerd.ctr("task", "exec", "--exec-id", "who", cid, "cat", "/proc/1/cmdline")
            assert (r.returncode, r.stdout) == (0, f"sleep\0{600 + n}\0"), r.stderr
        remove(containerd, ids[0])
        assert alive(shim) and alive(inits[1])
        assert tasks(containerd)[ids[1]] == (inits[1], "RUNNING")
        r = containerd.ctr("task", "exec", "--exec-id", "still", ids[1], "echo", "ok")
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
        check(containerd.ctr("task", "kill", "-s", "SIGKILL", ids[1]))
        wait_status(containerd, ids[1], "STOPPED")
        remove(containerd, ids[1])
        poll(f"shim {shim} to exit once its group is empty", lambda: not alive(shim))
    finally:
        for cid in ids:
            if cid in check(containerd.ctr("containers", "ls", "-q")).stdout.split():
                remove(containerd, cid)
