"""Containers and their processes: each process is a ``core.Process`` machine plus IO.

Rules:
- State changes of a process go through ``Proc.feed``: the core decides, ``_apply``
  carries out each effect (the v0 front end's pattern). containerd's view (CREATED,
  RUNNING, PAUSED, STOPPED) is derived from the machine, never stored beside it.
- Exits are routed by pid through the shared ``ExitRouter``; a process whose pid is not
  known yet is ``expect``ed, so an exit that comes first is replayed by ``watch``.
- An exit is reported (Wait answers, ``TaskExit``) only on ``RecordExit``, i.e. after
  the output drained and, for an init sharing the host's PID namespace, after
  ``runc kill --all`` ended (KILLING), so Wait never answers while its children live.
  ``TaskExit`` of an init whose ``runc start`` is still in flight is held back until
  ``TaskStart`` was published (spec 5.5).
"""

import os
import time
from collections.abc import Callable

from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.exits import ExitRouter
from epollshim.core.machine import Observer, Process
from epollshim.core.states import State
from epollshim.log import Log
from epollshim.shell.loop import Loop, Timer
from epollshim.shell.process import SpawnError
from epollshim.shell.runtime import Runtime, within
from epollshim.v2.events import Publisher
from epollshim.v2.messages import (
    TASK_STATUS_NAMES,
    Code,
    TaskExit,
    TaskStatus,
    WaitResponse,
    timestamp,
)
from epollshim.v2.options import RuncOptions
from epollshim.v2.server import Call
from epollshim.v2.stdio import BINARY, FIFO, Output, ProcIO

GONE = (State.KILLING, State.REAPING, State.CLEANUP)


class Context:
    """What every container of the daemon shares."""

    __slots__ = (
        "bufsize",
        "drain_deadline",
        "log",
        "loop",
        "namespace",
        "observers",
        "publisher",
        "router",
        "runc_path",
    )

    def __init__(self, loop: Loop, log: Log, router: ExitRouter, publisher: Publisher) -> None:
        self.loop = loop
        self.log = log
        self.router = router
        self.publisher = publisher
        self.namespace = ""
        self.observers: list[Observer] = []
        self.drain_deadline = 5.0
        self.bufsize = 65536
        self.runc_path = "runc"


class ServiceError(Exception):
    """A request to answer with this status code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def kill_error(message: str) -> ServiceError:
    """runc kill's failure as containerd expects it (spec 4.3.9)."""
    lowered = message.lower()
    if any(s in lowered for s in ("container not running", "no such process", "process already")):
        return ServiceError(Code.NOT_FOUND, "process already finished: not found")
    if "does not exist" in lowered:
        return ServiceError(Code.NOT_FOUND, "no such container: not found")
    return ServiceError(Code.UNKNOWN, f"unknown error after kill: {message}")


class Proc:
    """The init (``exec_id == ""``) or one exec of a container."""

    def __init__(
        self, container: "Container", exec_id: str, paths: tuple[str, str, str], terminal: bool
    ) -> None:
        self.container = container
        self.ctx = container.ctx
        self.exec_id = exec_id
        self.id = exec_id or container.id
        self.paths = paths
        self.output = Output(FIFO, paths[1])  # where stdout goes (stdio_uri.parse)
        self.terminal = terminal
        self.spec = b""  # an exec's OCI process JSON
        self.machine: Process | None = None
        self.io: ProcIO | None = None
        self.waiters: list[Call] = []
        self.exit_code: int | None = None
        self.exited_at: float | None = None
        self.starting = False  # runc start / exec in flight
        self.started = False
        self.held_exit: TaskExit | None = None
        self.drain_timer: Timer | None = None
        self.failure = ""
        self.kill_call: Call | None = None
        # State's last reply, encoded, and the key it answers (service.TaskService.state)
        self.state_reply: tuple[tuple[object, ...], bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.container.id}/{self.exec_id}" if self.exec_id else self.container.id

    @property
    def pid(self) -> int:
        return (self.machine.pid or 0) if self.machine else 0

    @property
    def exited(self) -> bool:
        return self.exit_code is not None

    @property
    def gone(self) -> bool:
        """Reaped (or failed): signals have nobody to reach."""
        return self.machine is not None and self.machine.state in GONE

    def status(self) -> int:  # a TaskStatus
        if self.exited or (self.machine and self.machine.state is State.CLEANUP):
            return TaskStatus.STOPPED
        c = self.container
        if c.pausing:
            return TaskStatus.PAUSING
        if c.paused:
            return TaskStatus.PAUSED
        if self.started and self.machine and self.machine.state is not State.STARTING:
            return TaskStatus.RUNNING
        return TaskStatus.CREATED

    def status_name(self) -> str:
        """The status as error messages word it ("running", "stopped", ...)."""
        return TASK_STATUS_NAMES[self.status()].lower()

    # -- the machine -------------------------------------------------------------------
    def new_io(self) -> ProcIO:
        """The stdio its output URI asks for (a logging binary made, not started)."""
        c, ctx, out = self.container, self.ctx, self.output
        logger = None
        if out.kind == BINARY:
            from epollshim.v2.logger import Logger  # only shims asked for one pay for it

            logger = Logger(ctx.loop, ctx.router, ctx.log, out.path, out.args)
        # runc-v2 names the exec, not its container, in an exec's logger's CONTAINER_ID
        env = {"CONTAINER_ID": self.id, "CONTAINER_NAMESPACE": ctx.namespace}
        return ProcIO(
            ctx.loop,
            ctx.log,
            self.name,
            self.paths,
            self.terminal,
            ctx.bufsize,
            output=out,
            io_ids=(c.opts.io_uid, c.opts.io_gid),
            logger=logger,
            logger_env=env,
        )

    def begin(self) -> None:
        """Enter STARTING (runc create/exec is about to run)."""
        init = not self.exec_id
        self.machine = Process(
            self.name,
            init=init,
            drain_deadline=self.ctx.drain_deadline,
            observers=self.ctx.observers,
            kills_remaining=init and not self.container.private_pidns,
        )
        self.ctx.router.expect()

    def feed(self, event: ev.Event) -> tuple[fx.Effect, ...]:
        assert self.machine is not None
        was_starting = self.machine.state is State.STARTING
        effects = self.machine.handle(event, time.time())
        for effect in effects:
            self._apply(effect)
        # settle only after WatchPid took the pid: settling may drop the cached early exits
        if was_starting and self.machine.state is not State.STARTING:
            self.ctx.router.settle()
        return effects

    def _apply(self, effect: fx.Effect) -> None:
        match effect:
            case fx.WatchPid(pid):
                early = self.ctx.router.watch(pid, self._exited)
                if early is not None:
                    self._exited(early)
            case fx.Signal(sig, all_):
                call, self.kill_call = self.kill_call, None
                self._signal(sig, all_, call)
            case fx.KillRemaining(deadline):
                self._kill_remaining(deadline)
            case fx.StartDrain(deadline):
                self.drain_timer = self.ctx.loop.call_later(deadline, self._drain_expired)
                if self.io is not None:
                    self.io.drain(self._drained)
                else:
                    self._drained()
            case fx.RecordExit(code):
                self._record_exit(code)
            case fx.ReportFailure(step, message):
                self.failure = message
                self.ctx.log.warn(f"{self.name}: runc {step} failed: {message}")
            case fx.Warn(message):
                self.ctx.log.warn(message)

    def _exited(self, status: int) -> None:
        if not self.container.deleted:  # a created init killed by runc delete: no news
            self.feed(ev.ProcessExited(status))

    def _kill_remaining(self, deadline: float) -> None:
        """``runc kill --all ID 9``; RemainingKilled when it ends or the deadline passes."""
        done = within(self.ctx.loop, deadline, "runc kill --all", self._remaining_killed)
        self.container.runc(["kill", "--all", self.container.id, "9"], done)

    def _remaining_killed(self, error: str) -> None:
        if self.machine is not None and self.machine.state is State.KILLING:
            self.feed(ev.RemainingKilled(error))

    def _drained(self) -> None:
        if self.machine is not None and self.machine.state is State.REAPING:
            self.feed(ev.OutputDrained())

    def _drain_expired(self) -> None:
        self.drain_timer = None
        if self.machine is not None and self.machine.state is State.REAPING:
            self.feed(ev.DrainExpired())

    def _signal(self, sig: int, all_: bool, call: Call | None) -> None:
        if not self.exec_id:
            args = ["kill", *(["--all"] if all_ else []), self.container.id, str(sig)]

            def done(code: int, message: str) -> None:
                if call is None:
                    return
                if code:
                    e = kill_error(message)
                    call.fail(e.code, e.message)
                else:
                    call.reply()

            self.container.runc(args, done)
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            if call:
                call.fail(Code.NOT_FOUND, "process already finished: not found")
            return
        if call:
            call.reply()

    def _record_exit(self, code: int) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.exit_code = code
        self.exited_at = time.time()
        if self.io is not None:
            self.io.finish()
        self._answer_waiters()
        event = TaskExit(
            container_id=self.container.id,
            id=self.id,
            pid=self.pid,
            exit_status=code,
            exited_at=timestamp(self.exited_at),
        )
        if self.starting:
            self.held_exit = event  # published right after TaskStart
        else:
            self.ctx.publisher.publish(event)
        self.container.process_exited(self)

    def fail_without_exit(self, code: int = 0) -> None:
        """A process that never ran (start failed): Wait answers, with no TaskExit."""
        if self.exit_code is None:
            self.exit_code = code
            self.exited_at = time.time()
        if self.io is not None:
            self.io.close()
        self._answer_waiters()

    def release_held_exit(self) -> None:
        if self.held_exit is not None:
            self.ctx.publisher.publish(self.held_exit)
            self.held_exit = None

    # -- waiting -------------------------------------------------------------------------
    def wait(self, call: Call) -> None:
        if self.exited:
            call.reply(self.wait_response())
        else:
            # the Waits of connections that closed meanwhile go (their answers would)
            self.waiters = [w for w in self.waiters if not w.conn.closed]
            self.waiters.append(call)

    def wait_response(self) -> WaitResponse:
        return WaitResponse(exit_status=self.exit_code or 0, exited_at=timestamp(self.exited_at))

    def _answer_waiters(self) -> None:
        waiters, self.waiters = self.waiters, []
        for call in waiters:
            call.reply(self.wait_response())

    def abandon(self) -> None:
        """Deleted or the shim is going: close IO; pending Waits get an error."""
        if self.io is not None:
            self.io.close()
        waiters, self.waiters = self.waiters, []
        for call in waiters:
            call.fail(Code.NOT_FOUND, f"process {self.id} was deleted: not found")


class Container:
    def __init__(
        self, ctx: Context, cid: str, bundle: str, opts: RuncOptions, runtime: Runtime
    ) -> None:
        self.ctx = ctx
        self.id = cid
        self.bundle = bundle
        self.opts = opts
        self.runtime = runtime
        self.init: Proc | None = None
        self.execs: dict[str, Proc] = {}
        self.private_pidns = True
        self.mounted = False
        self.paused = False
        self.pausing = False
        self.deleted = False
        self.on_init_exit: list[Callable[[], None]] = []
        self.on_release: list[Callable[[], None]] = []  # run when the container goes

    def proc(self, exec_id: str) -> Proc:
        if not exec_id:
            assert self.init is not None
            return self.init
        found = self.execs.get(exec_id)
        if found is None:
            raise ServiceError(Code.NOT_FOUND, f"process does not exist {exec_id}: not found")
        return found

    def runc(self, args: list[str], done: Callable[[int, str], None] | None = None) -> None:
        """Run a runc command; ``done(code, message)`` from the reaper (errors logged)."""

        def finished(code: int, message: str) -> None:
            if code:
                self.ctx.log.debug(f"{self.id}: runc {args[0]} failed: {message}")
            if done is not None:
                done(code, message)

        try:
            self.runtime.run(args, finished)
        except (OSError, SpawnError) as e:  # fork failed; runc missing or not executable
            finished(1, f"cannot run {self.runtime.path}: {e}")

    def process_exited(self, proc: Proc) -> None:
        if proc is self.init:
            for hook in self.on_init_exit:
                hook()
