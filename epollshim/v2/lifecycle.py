"""Create, Start, Exec and Delete: the methods that run runc and move the machines.

Rules (spec sections 4.3, 4.5, 6.5, 6.6):
- Create mounts the rootfs, opens the stdio, runs ``runc create`` and replies once runc
  exited; on any failure the mounts, fds and console socket are released before the
  UNKNOWN "OCI runtime create failed: ..." answer, and the container is not registered
  (containerd's following Delete gets NOT_FOUND, as from runc-v2).
- A stdout URI no output can be made of (``http://``...) is INVALID_ARGUMENT, from Create
  or Exec, before anything is acquired. With ``binary://``, runc runs only once the
  logging binary said it is ready (``ProcIO.when_ready``, from the loop); if it never
  does, Create (or an exec's Start) fails UNKNOWN, everything released, binary killed.
- Start of an init runs ``runc start``; of an exec, ``runc exec --detach`` with the
  process JSON in a private temp file. ``TaskExecStarted`` is published before the pid is
  fed to the machine, so an exit replayed by ``watch`` comes after it.
- Delete of an init is allowed when never started or once the exit is recorded; it runs
  ``runc delete``, closes every fd, unmounts, then publishes ``TaskDelete``.
"""

from __future__ import annotations

import errno
import os

from epollshim import minijson
from epollshim.core import events as ev
from epollshim.shell.process import SpawnError
from epollshim.shell.runtime import Runtime, read_pid_file
from epollshim.v2 import mount, oom, options
from epollshim.v2.container import Container, Proc, ServiceError
from epollshim.v2.messages import (
    Code,
    CreateTaskRequest,
    CreateTaskResponse,
    DeleteRequest,
    DeleteResponse,
    StartRequest,
    StartResponse,
    TaskCreate,
    TaskDelete,
    TaskIO,
    TaskStart,
    TaskStatus,
    timestamp,
)
from epollshim.v2.server import Call
from epollshim.v2.stdio import Output, output_of

TYPE_CHECKING = False  # typing costs memory in every shim; mypy knows this name
if TYPE_CHECKING:  # pragma: no cover
    from epollshim.v2.messages_more import ExecProcessRequest
    from epollshim.v2.service import TaskService


class Lifecycle:
    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.ctx = service.ctx

    # -- Create ---------------------------------------------------------------------------
    def create(self, call: Call, req: CreateTaskRequest) -> None:
        svc = self.service
        if req.id in svc.containers or req.id in svc.creating:
            raise ServiceError(Code.ALREADY_EXISTS, f"container {req.id}: already exists")
        if req.checkpoint:
            raise ServiceError(Code.UNIMPLEMENTED, "restoring a checkpoint is not supported")
        output = _output(req.stdout)
        try:
            opts = options.decode(req.options, self.ctx.runc_path)
        except options.OptionsError as e:
            raise ServiceError(Code.INVALID_ARGUMENT, str(e)) from e
        bundle = req.bundle or os.getcwd()
        runtime = Runtime(
            self.ctx.router,
            path=opts.binary,
            root=opts.runc_root(self.ctx.namespace),
            log_path=os.path.join(bundle, "log.json"),
            extra=opts.global_args(),
        )
        c = Container(self.ctx, req.id, bundle, opts, runtime)
        _write(os.path.join(bundle, "options.json"), opts.to_json().encode())
        rootfs = os.path.join(bundle, "rootfs")
        try:
            mount.mount_all([(m.type, m.source, list(m.options)) for m in req.rootfs], rootfs)
        except mount.MountError as e:
            runtime.close()
            raise ServiceError(Code.UNKNOWN, f"failed to mount rootfs component: {e}") from e
        c.mounted = bool(req.rootfs)
        p = c.init = Proc(c, "", (req.stdin, req.stdout, req.stderr), req.terminal)
        p.output = output
        try:
            p.io = p.new_io()
            stdio = p.io.open()
        except (OSError, SpawnError) as e:
            self._release(c)
            raise ServiceError(Code.UNKNOWN, f"failed to open stdio of {c.id}: {e}") from e
        svc.creating.add(c.id)
        p.io.when_ready(lambda error: self._run_create(call, req, c, stdio, error))

    def _run_create(
        self,
        call: Call,
        req: CreateTaskRequest,
        c: Container,
        stdio: tuple[int, int, int],
        error: str,
    ) -> None:
        """The stdio is ready (a logging binary said so): ``runc create``. The init's guard
        is read from config.json while runc runs (containerd waits on runc, not on that): no
        exit is reaped before the loop runs again, so its machine is made in time."""
        p = c.proc("")
        assert p.io is not None
        if error:
            self.service.creating.discard(c.id)
            self._release(c)
            call.fail(Code.UNKNOWN, f"failed to create init process I/O: {error}")
            return
        pidfile = os.path.join(c.bundle, "init.pid")
        console = ["--console-socket", p.io.console_path] if p.io.console_path else []
        args = ["create", "--bundle", c.bundle, "--pid-file", pidfile, *console]
        args += [*c.opts.create_args(), c.id]

        def created(code: int, message: str) -> None:
            self._created(call, req, c, code, message)

        failure = ""
        try:
            c.runtime.run(args, created, stdio=stdio)
        except SpawnError as e:
            failure = str(e)
        finally:
            p.io.ran()
        c.private_pidns = _private_pidns(c.bundle)
        p.begin()
        if failure:
            created(1, failure)

    def _created(
        self, call: Call, req: CreateTaskRequest, c: Container, code: int, message: str
    ) -> None:
        p = c.proc("")
        assert p.io is not None
        pid = 0
        if code == 0:
            try:
                pid = read_pid_file(os.path.join(c.bundle, "init.pid"))
                if p.terminal:
                    p.io.receive_console()
            except (OSError, ValueError) as e:  # ValueError: ConsoleError too
                code, message = 1, str(e)
                c.runc(["delete", "--force", c.id])
        self.service.creating.discard(c.id)
        if code:
            p.feed(ev.RuntimeFailed("create", message))
            self._release(c)
            call.fail(Code.UNKNOWN, f"OCI runtime create failed: {message}")
            return
        p.feed(ev.PidKnown(pid))
        self.service.containers[c.id] = c
        oom.watch(c, pid)
        io = TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal)
        self.ctx.publisher.publish(
            TaskCreate(container_id=c.id, bundle=c.bundle, rootfs=req.rootfs, io=io, pid=pid)
        )
        call.reply(CreateTaskResponse(pid=pid))

    def _release(self, c: Container) -> None:
        """Everything Create acquired, in reverse (failure paths and Delete)."""
        for p in [*c.execs.values(), *([c.init] if c.init else [])]:
            p.abandon()
        for hook in c.on_release:
            hook()
        if c.mounted:
            try:
                mount.unmount_all(os.path.join(c.bundle, "rootfs"))
            except mount.MountError as e:
                self.ctx.log.error(f"{c.id}: {e}")
            c.mounted = False
        c.runtime.close()

    # -- Start ----------------------------------------------------------------------------
    def start(self, call: Call, req: StartRequest) -> None:
        c = self.service.container(req.id)
        p = c.proc(req.exec_id)
        if req.exec_id:
            self._start_exec(call, c, p)
            return
        if p.starting or p.started or p.status() != TaskStatus.CREATED or not p.pid:
            raise ServiceError(Code.UNKNOWN, f"cannot start a {p.status_name()} process")
        p.starting = True

        def started(code: int, message: str) -> None:
            p.starting = False
            if code:
                p.feed(ev.RuntimeFailed("start", message))
                p.release_held_exit()
                call.fail(Code.UNKNOWN, f"OCI runtime start failed: {message}")
                return
            p.started = True
            self.ctx.publisher.publish(TaskStart(container_id=c.id, pid=p.pid))
            p.release_held_exit()
            call.reply(StartResponse(pid=p.pid))

        c.runc(["start", c.id], started)

    def _start_exec(self, call: Call, c: Container, p: Proc) -> None:
        if p.machine is not None or p.starting:
            raise ServiceError(Code.UNKNOWN, f"cannot start a {p.status_name()} process")
        init = c.proc("")
        if init.exited or init.gone:
            raise ServiceError(Code.UNKNOWN, "cannot start an exec in a stopped container")
        try:
            spec = minijson.loads(p.spec)
            if not isinstance(spec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ServiceError(Code.INVALID_ARGUMENT, f"exec {p.exec_id}: bad spec: {e}") from e
        spec["terminal"] = p.terminal
        try:
            p.io = p.new_io()
            stdio = p.io.open()
        except (OSError, SpawnError) as e:
            raise ServiceError(Code.UNKNOWN, f"failed to open stdio of {p.name}: {e}") from e
        p.starting = True
        p.io.when_ready(lambda error: self._run_exec(call, c, p, spec, stdio, error))

    def _run_exec(
        self,
        call: Call,
        c: Container,
        p: Proc,
        spec: dict[str, object],
        stdio: tuple[int, int, int],
        error: str,
    ) -> None:
        """The stdio is ready (a logging binary said so): ``runc exec --detach``."""
        assert p.io is not None
        if error:
            p.starting = False
            p.fail_without_exit(255)  # closes its IO; a Wait already parked is answered
            call.fail(Code.UNKNOWN, f"failed to create exec process I/O: {error}")
            return
        tmp = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
        spec_path = os.path.join(tmp, "runc-process" + os.urandom(8).hex())
        pidfile = os.path.join(c.bundle, f"{p.exec_id}.pid")
        console = ["--console-socket", p.io.console_path] if p.io.console_path else []
        args = ["exec", "--process", spec_path, *console, "--detach", "--pid-file", pidfile, c.id]
        p.begin()

        def done(code: int, message: str) -> None:
            _unlink(spec_path)
            self._exec_started(call, c, p, pidfile, code, message)

        try:  # every failure from here on is runc exec's: Start fails, Waits are answered
            _write(spec_path, minijson.dumps(spec).encode(), mode=0o600)
            c.runtime.run(args, done, stdio=stdio)
        except OSError as e:  # EMFILE, ENFILE, ENOSPC: the spec file or runc's fds
            done(1, f"cannot run runc exec: {e.strerror}")
        except SpawnError as e:
            done(1, str(e))
        finally:
            p.io.ran()

    def _exec_started(
        self, call: Call, c: Container, p: Proc, pidfile: str, code: int, message: str
    ) -> None:
        assert p.io is not None
        p.starting = False
        pid = 0
        if code == 0:
            try:
                pid = read_pid_file(pidfile)
                if p.terminal:
                    p.io.receive_console()
            except (OSError, ValueError) as e:  # ValueError: ConsoleError too
                code, message = 1, str(e)
        if code:
            p.feed(ev.RuntimeFailed("exec", message))
            p.fail_without_exit(255)
            call.fail(Code.UNKNOWN, f"OCI runtime exec failed: {message}")
            return
        p.started = True
        from epollshim.v2.messages_more import TaskExecStarted  # imported by the Exec call

        self.ctx.publisher.publish(TaskExecStarted(container_id=c.id, exec_id=p.exec_id, pid=pid))
        p.feed(ev.PidKnown(pid))
        call.reply(StartResponse(pid=pid))

    # -- Exec -----------------------------------------------------------------------------
    def exec(self, call: Call, req: ExecProcessRequest) -> None:
        c = self.service.container(req.id)
        if req.exec_id in c.execs or req.exec_id == c.id or not req.exec_id:
            raise ServiceError(Code.ALREADY_EXISTS, f"id {req.exec_id}: already exists")
        init = c.proc("")
        if init.status() not in (TaskStatus.CREATED, TaskStatus.RUNNING) or init.gone:
            raise ServiceError(Code.UNKNOWN, f"cannot exec in a {init.status_name()} state")
        p = Proc(c, req.exec_id, (req.stdin, req.stdout, req.stderr), req.terminal)
        p.output = _output(req.stdout)
        p.spec = req.spec.value if req.spec else b"{}"
        c.execs[req.exec_id] = p
        from epollshim.v2.messages_more import TaskExecAdded  # imported to decode the call

        self.ctx.publisher.publish(TaskExecAdded(container_id=c.id, exec_id=req.exec_id))
        call.reply()

    # -- Delete ---------------------------------------------------------------------------
    def delete(self, call: Call, req: DeleteRequest) -> None:
        c = self.service.container(req.id)
        p = c.proc(req.exec_id)
        status = p.status()
        never_started = p.machine is None or (not p.started and not p.starting and not p.gone)
        if status != TaskStatus.STOPPED and not never_started:
            raise ServiceError(Code.UNKNOWN, f"cannot delete a {p.status_name()} process")
        if req.exec_id:
            p.abandon()
            del c.execs[req.exec_id]
            _unlink(os.path.join(c.bundle, f"{req.exec_id}.pid"))
            call.reply(_delete_response(p))
            return

        def deleted(code: int, message: str) -> None:
            if code and "does not exist" not in message:
                call.fail(Code.UNKNOWN, f"failed to delete task: {message}")
                return
            c.deleted = True
            self.service.containers.pop(c.id, None)
            self._release(c)
            response = _delete_response(p)
            self.ctx.publisher.publish(
                TaskDelete(
                    container_id=c.id,
                    pid=response.pid,
                    exit_status=response.exit_status,
                    exited_at=response.exited_at,
                )
            )
            call.reply(response)

        c.runc(["delete", c.id], deleted)


def _output(stdout: str) -> Output:
    try:
        return output_of(stdout)
    except ValueError as e:  # stdio_uri.StdioError: the URI names no output
        raise ServiceError(Code.INVALID_ARGUMENT, str(e)) from e


def _delete_response(p: Proc) -> DeleteResponse:
    return DeleteResponse(pid=p.pid, exit_status=p.exit_code or 0, exited_at=timestamp(p.exited_at))


def _private_pidns(bundle: str) -> bool:
    """Does config.json give the container its own pid namespace (spec 7.8)?"""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = minijson.loads(f.read())
        namespaces = spec["linux"]["namespaces"]
        return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
