"""Pods through containerd's CRI: who serves them, and what is left once they are removed."""

from __future__ import annotations

import os

from crisupport import (
    BUNDLES,
    SHIM_BINARIES,
    Pod,
    alive,
    cmdline,
    leftovers,
    poll,
    shim_serving,
    task_pids,
)

from epollshim.tools import cri_api as c
from epollshim.tools.cri import CRI_NAMESPACE, CriContainerd, CriError

LOOP = ["sh", "-c", "while :; do sleep 86400 & wait $!; done"]


def test_one_shim_serves_a_pod_and_the_next_pod_has_its_own(
    cri: CriContainerd, handler: str, pod: Pod
) -> None:
    first, second = pod.run("first", LOOP), pod.run("second", LOOP)
    shim = shim_serving(cri, pod.id)
    assert shim_serving(cri, first) == shim_serving(cri, second) == shim
    assert SHIM_BINARIES[handler] in " ".join(cmdline(shim)), cmdline(shim)
    other = Pod(cri, handler, "other")
    try:
        mate = other.run("mate", LOOP)
        other_shim = shim_serving(cri, other.id)
        assert shim_serving(cri, mate) == other_shim
        assert other_shim != shim
    finally:
        other.remove()


def test_stop_then_remove_pod_leaves_nothing(cri: CriContainerd, handler: str, pod: Pod) -> None:
    running, done = pod.run("running", LOOP), pod.run("done", ["true"])
    pod.wait_exited(done)
    ids = [pod.id, running, done]
    shim = shim_serving(cri, pod.id)
    with open(os.path.join(cri.ctd.state, BUNDLES, CRI_NAMESPACE, pod.id, "address")) as f:
        socket_path = f.read().removeprefix("unix://")
    assert os.path.exists(socket_path)

    pod.client.stop_pod(pod.id)
    status = pod.client.pod_status(pod.id).status
    assert status is not None and status.state == c.PodSandboxState.SANDBOX_NOTREADY
    assert pod.status(running).state == c.ContainerState.CONTAINER_EXITED
    assert pod.id not in task_pids(cri)
    pod.remove()
    try:
        pod.client.pod_status(pod.id)
        raise AssertionError("the pod is still known after RemovePodSandbox")
    except CriError as e:
        assert e.code == "NOT_FOUND"

    poll(f"shim {shim} to exit", lambda: not alive(shim))
    assert not os.path.exists(socket_path)
    assert leftovers(cri, ids) == []


def test_leftovers_finds_a_live_pod(cri: CriContainerd, handler: str, pod: Pod) -> None:
    """The clean-up check can fail: a running pod has runc state, a bundle, mounts, cgroups."""
    cid = pod.run("running", LOOP)
    found = leftovers(cri, [pod.id, cid])
    assert any("/runc/" in p for p in found) and any("/rootfs" in p for p in found)
    assert any(cri.cgroup_parent in p for p in found)
