"""The Task service (``containerd.task.v2.Task``): one handler per method.

Rules:
- A handler answers its ``Call`` now or later (runc results arrive through the reaper);
  it never blocks. Errors are ``ServiceError(code, message)`` with the codes and texts of
  spec sections 3.7, 4.3 and 4.5; an unexpected exception answers UNKNOWN with one log
  line and the shim carries on.
- Every request names its container; unknown ids are NOT_FOUND "container not created".
- Lifecycle methods (Create, Start, Delete, Exec) live in ``lifecycle``; the rest here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from epollshim import minijson
from epollshim.core import events as ev
from epollshim.v2 import lifecycle, ttrpc
from epollshim.v2.container import Container, Context, Proc, ServiceError
from epollshim.v2.messages import (
    TASK_METHODS,
    TASK_SERVICE,
    TASK_STATUS_NAMES,
    Code,
    ConnectRequest,
    ConnectResponse,
    KillRequest,
    ShutdownRequest,
    StateRequest,
    StateResponse,
    TaskStatus,
    WaitRequest,
    timestamp,
)
from epollshim.v2.pb import Message, pack_any
from epollshim.v2.server import Call

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from epollshim.v2.messages_more import (
        CloseIORequest,
        PauseRequest,
        PidsRequest,
        ResizePtyRequest,
        ResumeRequest,
        StatsRequest,
        UpdateTaskRequest,
    )

# ttrpc method -> (handled by lifecycle?, handler name)
METHODS: dict[str, tuple[bool, str]] = {
    "State": (False, "state"),
    "Create": (True, "create"),
    "Start": (True, "start"),
    "Delete": (True, "delete"),
    "Exec": (True, "exec"),
    "Pids": (False, "pids"),
    "Pause": (False, "pause"),
    "Resume": (False, "resume"),
    "Kill": (False, "kill"),
    "ResizePty": (False, "resize_pty"),
    "CloseIO": (False, "close_io"),
    "Update": (False, "update"),
    "Wait": (False, "wait"),
    "Stats": (False, "stats"),
    "Connect": (False, "connect"),
    "Shutdown": (False, "shutdown"),
}


class TaskService:
    def __init__(self, ctx: Context, on_shutdown: Callable[[], None]) -> None:
        self.ctx = ctx
        self.on_shutdown = on_shutdown
        self.containers: dict[str, Container] = {}
        self.creating: set[str] = set()
        self.life = lifecycle.Lifecycle(self)

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, call: Call) -> None:
        request = call.request
        if request.service != TASK_SERVICE:
            e = ttrpc.unknown_service(request.service)
            call.fail(e.code, e.message)
            return
        route = METHODS.get(request.method)
        if route is None:
            e = ttrpc.unknown_method(request.method)
            call.fail(e.code, e.message)
            return
        try:
            argument = ttrpc.decode_payload(request, request_class(request.method))
            self.ctx.log.debug(f"{request.method} {argument!r}")
            getattr(self.life if route[0] else self, route[1])(call, argument)
        except ttrpc.RequestError as e:
            call.fail(e.code, e.message)
        except ServiceError as e:
            call.fail(e.code, e.message)
        except Exception as e:
            self.ctx.log.error(f"{request.method}: internal error: {type(e).__name__}: {e}")
            call.fail(Code.UNKNOWN, f"{request.method}: {type(e).__name__}: {e}")

    def container(self, cid: str) -> Container:
        found = self.containers.get(cid)
        if found is None:
            raise ServiceError(Code.NOT_FOUND, "container not created: not found")
        return found

    def proc(self, cid: str, exec_id: str) -> Proc:
        return self.container(cid).proc(exec_id)

    # -- queries -------------------------------------------------------------------------
    def state(self, call: Call, req: StateRequest) -> None:
        c = self.container(req.id)
        p = c.proc(req.exec_id)
        stdin, stdout, stderr = p.paths
        call.reply(
            StateResponse(
                id=p.id,
                bundle=c.bundle,
                pid=p.pid,
                status=p.status(),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                terminal=p.terminal,
                exit_status=p.exit_code or 0,
                exited_at=timestamp(p.exited_at),
                exec_id=req.exec_id,
            )
        )

    def wait(self, call: Call, req: WaitRequest) -> None:
        self.proc(req.id, req.exec_id).wait(call)

    def connect(self, call: Call, req: ConnectRequest) -> None:
        c = self.containers.get(req.id)
        pid = c.init.pid if c and c.init else 0
        call.reply(ConnectResponse(shim_pid=os.getpid(), task_pid=pid))

    def pids(self, call: Call, req: PidsRequest) -> None:
        from epollshim.v2.messages_more import PidsResponse, ProcessDetails, ProcessInfo

        c = self.container(req.id)
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

        lifecycle.run_captured(c, ["ps", "--format", "json", c.id], done)

    def stats(self, call: Call, req: StatsRequest) -> None:
        c = self.container(req.id)
        p = c.proc("")
        if not p.pid or p.exited:
            raise ServiceError(Code.NOT_FOUND, "container not running: not found")
        from epollshim.v2 import stats  # only shims asked for metrics pay for its schema
        from epollshim.v2.messages_more import StatsResponse

        try:
            metrics = stats.collect(p.pid)
        except OSError as e:
            raise ServiceError(Code.UNKNOWN, f"cannot read the cgroup of {p.pid}: {e}") from e
        call.reply(StatsResponse(stats=metrics))

    # -- control -------------------------------------------------------------------------
    def kill(self, call: Call, req: KillRequest) -> None:
        p = self.proc(req.id, req.exec_id)
        if p.machine is None:
            raise ServiceError(Code.FAILED_PRECONDITION, "process not created: failed precondition")
        if p.exited or p.gone:
            raise ServiceError(Code.NOT_FOUND, "process already finished: not found")
        if p.pid == 0:
            raise ServiceError(Code.FAILED_PRECONDITION, "process not created: failed precondition")
        p.kill_call = call
        p.feed(ev.KillRequested(req.signal, req.all and not req.exec_id))
        if not call.done and p.kill_call is call:  # the machine did not signal
            p.kill_call = None
            call.fail(Code.NOT_FOUND, "process already finished: not found")

    def pause(self, call: Call, req: PauseRequest) -> None:
        from epollshim.v2.messages_more import TaskPaused

        c = self.container(req.id)
        p = c.proc("")
        if p.status() != TaskStatus.RUNNING:
            raise ServiceError(Code.UNKNOWN, f"cannot pause a {_word(p)} container")
        c.pausing = True

        def done(code: int, message: str) -> None:
            c.pausing = False
            if code:
                call.fail(Code.UNKNOWN, f"OCI runtime pause failed: {message}")
                return
            c.paused = True
            self.ctx.publisher.publish(TaskPaused(container_id=c.id))
            call.reply()

        c.runc(["pause", c.id], done)

    def resume(self, call: Call, req: ResumeRequest) -> None:
        from epollshim.v2.messages_more import TaskResumed

        c = self.container(req.id)
        p = c.proc("")
        if p.status() != TaskStatus.PAUSED:
            raise ServiceError(Code.UNKNOWN, f"cannot resume a {_word(p)} container")

        def done(code: int, message: str) -> None:
            if code:
                call.fail(Code.UNKNOWN, f"OCI runtime resume failed: {message}")
                return
            c.paused = False
            self.ctx.publisher.publish(TaskResumed(container_id=c.id))
            call.reply()

        c.runc(["resume", c.id], done)

    def resize_pty(self, call: Call, req: ResizePtyRequest) -> None:
        p = self.proc(req.id, req.exec_id)
        if p.io is not None and not p.exited:
            p.io.resize(req.width, req.height)
        call.reply()

    def close_io(self, call: Call, req: CloseIORequest) -> None:
        p = self.proc(req.id, req.exec_id)
        if req.stdin and p.io is not None:
            p.io.close_stdin()
        call.reply()

    def update(self, call: Call, req: UpdateTaskRequest) -> None:
        c = self.container(req.id)
        p = c.proc("")
        if p.exited or p.gone:
            raise ServiceError(Code.UNKNOWN, "cannot update a stopped container")
        resources = req.resources.value if req.resources else b"{}"

        def done(code: int, message: str, output: bytes) -> None:
            if code:
                call.fail(Code.UNKNOWN, f"OCI runtime update failed: {message}")
            else:
                call.reply()

        lifecycle.run_captured(c, ["update", "--resources", "-", c.id], done, stdin=resources)

    def shutdown(self, call: Call, req: ShutdownRequest) -> None:
        call.reply()
        if not self.containers and not self.creating:
            self.on_shutdown()

    def close(self) -> None:
        for c in list(self.containers.values()):
            for p in [*c.execs.values(), *([c.init] if c.init else [])]:
                p.abandon()


def request_class(method: str) -> type[Message]:
    """The request message of a Task method: a method most containers never see imports
    the rest of the schema at its first call (``messages_more``)."""
    found = TASK_METHODS.get(method)
    if found is None:
        from epollshim.v2 import messages_more

        found = messages_more.TASK_METHODS[method]
    return found[0]


def _word(p: Proc) -> str:
    return TASK_STATUS_NAMES[p.status()].lower()
