"""Events the runtime v2 shim publishes (spec section 5), as ``ctr events`` shows them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from v2support import RUNTIMES, Event, Events, check, detached, nothing_left

from epollshim.tools.containerd import PrivateContainerd

pytestmark = pytest.mark.containerd


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


def first(events: list[Event], topic: str) -> int:
    return next(i for i, e in enumerate(events) if e.topic == topic)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_publishes_create_start_exit_delete(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with Events(containerd) as events:
        r = containerd.ctr(
            "run", "--rm", "--runtime", runtime, containerd.image or "", unique_id,
            "sh", "-c", "exit 3",
        )  # fmt: skip
        assert r.returncode == 3, r.stderr
        deleted = events.wait_for(
            lambda e: e.topic == "/tasks/delete" and e.data.get("container_id") == unique_id
        )
        mine = [e for e in events.seen if e.data.get("container_id") == unique_id]
    topics = [e.topic for e in mine if e.topic.startswith("/tasks/")]
    order = [first(mine, t) for t in ("/tasks/create", "/tasks/start", "/tasks/exit")]
    assert order == sorted(order) and order[-1] < mine.index(deleted), topics
    created, started, exited = (mine[i].data for i in order)
    pid = created["pid"]
    assert pid > 0 and started["pid"] == pid
    assert created["bundle"].endswith(f"/{containerd.namespace}/{unique_id}")
    assert exited["id"] == unique_id and exited["pid"] == pid and exited["exit_status"] == 3
    assert deleted.data.get("exit_status") == 3 and deleted.data["pid"] == pid


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_publishes_added_started_exit(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        with Events(containerd) as events:
            r = containerd.ctr("task", "exec", "--exec-id", "ev1", unique_id, "sh", "-c", "exit 5")
            assert r.returncode == 5, r.stderr
            exited = events.wait_for(
                lambda e: e.topic == "/tasks/exit" and e.data.get("id") == "ev1"
            )
            mine = [e for e in events.seen if e.data.get("container_id") == unique_id]
        added = next(e for e in mine if e.topic == "/tasks/exec-added")
        started = next(e for e in mine if e.topic == "/tasks/exec-started")
        assert mine.index(added) < mine.index(started) < mine.index(exited), mine
        assert added.data["exec_id"] == started.data["exec_id"] == "ev1"
        assert exited.data["exit_status"] == 5 and exited.data["pid"] == started.data["pid"] > 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pause_resume_publish_events(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600"), Events(containerd) as events:
        check(containerd.ctr("task", "pause", unique_id))
        events.wait_for(
            lambda e: e.topic == "/tasks/paused" and e.data.get("container_id") == unique_id
        )
        check(containerd.ctr("task", "resume", unique_id))
        events.wait_for(
            lambda e: e.topic == "/tasks/resumed" and e.data.get("container_id") == unique_id
        )
