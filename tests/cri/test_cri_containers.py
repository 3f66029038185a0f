"""Containers through CRI: logs in CRI format, exit codes, stop with a grace period, a
restart under the same name, stats."""

from __future__ import annotations

from crisupport import Pod, poll, shim_serving, stream

from epollshim.tools import cri_api as c
from epollshim.tools.cri import CriContainerd, CriError

S = c.ContainerState


def test_log_file_has_each_line_with_its_stream(pod: Pod) -> None:
    command = "echo out1; echo err1 >&2; echo out2; printf 'no newline'; echo err2 >&2"
    cid = pod.create("logger", ["sh", "-c", command])
    assert pod.status(cid).state == S.CONTAINER_CREATED
    pod.client.start_container(cid)
    status = pod.wait_exited(cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert status.log_path == pod.log_path("logger")
    log = pod.wait_log("logger", "no newline")
    assert stream(log, "stdout") == [("F", "out1"), ("F", "out2"), ("P", "no newline")]
    assert stream(log, "stderr") == [("F", "err1"), ("F", "err2")]


def test_exit_3_is_reported_as_exited_with_3(pod: Pod) -> None:
    cid = pod.run("three", ["sh", "-c", "exit 3"])
    status = pod.wait_exited(cid)
    assert (status.state, status.exit_code, status.reason) == (S.CONTAINER_EXITED, 3, "Error")
    # both set; their order is not checked: containerd stamps started_at after Start returned,
    # the shim stamps the exit, and a container this short can exit in between
    assert status.started_at > 0 and status.finished_at > 0


def test_stop_waits_the_grace_period_then_kills(pod: Pod) -> None:
    """SIGTERM is trapped and ignored: StopContainer sends SIGKILL after the grace period.
    Its pod-mates see none of its processes afterwards (they share the pod's PID namespace)."""
    script = "trap 'echo TERM ignored' TERM; echo ready; while :; do sleep 86401 & wait $!; done"
    cid = pod.run("stubborn", ["sh", "-c", script])
    mate = pod.run("mate", ["sh", "-c", "while :; do sleep 86400 & wait $!; done"])
    pod.wait_log("stubborn", "ready")
    poll("its sleep, seen from its pod-mate", lambda: b"sleep 86401" in ps(pod, mate))
    pod.client.stop_container(cid, timeout=3)
    status = pod.status(cid)
    assert (status.state, status.exit_code) == (S.CONTAINER_EXITED, 137)
    pod.wait_log("stubborn", "TERM ignored")  # the trap ran: SIGTERM came first
    poll("the stopped container's processes to be gone", lambda: b"86401" not in ps(pod, mate))


def ps(pod: Pod, cid: str) -> bytes:
    return pod.client.exec_sync(cid, ["ps"]).stdout


def test_same_name_runs_again_after_removal(cri: CriContainerd, pod: Pod) -> None:
    first = pod.run("app", ["sh", "-c", "echo run1; while :; do sleep 86400 & wait $!; done"])
    pod.wait_log("app", "run1")
    try:
        pod.create("app", ["true"])
        raise AssertionError("CRI let two containers have the same name")
    except CriError as e:
        assert "reserved" in e.details
    pod.client.stop_container(first)
    pod.client.remove_container(first)
    second = pod.run("app", ["sh", "-c", "echo run2; while :; do sleep 86400 & wait $!; done"])
    assert second != first
    log = pod.wait_log("app", "run2")
    assert [t for _, _, t in log] == ["run1", "run2"]  # the same log file, appended
    assert shim_serving(cri, second) == shim_serving(cri, pod.id)
    try:
        pod.client.container_status(first)
        raise AssertionError("the removed container is still known")
    except CriError as e:
        assert e.code == "NOT_FOUND"


def test_container_stats_are_numbers(pod: Pod) -> None:
    cid = pod.run(
        "busy",
        ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; echo done; sleep 86400"],
    )
    pod.wait_log("busy", "done")
    stats = pod.client.container_stats(cid)
    assert stats is not None and stats.attributes is not None and stats.attributes.id == cid
    cpu, memory = stats.cpu, stats.memory
    assert cpu is not None and cpu.timestamp > 0
    assert cpu.usage_core_nano_seconds is not None and cpu.usage_core_nano_seconds.value > 0
    assert memory is not None and memory.timestamp > 0
    assert memory.working_set_bytes is not None and memory.working_set_bytes.value > 0
