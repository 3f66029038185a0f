"""The protobuf schema the v2 front end speaks, declared for ``epollshim.v2.pb``.

Rules of this module:
- Pure data: message classes, constants and two tiny helpers; no IO, no clock.
- Field numbers, names and types are exactly those of containerd 1.6 (shared spec
  containerd-shim-v2.md sections 3, 4, 5 and 6.2; containerd v1.6 runtime/v2/task/shim.proto,
  api/events/task.proto, runtime/v2/runc/options/oci.proto, runtime/linux/runctypes/runc.proto,
  ttrpc v1.1 request.proto). Class names are the proto message names; ``TYPE_NAME`` is the
  full name, which is also the ``Any`` type URL containerd uses (no prefix).
- ``Timestamp`` fields that must be "unset" to Go carry Go's zero time (``go_zero_time()``),
  never seconds 0, which Go shows as a real time in 1970 (spec section 3.8).
- Here: the messages every container's life uses (ttrpc, Create, Start, State, Kill, Wait,
  Delete, Connect, Shutdown, their events, runc's options). The rest of the schema (exec,
  pids, pause and resume, stats, update, resize, close-io, checkpoint, OOM, older options)
  is ``messages_more``, imported at the first call that needs it: each message class costs
  a shim ~5 KiB whether or not it is ever used.
"""

from __future__ import annotations

from epollshim.v2.pb import (
    BOOL,
    BYTES,
    ENUM,
    INT32,
    INT64,
    MESSAGE,
    STRING,
    UINT32,
    Any,
    Empty,
    Field,
    Message,
    Timestamp,
    field,
    message,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import ClassVar

TASK_SERVICE = "containerd.task.v2.Task"
EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
GO_ZERO_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, Go's time.Time{}


class Code:
    """gRPC status codes (ttrpc ``Status.code``): plain ints (``enum`` costs ~0.9 MB a shim)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class TaskStatus:
    """``containerd.v1.types.Status`` (``StateResponse.status``): plain ints."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


def _names(constants: type) -> dict[int, str]:
    return {v: k for k, v in vars(constants).items() if k.isupper()}


CODE_NAMES = _names(Code)  # 5: "NOT_FOUND"
TASK_STATUS_NAMES = _names(TaskStatus)  # 2: "RUNNING"


def go_zero_time() -> Timestamp:
    """The Timestamp Go reads as "not set" (``exited_at`` of a running process)."""
    return Timestamp(GO_ZERO_SECONDS, 0)


def timestamp(t: float | None) -> Timestamp:
    """A Timestamp from ``time.time()``, or Go's zero time for None."""
    return go_zero_time() if t is None else Timestamp.from_float(t)


def _id(n: int = 1) -> Field:
    return Field(n, "id", STRING)


def _exec_id(n: int = 2) -> Field:
    return Field(n, "exec_id", STRING)


def _cid() -> Field:
    return Field(1, "container_id", STRING)


def _msg(n: int, name: str, cls: type[Message], *, repeated: bool = False) -> Field:
    return Field(n, name, MESSAGE, cls, repeated=repeated)


# --------------------------------------------------------------- ttrpc and google.rpc


@message
class Status(Message):
    TYPE_NAME = "google.rpc.Status"
    FIELDS = (
        Field(1, "code", INT32),
        Field(2, "message", STRING),
        _msg(3, "details", Any, repeated=True),
    )
    code: int = 0
    message: str = ""
    details: list[Any] = field(factory=list)


@message
class KeyValue(Message):
    TYPE_NAME = "ttrpc.KeyValue"
    FIELDS = (Field(1, "key", STRING), Field(2, "value", STRING))
    key: str = ""
    value: str = ""


@message
class Request(Message):
    TYPE_NAME = "ttrpc.Request"
    FIELDS = (
        Field(1, "service", STRING),
        Field(2, "method", STRING),
        Field(3, "payload", BYTES),
        Field(4, "timeout_nano", INT64),
        _msg(5, "metadata", KeyValue, repeated=True),
    )
    service: str = ""
    method: str = ""
    payload: bytes = b""
    timeout_nano: int = 0
    metadata: list[KeyValue] = field(factory=list)


@message
class Response(Message):
    TYPE_NAME = "ttrpc.Response"
    FIELDS = (_msg(1, "status", Status), Field(2, "payload", BYTES))
    status: Status | None = None
    payload: bytes = b""


# --------------------------------------------------------------- shared containerd types


@message
class Mount(Message):
    TYPE_NAME = "containerd.types.Mount"
    FIELDS = (
        Field(1, "type", STRING),
        Field(2, "source", STRING),
        Field(3, "target", STRING),
        Field(4, "options", STRING, repeated=True),
    )
    type: str = ""
    source: str = ""
    target: str = ""
    options: list[str] = field(factory=list)


# --------------------------------------------------------------- containerd.task.v2


@message
class CreateTaskRequest(Message):
    TYPE_NAME = "containerd.task.v2.CreateTaskRequest"
    FIELDS = (
        _id(),
        Field(2, "bundle", STRING),
        _msg(3, "rootfs", Mount, repeated=True),
        Field(4, "terminal", BOOL),
        Field(5, "stdin", STRING),
        Field(6, "stdout", STRING),
        Field(7, "stderr", STRING),
        Field(8, "checkpoint", STRING),
        Field(9, "parent_checkpoint", STRING),
        _msg(10, "options", Any),
    )
    id: str = ""
    bundle: str = ""
    rootfs: list[Mount] = field(factory=list)
    terminal: bool = False
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    checkpoint: str = ""
    parent_checkpoint: str = ""
    options: Any | None = None


@message
class CreateTaskResponse(Message):
    TYPE_NAME = "containerd.task.v2.CreateTaskResponse"
    FIELDS = (Field(1, "pid", UINT32),)
    pid: int = 0


@message
class DeleteRequest(Message):
    TYPE_NAME = "containerd.task.v2.DeleteRequest"
    FIELDS = (_id(), _exec_id())
    id: str = ""
    exec_id: str = ""


@message
class DeleteResponse(Message):
    TYPE_NAME = "containerd.task.v2.DeleteResponse"
    FIELDS = (
        Field(1, "pid", UINT32),
        Field(2, "exit_status", UINT32),
        _msg(3, "exited_at", Timestamp),
    )
    pid: int = 0
    exit_status: int = 0
    exited_at: Timestamp | None = None


@message
class StateRequest(Message):
    TYPE_NAME = "containerd.task.v2.StateRequest"
    FIELDS = (_id(), _exec_id())
    id: str = ""
    exec_id: str = ""


@message
class StateResponse(Message):
    TYPE_NAME = "containerd.task.v2.StateResponse"
    FIELDS = (
        _id(),
        Field(2, "bundle", STRING),
        Field(3, "pid", UINT32),
        Field(4, "status", ENUM),
        Field(5, "stdin", STRING),
        Field(6, "stdout", STRING),
        Field(7, "stderr", STRING),
        Field(8, "terminal", BOOL),
        Field(9, "exit_status", UINT32),
        _msg(10, "exited_at", Timestamp),
        _exec_id(11),
    )
    id: str = ""
    bundle: str = ""
    pid: int = 0
    status: int = 0  # a TaskStatus
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: Timestamp | None = None
    exec_id: str = ""


@message
class KillRequest(Message):
    TYPE_NAME = "containerd.task.v2.KillRequest"
    FIELDS = (_id(), _exec_id(), Field(3, "signal", UINT32), Field(4, "all", BOOL))
    id: str = ""
    exec_id: str = ""
    signal: int = 0
    all: bool = False


@message
class StartRequest(Message):
    TYPE_NAME = "containerd.task.v2.StartRequest"
    FIELDS = (_id(), _exec_id())
    id: str = ""
    exec_id: str = ""


@message
class StartResponse(Message):
    TYPE_NAME = "containerd.task.v2.StartResponse"
    FIELDS = (Field(1, "pid", UINT32),)
    pid: int = 0


@message
class WaitRequest(Message):
    TYPE_NAME = "containerd.task.v2.WaitRequest"
    FIELDS = (_id(), _exec_id())
    id: str = ""
    exec_id: str = ""


@message
class WaitResponse(Message):
    TYPE_NAME = "containerd.task.v2.WaitResponse"
    FIELDS = (Field(1, "exit_status", UINT32), _msg(2, "exited_at", Timestamp))
    exit_status: int = 0
    exited_at: Timestamp | None = None


@message
class ConnectRequest(Message):
    TYPE_NAME = "containerd.task.v2.ConnectRequest"
    FIELDS = (_id(),)
    id: str = ""


@message
class ConnectResponse(Message):
    TYPE_NAME = "containerd.task.v2.ConnectResponse"
    FIELDS = (
        Field(1, "shim_pid", UINT32),
        Field(2, "task_pid", UINT32),
        Field(3, "version", STRING),
    )
    shim_pid: int = 0
    task_pid: int = 0
    version: str = ""


@message
class ShutdownRequest(Message):
    TYPE_NAME = "containerd.task.v2.ShutdownRequest"
    FIELDS = (_id(), Field(2, "now", BOOL))
    id: str = ""
    now: bool = False


# method name -> (request class, response class), spec section 4.2: the calls a container
# sees in every life (ctr run, CRI); the others are ``messages_more.TASK_METHODS``
TASK_METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    "State": (StateRequest, StateResponse),
    "Create": (CreateTaskRequest, CreateTaskResponse),
    "Start": (StartRequest, StartResponse),
    "Delete": (DeleteRequest, DeleteResponse),
    "Kill": (KillRequest, Empty),
    "Wait": (WaitRequest, WaitResponse),
    "Connect": (ConnectRequest, ConnectResponse),
    "Shutdown": (ShutdownRequest, Empty),
}


# --------------------------------------------------------------- containerd.events


class Event(Message):
    """A containerd event, published under its ``TOPIC`` (spec section 5.2)."""

    __slots__ = ()
    TOPIC: ClassVar[str] = ""


@message
class TaskIO(Message):
    TYPE_NAME = "containerd.events.TaskIO"
    FIELDS = (
        Field(1, "stdin", STRING),
        Field(2, "stdout", STRING),
        Field(3, "stderr", STRING),
        Field(4, "terminal", BOOL),
    )
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@message
class TaskCreate(Event):
    TYPE_NAME = "containerd.events.TaskCreate"
    TOPIC = "/tasks/create"
    FIELDS = (
        _cid(),
        Field(2, "bundle", STRING),
        _msg(3, "rootfs", Mount, repeated=True),
        _msg(4, "io", TaskIO),
        Field(5, "checkpoint", STRING),
        Field(6, "pid", UINT32),
    )
    container_id: str = ""
    bundle: str = ""
    rootfs: list[Mount] = field(factory=list)
    io: TaskIO | None = None
    checkpoint: str = ""
    pid: int = 0


@message
class TaskStart(Event):
    TYPE_NAME = "containerd.events.TaskStart"
    TOPIC = "/tasks/start"
    FIELDS = (_cid(), Field(2, "pid", UINT32))
    container_id: str = ""
    pid: int = 0


@message
class TaskDelete(Event):
    TYPE_NAME = "containerd.events.TaskDelete"
    TOPIC = "/tasks/delete"
    FIELDS = (
        _cid(),
        Field(2, "pid", UINT32),
        Field(3, "exit_status", UINT32),
        _msg(4, "exited_at", Timestamp),
        _id(5),
    )
    container_id: str = ""
    pid: int = 0
    exit_status: int = 0
    exited_at: Timestamp | None = None
    id: str = ""  # the exec id; empty for the init


@message
class TaskExit(Event):
    TYPE_NAME = "containerd.events.TaskExit"
    TOPIC = "/tasks/exit"
    FIELDS = (
        _cid(),
        _id(2),
        Field(3, "pid", UINT32),
        Field(4, "exit_status", UINT32),
        _msg(5, "exited_at", Timestamp),
    )
    container_id: str = ""
    id: str = ""  # the exec id, or the container id for the init
    pid: int = 0
    exit_status: int = 0
    exited_at: Timestamp | None = None


@message
class Envelope(Message):
    TYPE_NAME = "containerd.services.events.ttrpc.v1.Envelope"
    FIELDS = (
        _msg(1, "timestamp", Timestamp),
        Field(2, "namespace", STRING),
        Field(3, "topic", STRING),
        _msg(4, "event", Any),
    )
    timestamp: Timestamp | None = None  # must be set: containerd rejects a zero time
    namespace: str = ""
    topic: str = ""
    event: Any | None = None  # type_url "containerd.events.<Name>"


@message
class ForwardRequest(Message):
    TYPE_NAME = "containerd.services.events.ttrpc.v1.ForwardRequest"
    FIELDS = (_msg(1, "envelope", Envelope),)
    envelope: Envelope | None = None


# --------------------------------------------------------------- runtime options (6.2)


@message
class Options(Message):
    TYPE_NAME = "containerd.runc.v1.Options"
    FIELDS = (
        Field(1, "no_pivot_root", BOOL),
        Field(2, "no_new_keyring", BOOL),
        Field(3, "shim_cgroup", STRING),
        Field(4, "io_uid", UINT32),
        Field(5, "io_gid", UINT32),
        Field(6, "binary_name", STRING),
        Field(7, "root", STRING),
        Field(8, "criu_path", STRING),
        Field(9, "systemd_cgroup", BOOL),
        Field(10, "criu_image_path", STRING),
        Field(11, "criu_work_path", STRING),
    )
    no_pivot_root: bool = False
    no_new_keyring: bool = False
    shim_cgroup: str = ""
    io_uid: int = 0
    io_gid: int = 0
    binary_name: str = ""
    root: str = ""
    criu_path: str = ""
    systemd_cgroup: bool = False
    criu_image_path: str = ""
    criu_work_path: str = ""


# every message class here (``messages_more.ALL``: the whole schema)
ALL: tuple[type[Message], ...] = tuple(
    dict.fromkeys(
        (
            Any,
            Empty,
            Timestamp,
            Status,
            KeyValue,
            Request,
            Response,
            Mount,
            *(c for pair in TASK_METHODS.values() for c in pair),
            TaskIO,
            TaskCreate,
            TaskStart,
            TaskExit,
            TaskDelete,
            Envelope,
            ForwardRequest,
            Options,
        )
    )
)
