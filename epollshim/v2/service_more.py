"""The Task methods a container may never see: Pids, Stats, Pause, Resume, Update,
ResizePty and CloseIO.

Rules: those of ``service``, whose split this is. ``TaskService.dispatch`` imports this
module (and ``messages_more``, the schema of these calls) at the first such call, so a
shim that is never asked does not carry their code. Each handler takes the service.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from epollshim import minijson
from epollshim.shell.process import SpawnError
from epollshim.v2.container import Container, ServiceError
from epollshim.v2.messages import Code, TaskStatus
from epollshim.v2.messages_more import (
    CloseIORequest,
    PauseRequest,
    PidsRequest,
    PidsResponse,
    ProcessDetails,
    ProcessInfo,
    ResizePtyRequest,
    ResumeRequest,
    StatsRequest,
    StatsResponse,
    TaskPaused,
    TaskResumed,
    UpdateTaskRequest,
)
from epollshim.v2.pb import pack_any
from epollshim.v2.server import Call

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from epollshim.v2.service import TaskService


def pids(service: TaskService, call: Call, req: PidsRequest) -> None:
    c = service.container(req.id)
    execs = {p.pid: p.exec_id for p in c.execs.values() if p.pid}

    def done(code: int, message: str, output: bytes) -> None:
        if code:
            call.fail(Code.UNKNOWN, f"failed to list pids: {message}")
            return
        try:
            pids = minijson.loads(output or b"[]")
        except ValueError:
            call.fail(Code.UNKNOWN, f"runc ps printed no JSON: {output[:200]!r}")
            return
        infos = []
        for pid in pids if isinstance(pids, list) else []:
            exec_id = execs.get(pid)
            info = pack_any(ProcessDetails(exec_id=exec_id)) if exec_id else None
            infos.append(ProcessInfo(pid=pid, info=info))
        call.reply(PidsResponse(processes=infos))

    run_captured(c, ["ps", "--format", "json", c.id], done)


def stats(service: TaskService, call: Call, req: StatsRequest) -> None:
    c = service.container(req.id)
    p = c.proc("")
    if not p.pid or p.exited:
        raise ServiceError(Code.NOT_FOUND, "container not running: not found")
    from epollshim.v2 import stats as cgroup_stats  # its schema only for shims asked

    try:
        metrics = cgroup_stats.collect(p.pid)
    except OSError as e:
        raise ServiceError(Code.UNKNOWN, f"cannot read the cgroup of {p.pid}: {e}") from e
    call.reply(StatsResponse(stats=metrics))


def pause(service: TaskService, call: Call, req: PauseRequest) -> None:
    c = service.container(req.id)
    p = c.proc("")
    if p.status() != TaskStatus.RUNNING:
        raise ServiceError(Code.UNKNOWN, f"cannot pause a {p.status_name()} container")
    c.pausing = True

    def done(code: int, message: str) -> None:
        c.pausing = False
        if code:
            call.fail(Code.UNKNOWN, f"OCI runtime pause failed: {message}")
            return
        c.paused = True
        service.ctx.publisher.publish(TaskPaused(container_id=c.id))
        call.reply()

    c.runc(["pause", c.id], done)


def resume(service: TaskService, call: Call, req: ResumeRequest) -> None:
    c = service.container(req.id)
    p = c.proc("")
    if p.status() != TaskStatus.PAUSED:
        raise ServiceError(Code.UNKNOWN, f"cannot resume a {p.status_name()} container")

    def done(code: int, message: str) -> None:
        if code:
            call.fail(Code.UNKNOWN, f"OCI runtime resume failed: {message}")
            return
        c.paused = False
        service.ctx.publisher.publish(TaskResumed(container_id=c.id))
        call.reply()

    c.runc(["resume", c.id], done)


def resize_pty(service: TaskService, call: Call, req: ResizePtyRequest) -> None:
    p = service.proc(req.id, req.exec_id)
    if p.io is not None and not p.exited:
        p.io.resize(req.width, req.height)
    call.reply()


def close_io(service: TaskService, call: Call, req: CloseIORequest) -> None:
    p = service.proc(req.id, req.exec_id)
    if req.stdin and p.io is not None:
        p.io.close_stdin()
    call.reply()


def update(service: TaskService, call: Call, req: UpdateTaskRequest) -> None:
    c = service.container(req.id)
    p = c.proc("")
    if p.exited or p.gone:
        raise ServiceError(Code.UNKNOWN, "cannot update a stopped container")
    resources = req.resources.value if req.resources else b"{}"

    def done(code: int, message: str, output: bytes) -> None:
        if code:
            call.fail(Code.UNKNOWN, f"OCI runtime update failed: {message}")
        else:
            call.reply()

    run_captured(c, ["update", "--resources", "-", c.id], done, stdin=resources)


def run_captured(
    c: Container,
    args: list[str],
    done: Callable[[int, str, bytes], None],
    stdin: bytes = b"",
) -> None:
    """Run runc with stdout captured (and ``stdin`` fed, at most one pipe buffer)."""
    loop = c.ctx.loop
    out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(out_w, True)
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            data = os.read(out_r, 65536)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        else:
            loop.remove_reader(out_r)

    def finished(code: int, message: str) -> None:
        loop.forget(out_r)
        while True:
            try:
                data = os.read(out_r, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(out_r)
        done(code, message, b"".join(chunks))

    try:
        os.write(in_w, stdin)
    finally:
        os.close(in_w)
    loop.add_reader(out_r, readable)
    try:
        c.runtime.run(args, finished, stdio=(in_r, out_w, out_w))
    except SpawnError as e:
        finished(1, str(e))
    finally:
        os.close(in_r)
        os.close(out_w)
