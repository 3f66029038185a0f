"""The shim's ttrpc socket spoken to directly (our own codec), as a hostile or confused peer.

The socket is the one named by the ``address`` file in the task's bundle. Error codes are
gRPC's (spec section 3.7). Frames that break the framing (a header announcing more than
4 MiB, an unknown frame type, plain garbage) make epollshim close that connection (its choice:
the stream cannot be resynchronised); runc-v2's Go ttrpc skips or discards instead, so those
cases run against epollshim only. Either way the shim must go on serving containerd.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from v2support import (
    EPOLL,
    RUNTIMES,
    ShimConnection,
    check,
    detached,
    nothing_left,
    remove,
    run_detached,
    shim_pid_of,
    shim_socket,
    tasks,
)

from epollshim.tools.containerd import PrivateContainerd
from epollshim.v2 import ttrpc
from epollshim.v2.messages import (
    TASK_SERVICE,
    Code,
    DeleteRequest,
    KillRequest,
    Request,
    Response,
    StartRequest,
    StartResponse,
    StateRequest,
    StateResponse,
    TaskStatus,
    WaitRequest,
    WaitResponse,
)
from epollshim.v2.messages_more import CloseIORequest, ExecProcessRequest
from epollshim.v2.pb import Any

pytestmark = pytest.mark.containerd
PROCESS = "types.containerd.io/opencontainers/runtime-spec/1/Process"


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


def header(length: int, stream_id: int, type_: int, flags: int = 0) -> bytes:
    return length.to_bytes(4, "big") + stream_id.to_bytes(4, "big") + bytes((type_, flags))


def assert_still_serving(ctd: PrivateContainerd, cid: str, init: int) -> None:
    """A new connection gets answers, and containerd still drives the task."""
    with ShimConnection(shim_socket(ctd, cid)) as conn:
        state = conn.call("State", StateRequest(id=cid)).result(StateResponse)
    assert (state.pid, state.status) == (init, TaskStatus.RUNNING)
    r = ctd.ctr("task", "exec", "--exec-id", "after", cid, "echo", "still-here")
    assert (r.returncode, r.stdout) == (0, "still-here\n"), r.stderr
    assert tasks(ctd)[cid] == (init, "RUNNING")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unknown_ids_are_not_found(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with (
        detached(containerd, runtime, unique_id, "sleep", "600") as init,
        ShimConnection(shim_socket(containerd, unique_id)) as conn,
    ):
        calls = {
            "State unknown id": ("State", StateRequest(id="no-such-task")),
            "State unknown exec": ("State", StateRequest(id=unique_id, exec_id="no-exec")),
            "Kill unknown id": ("Kill", KillRequest(id="no-such-task", signal=9)),
            "Kill unknown exec": ("Kill", KillRequest(id=unique_id, exec_id="nx", signal=9)),
            "Delete unknown exec": ("Delete", DeleteRequest(id=unique_id, exec_id="nx")),
        }
        codes = {what: conn.call(m, arg).code for what, (m, arg) in calls.items()}
        assert codes == dict.fromkeys(calls, Code.NOT_FOUND)
        state = conn.call("State", StateRequest(id=unique_id)).result(StateResponse)
        assert (state.pid, state.status) == (init, TaskStatus.RUNNING)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_requests_get_errors_and_the_connection_stays(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """Even stream id, unparsable Request, unknown service/method: answered, not fatal."""
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        with ShimConnection(shim_socket(containerd, unique_id)) as conn:

            def raw(stream_id: int, payload: bytes) -> int:
                conn.sock.sendall(header(len(payload), stream_id, ttrpc.REQUEST) + payload)
                (frame,) = conn.raw_frames()
                assert (frame.stream_id, frame.type) == (stream_id, ttrpc.RESPONSE)
                status = Response.decode(frame.payload).status
                return status.code if status is not None else Code.OK

            state = Request(TASK_SERVICE, "State", StateRequest(id=unique_id).encode()).encode()
            assert raw(2, state) == Code.INVALID_ARGUMENT  # even: not client-initiated
            assert raw(1001, b"\xff\xff\xff") == Code.INVALID_ARGUMENT  # not a Request
            no_service = Request("no.such.Service", "State", b"").encode()
            assert raw(1003, no_service) == Code.UNIMPLEMENTED
            no_method = Request(TASK_SERVICE, "NoSuchMethod", b"").encode()
            assert raw(1005, no_method) == Code.UNIMPLEMENTED
            assert raw(1007, state) == Code.OK
        assert_still_serving(containerd, unique_id, init)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: shim\r\n\r\n", id="http"),
        pytest.param(header(ttrpc.MAX_PAYLOAD + 1, 1, ttrpc.REQUEST), id="oversize"),
        pytest.param(header(0, 1, 9), id="bad-type"),
        pytest.param(header(3, 1, 0x77) + b"abc", id="bad-type-payload"),
    ],
)
def test_broken_framing_closes_only_that_connection(
    containerd: PrivateContainerd, unique_id: str, garbage: bytes
) -> None:
    with detached(containerd, EPOLL, unique_id, "sleep", "600") as init:
        shim = shim_pid_of(init)
        with ShimConnection(shim_socket(containerd, unique_id), timeout=20) as bystander:
            with ShimConnection(shim_socket(containerd, unique_id), timeout=20) as conn:
                conn.sock.sendall(garbage)
                assert conn.closed_by_peer(), f"connection still open after {garbage!r}"
            # another client's connection, open all along, is unaffected
            state = bystander.call("State", StateRequest(id=unique_id)).result(StateResponse)
            assert state.status == TaskStatus.RUNNING
        assert shim_pid_of(init) == shim
        assert_still_serving(containerd, unique_id, init)
        check(containerd.ctr("task", "kill", "-s", "SIGKILL", unique_id))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_closeio_before_start_still_reports_the_exit(
    containerd: PrivateContainerd, unique_id: str, runtime: str, tmp_path: Path
) -> None:
    """ctr sends CloseIO as soon as its stdin is at EOF, which can be before or while Start
    runs, and its Wait before Start; an exec that exits at once must still have its exit
    reported. Pipelined here on purpose, in both orders (ctr only does it by chance)."""
    run_detached(containerd, runtime, unique_id, "sleep", "600")
    fds: list[int] = []
    try:
        with ShimConnection(shim_socket(containerd, unique_id)) as conn:
            for n in range(10):
                exec_id = f"early{n}"
                paths = [str(tmp_path / f"{exec_id}-{name}") for name in ("in", "out", "err")]
                for path in paths:
                    os.mkfifo(path)
                    fds.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))  # the client's ends
                process = {
                    "args": ["sh", "-c", f"exit {n + 3}"],
                    "cwd": "/",
                    "env": ["PATH=/bin"],
                    "user": {"uid": 0, "gid": 0},
                }
                spec = Any(PROCESS, json.dumps(process).encode())
                request = ExecProcessRequest(unique_id, exec_id, False, *paths, spec)
                assert conn.call("Exec", request).code == Code.OK
                os.close(fds.pop(-3))  # as ctr does: its stdin writer is gone, then CloseIO
                waiting = conn.send("Wait", WaitRequest(unique_id, exec_id))
                # pipelined, in both orders: CloseIO lands before or while Start runs
                close_io, start = (
                    ("CloseIO", CloseIORequest(unique_id, exec_id, True)),
                    (
                        "Start",
                        StartRequest(unique_id, exec_id),
                    ),
                )
                first, second = (close_io, start) if n % 2 else (start, close_io)
                replies = {m: conn.send(m, arg) for m, arg in (first, second)}
                assert conn.reply(replies["CloseIO"]).ok
                assert conn.reply(replies["Start"]).result(StartResponse).pid > 0
                waited = conn.reply(waiting).result(WaitResponse)  # socket timeout: 30 s
                assert waited.exit_status == n + 3
                assert conn.call("Delete", DeleteRequest(unique_id, exec_id)).ok
    finally:
        for fd in fds:
            os.close(fd)
        remove(containerd, unique_id)
