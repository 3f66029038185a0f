"""The rest of the protobuf schema of the v2 front end: what a container may never use.

Rules: those of ``messages``, whose split this is. A shim imports this module at the first
call or event that needs one of its classes (Exec, Pids, Pause, Resume, Stats, Update,
ResizePty, CloseIO, Checkpoint; an OOM; the older runtime options), so that a container
that never sees them does not carry their classes. ``ALL`` and ``REGISTRY`` here span the
whole schema (both modules).
"""

from __future__ import annotations

from epollshim.v2 import messages
from epollshim.v2.messages import Event, _cid, _exec_id, _id, _msg
from epollshim.v2.pb import (
    BOOL,
    STRING,
    UINT32,
    Any,
    Empty,
    Field,
    Message,
    field,
    message,
    unpack_any,
)


@message
class ProcessInfo(Message):
    TYPE_NAME = "containerd.v1.types.ProcessInfo"
    FIELDS = (Field(1, "pid", UINT32), _msg(2, "info", Any))
    pid: int = 0
    info: Any | None = None


@message
class ExecProcessRequest(Message):
    TYPE_NAME = "containerd.task.v2.ExecProcessRequest"
    FIELDS = (
        _id(),
        _exec_id(),
        Field(3, "terminal", BOOL),
        Field(4, "stdin", STRING),
        Field(5, "stdout", STRING),
        Field(6, "stderr", STRING),
        _msg(7, "spec", Any),
    )
    id: str = ""
    exec_id: str = ""
    terminal: bool = False
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    spec: Any | None = None  # JSON of the OCI process, not protobuf (spec section 4.3.10)


@message
class ExecProcessResponse(Message):
    TYPE_NAME = "containerd.task.v2.ExecProcessResponse"


@message
class ResizePtyRequest(Message):
    TYPE_NAME = "containerd.task.v2.ResizePtyRequest"
    FIELDS = (_id(), _exec_id(), Field(3, "width", UINT32), Field(4, "height", UINT32))
    id: str = ""
    exec_id: str = ""
    width: int = 0
    height: int = 0


@message
class CloseIORequest(Message):
    TYPE_NAME = "containerd.task.v2.CloseIORequest"
    FIELDS = (_id(), _exec_id(), Field(3, "stdin", BOOL))
    id: str = ""
    exec_id: str = ""
    stdin: bool = False


@message
class PidsRequest(Message):
    TYPE_NAME = "containerd.task.v2.PidsRequest"
    FIELDS = (_id(),)
    id: str = ""


@message
class PidsResponse(Message):
    TYPE_NAME = "containerd.task.v2.PidsResponse"
    FIELDS = (_msg(1, "processes", ProcessInfo, repeated=True),)
    processes: list[ProcessInfo] = field(factory=list)


@message
class CheckpointTaskRequest(Message):
    TYPE_NAME = "containerd.task.v2.CheckpointTaskRequest"
    FIELDS = (_id(), Field(2, "path", STRING), _msg(3, "options", Any))
    id: str = ""
    path: str = ""
    options: Any | None = None


@message
class UpdateTaskRequest(Message):
    TYPE_NAME = "containerd.task.v2.UpdateTaskRequest"
    FIELDS = (_id(), _msg(2, "resources", Any), Field(3, "annotations", STRING, key=STRING))
    id: str = ""
    resources: Any | None = None  # JSON of OCI LinuxResources (spec section 4.3.13)
    annotations: dict[str, str] = field(factory=dict)


@message
class StatsRequest(Message):
    TYPE_NAME = "containerd.task.v2.StatsRequest"
    FIELDS = (_id(),)
    id: str = ""


@message
class StatsResponse(Message):
    TYPE_NAME = "containerd.task.v2.StatsResponse"
    FIELDS = (_msg(1, "stats", Any),)
    stats: Any | None = None


@message
class PauseRequest(Message):
    TYPE_NAME = "containerd.task.v2.PauseRequest"
    FIELDS = (_id(),)
    id: str = ""


@message
class ResumeRequest(Message):
    TYPE_NAME = "containerd.task.v2.ResumeRequest"
    FIELDS = (_id(),)
    id: str = ""


@message
class TaskOOM(Event):
    TYPE_NAME = "containerd.events.TaskOOM"
    TOPIC = "/tasks/oom"
    FIELDS = (_cid(),)
    container_id: str = ""


@message
class TaskExecAdded(Event):
    TYPE_NAME = "containerd.events.TaskExecAdded"
    TOPIC = "/tasks/exec-added"
    FIELDS = (_cid(), _exec_id())
    container_id: str = ""
    exec_id: str = ""


@message
class TaskExecStarted(Event):
    TYPE_NAME = "containerd.events.TaskExecStarted"
    TOPIC = "/tasks/exec-started"
    FIELDS = (_cid(), _exec_id(), Field(3, "pid", UINT32))
    container_id: str = ""
    exec_id: str = ""
    pid: int = 0


@message
class TaskPaused(Event):
    TYPE_NAME = "containerd.events.TaskPaused"
    TOPIC = "/tasks/paused"
    FIELDS = (_cid(),)
    container_id: str = ""


@message
class TaskResumed(Event):
    TYPE_NAME = "containerd.events.TaskResumed"
    TOPIC = "/tasks/resumed"
    FIELDS = (_cid(),)
    container_id: str = ""


@message
class TaskCheckpointed(Event):
    TYPE_NAME = "containerd.events.TaskCheckpointed"
    TOPIC = "/tasks/checkpointed"
    FIELDS = (_cid(), Field(2, "checkpoint", STRING))
    container_id: str = ""
    checkpoint: str = ""


@message
class CheckpointOptions(Message):
    TYPE_NAME = "containerd.runc.v1.CheckpointOptions"
    FIELDS = (
        Field(1, "exit", BOOL),
        Field(2, "open_tcp", BOOL),
        Field(3, "external_unix_sockets", BOOL),
        Field(4, "terminal", BOOL),
        Field(5, "file_locks", BOOL),
        Field(6, "empty_namespaces", STRING, repeated=True),
        Field(7, "cgroups_mode", STRING),
        Field(8, "image_path", STRING),
        Field(9, "work_path", STRING),
    )
    exit: bool = False
    open_tcp: bool = False
    external_unix_sockets: bool = False
    terminal: bool = False
    file_locks: bool = False
    empty_namespaces: list[str] = field(factory=list)
    cgroups_mode: str = ""
    image_path: str = ""
    work_path: str = ""


@message
class ProcessDetails(Message):
    TYPE_NAME = "containerd.runc.v1.ProcessDetails"
    FIELDS = (_exec_id(1),)
    exec_id: str = ""


@message
class CreateOptions(Message):
    TYPE_NAME = "containerd.linux.runc.CreateOptions"
    FIELDS = (
        Field(1, "no_pivot_root", BOOL),
        Field(2, "open_tcp", BOOL),
        Field(3, "external_unix_sockets", BOOL),
        Field(4, "terminal", BOOL),
        Field(5, "file_locks", BOOL),
        Field(6, "empty_namespaces", STRING, repeated=True),
        Field(7, "cgroups_mode", STRING),
        Field(8, "no_new_keyring", BOOL),
        Field(9, "shim_cgroup", STRING),
        Field(10, "io_uid", UINT32),
        Field(11, "io_gid", UINT32),
        Field(12, "criu_work_path", STRING),
        Field(13, "criu_image_path", STRING),
    )
    no_pivot_root: bool = False
    open_tcp: bool = False
    external_unix_sockets: bool = False
    terminal: bool = False
    file_locks: bool = False
    empty_namespaces: list[str] = field(factory=list)
    cgroups_mode: str = ""
    no_new_keyring: bool = False
    shim_cgroup: str = ""
    io_uid: int = 0
    io_gid: int = 0
    criu_work_path: str = ""
    criu_image_path: str = ""


@message
class RuntimeOptions(Message):
    """What ``ctr --runtime-config-path`` sends for non-runc runtimes."""

    TYPE_NAME = "runtimeoptions.v1.Options"
    FIELDS = (Field(1, "type_url", STRING), Field(2, "config_path", STRING))
    type_url: str = ""
    config_path: str = ""


# method name -> (request class, response class), spec section 4.2: the calls that are not
# ``messages.TASK_METHODS``
TASK_METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    "Pids": (PidsRequest, PidsResponse),
    "Pause": (PauseRequest, Empty),
    "Resume": (ResumeRequest, Empty),
    "Checkpoint": (CheckpointTaskRequest, Empty),
    "Exec": (ExecProcessRequest, Empty),
    "ResizePty": (ResizePtyRequest, Empty),
    "CloseIO": (CloseIORequest, Empty),
    "Update": (UpdateTaskRequest, Empty),
    "Stats": (StatsRequest, StatsResponse),
}

# every message class of both modules, and the full name -> class table for Any
ALL: tuple[type[Message], ...] = tuple(
    dict.fromkeys(
        (
            *messages.ALL,
            ProcessInfo,
            *(c for pair in TASK_METHODS.values() for c in pair),
            ExecProcessResponse,
            TaskOOM,
            TaskExecAdded,
            TaskExecStarted,
            TaskPaused,
            TaskResumed,
            TaskCheckpointed,
            CheckpointOptions,
            ProcessDetails,
            CreateOptions,
            RuntimeOptions,
        )
    )
)
REGISTRY: dict[str, type[Message]] = {cls.TYPE_NAME: cls for cls in ALL}


def unpack(value: Any) -> Message:
    """Decode an Any by its type URL; ``pb.DecodeError`` for a type we do not know."""
    return unpack_any(value, REGISTRY)
