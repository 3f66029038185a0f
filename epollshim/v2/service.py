"""The Task service (``containerd.task.v2.Task``): one handler per method.

Rules:
- A handler answers its ``Call`` now or later (runc results arrive through the reaper);
  it never blocks. Errors are ``ServiceError(code, message)`` with the codes and texts of
  spec sections 3.7, 4.3 and 4.5; an unexpected exception answers UNKNOWN with one log
  line and the shim carries on.
- Every request names its container; unknown ids are NOT_FOUND "container not created".
- Lifecycle methods (Create, Start, Delete, Exec) live in ``lifecycle``; the methods a
  container may never see (Pids, Stats, Pause, Resume, Update, ResizePty, CloseIO) in
  ``service_more``, imported at the first such call; the rest here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from epollshim.core import events as ev
from epollshim.v2 import lifecycle, ttrpc
from epollshim.v2.container import Container, Context, Proc, ServiceError
from epollshim.v2.messages import (
    TASK_METHODS,
    TASK_SERVICE,
    Code,
    ConnectRequest,
    ConnectResponse,
    KillRequest,
    ShutdownRequest,
    StateRequest,
    StateResponse,
    WaitRequest,
    timestamp,
)
from epollshim.v2.pb import Message
from epollshim.v2.server import Call

# ttrpc method -> (where its handler is, handler name): a TaskService method, a Lifecycle
# method, or a function of ``service_more`` (imported at the first such call)
SERVICE, LIFECYCLE, MORE = "service", "lifecycle", "more"
METHODS: dict[str, tuple[str, str]] = {
    "State": (SERVICE, "state"),
    "Create": (LIFECYCLE, "create"),
    "Start": (LIFECYCLE, "start"),
    "Delete": (LIFECYCLE, "delete"),
    "Exec": (LIFECYCLE, "exec"),
    "Pids": (MORE, "pids"),
    "Pause": (MORE, "pause"),
    "Resume": (MORE, "resume"),
    "Kill": (SERVICE, "kill"),
    "ResizePty": (MORE, "resize_pty"),
    "CloseIO": (MORE, "close_io"),
    "Update": (MORE, "update"),
    "Wait": (SERVICE, "wait"),
    "Stats": (MORE, "stats"),
    "Connect": (SERVICE, "connect"),
    "Shutdown": (SERVICE, "shutdown"),
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
            if self.ctx.log.enabled("debug"):
                self.ctx.log.debug(f"{request.method} {argument!r}")
            where, name = route
            if where == MORE:
                from epollshim.v2 import service_more

                getattr(service_more, name)(self, call, argument)
            else:
                getattr(self.life if where == LIFECYCLE else self, name)(call, argument)
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
        # containerd asks State for a task's every status (`ctr task ls`, its task list), so
        # the reply is encoded again only when one of its inputs changed. The key holds every
        # input of the reply, so the memo cannot answer with a stale one.
        key = (p.id, c.bundle, p.pid, p.status(), p.paths, p.terminal, p.exit_code, p.exited_at)
        memo = p.state_reply
        if memo is None or memo[0] != key:
            memo = p.state_reply = (key, state_response(c, p).encode())
        call.reply(memo[1])

    def wait(self, call: Call, req: WaitRequest) -> None:
        self.proc(req.id, req.exec_id).wait(call)

    def connect(self, call: Call, req: ConnectRequest) -> None:
        c = self.containers.get(req.id)
        pid = c.init.pid if c and c.init else 0
        call.reply(ConnectResponse(shim_pid=os.getpid(), task_pid=pid))

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

    def shutdown(self, call: Call, req: ShutdownRequest) -> None:
        call.reply()
        if not self.containers and not self.creating:
            self.on_shutdown()

    def close(self) -> None:
        for c in list(self.containers.values()):
            for p in [*c.execs.values(), *([c.init] if c.init else [])]:
                p.abandon()


def state_response(c: Container, p: Proc) -> StateResponse:
    """The State of ``p`` as it stands (``TaskService.state`` keeps it encoded)."""
    stdin, stdout, stderr = p.paths
    return StateResponse(
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
        exec_id=p.exec_id,
    )


def request_class(method: str) -> type[Message]:
    """The request message of a Task method: a method most containers never see imports
    the rest of the schema at its first call (``messages_more``)."""
    found = TASK_METHODS.get(method)
    if found is None:
        from epollshim.v2 import messages_more

        found = messages_more.TASK_METHODS[method]
    return found[0]
