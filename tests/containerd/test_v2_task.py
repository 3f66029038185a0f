"""``ctr task`` verbs through the runtime v2 shim: kill, kill --all, ps, pause/resume,
update, metrics, delete of a stopped task, and NOT_FOUND for what is gone.

Quirk: ctr 1.6 has no ``task update`` verb, so Update goes to the shim over ttrpc with our own
codec (containerd would send the same ``UpdateTaskRequest``); the result is read from the
cgroup (from outside: ctr's default spec gives the container no cgroup mount to read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from v2support import (
    RUNTIMES,
    ShimConnection,
    alive,
    bundle,
    check,
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
from epollshim.v2.messages import Code
from epollshim.v2.messages_more import UpdateTaskRequest
from epollshim.v2.pb import Any

pytestmark = pytest.mark.containerd
LINUX_RESOURCES = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


def ps(ctd: PrivateContainerd, cid: str) -> dict[int, str]:
    """``ctr task ps``: pid -> INFO column (the exec id for exec processes, else "-")."""
    out = check(ctd.ctr("task", "ps", cid)).stdout.splitlines()[1:]
    return {int(f[0]): f[1] if len(f) > 1 else "" for f in (line.split() for line in out) if f}


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """Path of a cgroup v1 control file of ``pid`` (skips on a cgroup v2-only host)."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return os.path.join("/sys/fs/cgroup", controller, path.lstrip("/"), name)
    pytest.skip(f"no cgroup v1 {controller} controller here")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kill_and_kill_all(containerd: PrivateContainerd, unique_id: str, runtime: str) -> None:
    """SIGTERM with --all ends the other processes; pid 1 ignores it; SIGKILL ends the task."""
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        shim = shim_pid_of(init)
        for n in (1, 2):
            exec_d = ("task", "exec", "-d", "--exec-id", f"s{n}", unique_id)
            check(containerd.ctr(*exec_d, "sleep", "500"))
        procs = poll(
            "three processes in ctr task ps", lambda: len(p := ps(containerd, unique_id)) == 3 and p
        )
        others = set(procs) - {init}
        check(containerd.ctr("task", "kill", "--all", "-s", "SIGTERM", unique_id))
        poll("the exec'd sleeps to end", lambda: not any(map(alive, others)))
        poll("ctr task ps with only the init", lambda: set(ps(containerd, unique_id)) == {init})
        assert tasks(containerd)[unique_id] == (init, "RUNNING")  # pid 1 has no TERM handler
        r = containerd.ctr("task", "delete", unique_id)  # ctr checks State: must be STOPPED
        assert r.returncode != 0 and "must be stopped" in r.stderr, r.stderr
        check(containerd.ctr("task", "kill", "-s", "SIGKILL", unique_id))
        wait_status(containerd, unique_id, "STOPPED")
        r = containerd.ctr("task", "delete", unique_id)
        assert r.returncode == 0 and "exit code 137" in r.stderr, r.stderr
        poll(f"shim {shim} to exit", lambda: not alive(shim))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ps_names_exec_processes(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        check(containerd.ctr("task", "exec", "-d", "--exec-id", "ex1", unique_id, "sleep", "500"))
        procs = poll(
            "the exec in ctr task ps", lambda: len(p := ps(containerd, unique_id)) == 2 and p
        )
        assert procs[init] == "-"
        (exec_pid,) = set(procs) - {init}
        # ctr prints the ProcessDetails{exec_id} Any (spec section 4.3.5) the Go way
        assert "ExecID:ex1," in procs[exec_pid]
        assert ppid_is(exec_pid, shim_pid_of(init))


def ppid_is(pid: int, parent: int) -> bool:
    return shim_pid_of(pid) == parent


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pause_and_resume(containerd: PrivateContainerd, unique_id: str, runtime: str) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        freezer = cgroup_file(init, "freezer", "freezer.state")
        assert read(freezer) == "THAWED"
        check(containerd.ctr("task", "pause", unique_id))
        assert status(containerd, unique_id) == "PAUSED"
        assert read(freezer) == "FROZEN"
        r = containerd.ctr("task", "exec", "--exec-id", "no", unique_id, "true")
        assert r.returncode != 0, "exec into a paused task must fail"
        check(containerd.ctr("task", "resume", unique_id))
        assert status(containerd, unique_id) == "RUNNING"
        assert read(freezer) == "THAWED"
        r = containerd.ctr("task", "exec", "--exec-id", "yes", unique_id, "echo", "alive")
        assert (r.returncode, r.stdout) == (0, "alive\n"), r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_update_memory_limit(containerd: PrivateContainerd, unique_id: str, runtime: str) -> None:
    before, after = 64 << 20, 48 << 20
    with detached(
        containerd, runtime, unique_id, "sleep", "600", options=["--memory-limit", str(before)]
    ) as init:
        limit = cgroup_file(init, "memory", "memory.limit_in_bytes")
        assert int(read(limit)) == before
        resources = json.dumps({"memory": {"limit": after}}).encode()
        with ShimConnection(shim_socket(containerd, unique_id)) as conn:
            reply = conn.call(
                "Update",
                UpdateTaskRequest(id=unique_id, resources=Any(LINUX_RESOURCES, resources)),
            )
        assert (reply.code, reply.message) == (Code.OK, "")
        assert int(read(limit)) == after
        assert status(containerd, unique_id) == "RUNNING"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_metrics(containerd: PrivateContainerd, unique_id: str, runtime: str) -> None:
    with detached(containerd, runtime, unique_id, "sh", "-c", "sleep 600 & wait"):
        r = containerd.ctr("task", "metrics", "--format", "json", unique_id)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["pids"]["current"] == 2  # sh and sleep
        usage = data["memory"]["usage"]
        assert (usage["usage"] if isinstance(usage, dict) else usage) > 0
        table = check(containerd.ctr("task", "metrics", unique_id)).stdout
        assert unique_id in table and "pids.current" in table


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stopped_task_kill_fails_and_delete_cleans_up(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim = shim_pid_of(init)
    where = bundle(containerd, unique_id)
    assert os.path.isdir(where)
    check(containerd.ctr("task", "kill", "-s", "SIGKILL", unique_id))
    try:
        wait_status(containerd, unique_id, "STOPPED")
        r = containerd.ctr("task", "kill", unique_id)
        assert r.returncode != 0 and "not found" in r.stderr, r.stderr
        r = containerd.ctr("task", "exec", "--exec-id", "late", unique_id, "true")
        assert r.returncode != 0, "exec into a stopped task must fail"
        r = containerd.ctr("task", "delete", unique_id)
        assert r.returncode == 0 and "exit code 137" in r.stderr, r.stderr
        assert unique_id not in tasks(containerd)
        poll(f"shim {shim} to exit", lambda: not alive(shim))
        poll(f"bundle {where} to go", lambda: not os.path.exists(where))
        r = containerd.ctr("task", "delete", unique_id)
        assert r.returncode != 0 and "not found" in r.stderr, r.stderr
    finally:
        remove(containerd, unique_id)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exited_task_reports_its_code(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    run = ("run", "-d", "--runtime", runtime, containerd.image or "", unique_id)
    check(containerd.ctr(*run, "sh", "-c", "exit 6"))
    try:
        wait_status(containerd, unique_id, "STOPPED")
        r = containerd.ctr("task", "delete", unique_id)
        assert r.returncode == 0 and "exit code 6" in r.stderr, r.stderr
    finally:
        remove(containerd, unique_id)
