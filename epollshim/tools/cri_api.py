"""The part of the Kubernetes CRI (``runtime.v1``) our tests and demo speak, for ``pb``.

Rules of this module:

* Pure data, like ``epollshim.v2.messages``: message classes for ``epollshim.v2.pb`` and a few
  constants; no IO. Never imported by a shim (it lives in ``tools``).
* Field numbers, names and kinds are those of the public CRI definition, package
  ``runtime.v1`` (k8s.io/cri-api ``pkg/apis/runtime/v1/api.proto``), which containerd 1.6
  serves beside ``v1alpha2`` with the same numbers. Only the fields we use are declared;
  a field we leave out is skipped when decoding, as any proto3 reader does. A test checks
  every class against descriptors transcribed from the definition, with ``protobuf`` as the
  oracle (``tests/cri/test_cri_schema.py``).
* Class names are the proto names; ``TYPE_NAME`` is ``runtime.v1.<Name>``. Enums are plain
  int constants (``NamespaceMode.NODE``), fields of kind ``ENUM``.
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
    UINT64,
    Field,
    Message,
    field,
    message,
)

PACKAGE = "runtime.v1"
RUNTIME_SERVICE = "runtime.v1.RuntimeService"
IMAGE_SERVICE = "runtime.v1.ImageService"


class NamespaceMode:
    POD = 0
    CONTAINER = 1
    NODE = 2
    TARGET = 3


class PodSandboxState:
    SANDBOX_READY = 0
    SANDBOX_NOTREADY = 1


class ContainerState:
    CONTAINER_CREATED = 0
    CONTAINER_RUNNING = 1
    CONTAINER_EXITED = 2
    CONTAINER_UNKNOWN = 3


CONTAINER_STATE_NAMES = {v: k for k, v in vars(ContainerState).items() if k.isupper()}


def _s(n: int, name: str) -> Field:
    return Field(n, name, STRING)


def _m(n: int, name: str, cls: type[Message], *, repeated: bool = False) -> Field:
    return Field(n, name, MESSAGE, cls, repeated=repeated)


def _map(n: int, name: str) -> Field:
    return Field(n, name, STRING, key=STRING)


def _t(name: str) -> str:
    return f"{PACKAGE}.{name}"


# --------------------------------------------------------------- shared small types


@message
class Int64Value(Message):
    TYPE_NAME = _t("Int64Value")
    FIELDS = (Field(1, "value", INT64),)
    value: int = 0


@message
class UInt64Value(Message):
    TYPE_NAME = _t("UInt64Value")
    FIELDS = (Field(1, "value", UINT64),)
    value: int = 0


@message
class KeyValue(Message):
    TYPE_NAME = _t("KeyValue")
    FIELDS = (_s(1, "key"), _s(2, "value"))
    key: str = ""
    value: str = ""


@message
class ImageSpec(Message):
    TYPE_NAME = _t("ImageSpec")
    FIELDS = (_s(1, "image"), _map(2, "annotations"))
    image: str = ""
    annotations: dict[str, str] = field(factory=dict)


@message
class NamespaceOption(Message):
    TYPE_NAME = _t("NamespaceOption")
    FIELDS = (
        Field(1, "network", ENUM),
        Field(2, "pid", ENUM),
        Field(3, "ipc", ENUM),
        _s(4, "target_id"),
    )
    network: int = 0
    pid: int = 0
    ipc: int = 0
    target_id: str = ""


@message
class DNSConfig(Message):
    TYPE_NAME = _t("DNSConfig")
    FIELDS = (
        Field(1, "servers", STRING, repeated=True),
        Field(2, "searches", STRING, repeated=True),
        Field(3, "options", STRING, repeated=True),
    )
    servers: list[str] = field(factory=list)
    searches: list[str] = field(factory=list)
    options: list[str] = field(factory=list)


# --------------------------------------------------------------- pod sandboxes


@message
class LinuxSandboxSecurityContext(Message):
    TYPE_NAME = _t("LinuxSandboxSecurityContext")
    FIELDS = (
        _m(1, "namespace_options", NamespaceOption),
        _m(3, "run_as_user", Int64Value),
        Field(4, "readonly_rootfs", BOOL),
        Field(6, "privileged", BOOL),
    )
    namespace_options: NamespaceOption | None = None
    run_as_user: Int64Value | None = None
    readonly_rootfs: bool = False
    privileged: bool = False


@message
class LinuxPodSandboxConfig(Message):
    TYPE_NAME = _t("LinuxPodSandboxConfig")
    FIELDS = (
        _s(1, "cgroup_parent"),
        _m(2, "security_context", LinuxSandboxSecurityContext),
        _map(3, "sysctls"),
    )
    cgroup_parent: str = ""
    security_context: LinuxSandboxSecurityContext | None = None
    sysctls: dict[str, str] = field(factory=dict)


@message
class PodSandboxMetadata(Message):
    TYPE_NAME = _t("PodSandboxMetadata")
    FIELDS = (_s(1, "name"), _s(2, "uid"), _s(3, "namespace"), Field(4, "attempt", UINT32))
    name: str = ""
    uid: str = ""
    namespace: str = ""
    attempt: int = 0


@message
class PodSandboxConfig(Message):
    TYPE_NAME = _t("PodSandboxConfig")
    FIELDS = (
        _m(1, "metadata", PodSandboxMetadata),
        _s(2, "hostname"),
        _s(3, "log_directory"),
        _m(4, "dns_config", DNSConfig),
        _map(6, "labels"),
        _map(7, "annotations"),
        _m(8, "linux", LinuxPodSandboxConfig),
    )
    metadata: PodSandboxMetadata | None = None
    hostname: str = ""
    log_directory: str = ""
    dns_config: DNSConfig | None = None
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    linux: LinuxPodSandboxConfig | None = None


@message
class RunPodSandboxRequest(Message):
    TYPE_NAME = _t("RunPodSandboxRequest")
    FIELDS = (_m(1, "config", PodSandboxConfig), _s(2, "runtime_handler"))
    config: PodSandboxConfig | None = None
    runtime_handler: str = ""


@message
class RunPodSandboxResponse(Message):
    TYPE_NAME = _t("RunPodSandboxResponse")
    FIELDS = (_s(1, "pod_sandbox_id"),)
    pod_sandbox_id: str = ""


@message
class StopPodSandboxRequest(Message):
    TYPE_NAME = _t("StopPodSandboxRequest")
    FIELDS = (_s(1, "pod_sandbox_id"),)
    pod_sandbox_id: str = ""


@message
class StopPodSandboxResponse(Message):
    TYPE_NAME = _t("StopPodSandboxResponse")


@message
class RemovePodSandboxRequest(Message):
    TYPE_NAME = _t("RemovePodSandboxRequest")
    FIELDS = (_s(1, "pod_sandbox_id"),)
    pod_sandbox_id: str = ""


@message
class RemovePodSandboxResponse(Message):
    TYPE_NAME = _t("RemovePodSandboxResponse")


@message
class PodSandboxStatusRequest(Message):
    TYPE_NAME = _t("PodSandboxStatusRequest")
    FIELDS = (_s(1, "pod_sandbox_id"), Field(2, "verbose", BOOL))
    pod_sandbox_id: str = ""
    verbose: bool = False


@message
class PodSandboxStatus(Message):
    TYPE_NAME = _t("PodSandboxStatus")
    FIELDS = (
        _s(1, "id"),
        _m(2, "metadata", PodSandboxMetadata),
        Field(3, "state", ENUM),
        Field(4, "created_at", INT64),
        _map(7, "labels"),
        _map(8, "annotations"),
        _s(9, "runtime_handler"),
    )
    id: str = ""
    metadata: PodSandboxMetadata | None = None
    state: int = 0
    created_at: int = 0
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    runtime_handler: str = ""


@message
class PodSandboxStatusResponse(Message):
    TYPE_NAME = _t("PodSandboxStatusResponse")
    FIELDS = (_m(1, "status", PodSandboxStatus), _map(2, "info"))
    status: PodSandboxStatus | None = None
    info: dict[str, str] = field(factory=dict)


@message
class PodSandboxStateValue(Message):
    TYPE_NAME = _t("PodSandboxStateValue")
    FIELDS = (Field(1, "state", ENUM),)
    state: int = 0


@message
class PodSandboxFilter(Message):
    TYPE_NAME = _t("PodSandboxFilter")
    FIELDS = (_s(1, "id"), _m(2, "state", PodSandboxStateValue), _map(3, "label_selector"))
    id: str = ""
    state: PodSandboxStateValue | None = None
    label_selector: dict[str, str] = field(factory=dict)


@message
class ListPodSandboxRequest(Message):
    TYPE_NAME = _t("ListPodSandboxRequest")
    FIELDS = (_m(1, "filter", PodSandboxFilter),)
    filter: PodSandboxFilter | None = None


@message
class PodSandbox(Message):
    TYPE_NAME = _t("PodSandbox")
    FIELDS = (
        _s(1, "id"),
        _m(2, "metadata", PodSandboxMetadata),
        Field(3, "state", ENUM),
        Field(4, "created_at", INT64),
        _map(5, "labels"),
        _map(6, "annotations"),
        _s(7, "runtime_handler"),
    )
    id: str = ""
    metadata: PodSandboxMetadata | None = None
    state: int = 0
    created_at: int = 0
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    runtime_handler: str = ""


@message
class ListPodSandboxResponse(Message):
    TYPE_NAME = _t("ListPodSandboxResponse")
    FIELDS = (_m(1, "items", PodSandbox, repeated=True),)
    items: list[PodSandbox] = field(factory=list)


# --------------------------------------------------------------- containers


@message
class ContainerMetadata(Message):
    TYPE_NAME = _t("ContainerMetadata")
    FIELDS = (_s(1, "name"), Field(2, "attempt", UINT32))
    name: str = ""
    attempt: int = 0


@message
class LinuxContainerResources(Message):
    TYPE_NAME = _t("LinuxContainerResources")
    FIELDS = (
        Field(1, "cpu_period", INT64),
        Field(2, "cpu_quota", INT64),
        Field(3, "cpu_shares", INT64),
        Field(4, "memory_limit_in_bytes", INT64),
        Field(5, "oom_score_adj", INT64),
        _s(6, "cpuset_cpus"),
        _s(7, "cpuset_mems"),
    )
    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    memory_limit_in_bytes: int = 0
    oom_score_adj: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""


@message
class LinuxContainerSecurityContext(Message):
    TYPE_NAME = _t("LinuxContainerSecurityContext")
    FIELDS = (
        Field(2, "privileged", BOOL),
        _m(3, "namespace_options", NamespaceOption),
        _m(5, "run_as_user", Int64Value),
        Field(7, "readonly_rootfs", BOOL),
    )
    privileged: bool = False
    namespace_options: NamespaceOption | None = None
    run_as_user: Int64Value | None = None
    readonly_rootfs: bool = False


@message
class LinuxContainerConfig(Message):
    TYPE_NAME = _t("LinuxContainerConfig")
    FIELDS = (
        _m(1, "resources", LinuxContainerResources),
        _m(2, "security_context", LinuxContainerSecurityContext),
    )
    resources: LinuxContainerResources | None = None
    security_context: LinuxContainerSecurityContext | None = None


@message
class ContainerConfig(Message):
    TYPE_NAME = _t("ContainerConfig")
    FIELDS = (
        _m(1, "metadata", ContainerMetadata),
        _m(2, "image", ImageSpec),
        Field(3, "command", STRING, repeated=True),
        Field(4, "args", STRING, repeated=True),
        _s(5, "working_dir"),
        _m(6, "envs", KeyValue, repeated=True),
        _map(9, "labels"),
        _map(10, "annotations"),
        _s(11, "log_path"),
        Field(12, "stdin", BOOL),
        Field(13, "stdin_once", BOOL),
        Field(14, "tty", BOOL),
        _m(15, "linux", LinuxContainerConfig),
    )
    metadata: ContainerMetadata | None = None
    image: ImageSpec | None = None
    command: list[str] = field(factory=list)
    args: list[str] = field(factory=list)
    working_dir: str = ""
    envs: list[KeyValue] = field(factory=list)
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    log_path: str = ""
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    linux: LinuxContainerConfig | None = None


@message
class CreateContainerRequest(Message):
    TYPE_NAME = _t("CreateContainerRequest")
    FIELDS = (
        _s(1, "pod_sandbox_id"),
        _m(2, "config", ContainerConfig),
        _m(3, "sandbox_config", PodSandboxConfig),
    )
    pod_sandbox_id: str = ""
    config: ContainerConfig | None = None
    sandbox_config: PodSandboxConfig | None = None


@message
class CreateContainerResponse(Message):
    TYPE_NAME = _t("CreateContainerResponse")
    FIELDS = (_s(1, "container_id"),)
    container_id: str = ""


@message
class StartContainerRequest(Message):
    TYPE_NAME = _t("StartContainerRequest")
    FIELDS = (_s(1, "container_id"),)
    container_id: str = ""


@message
class StartContainerResponse(Message):
    TYPE_NAME = _t("StartContainerResponse")


@message
class StopContainerRequest(Message):
    TYPE_NAME = _t("StopContainerRequest")
    FIELDS = (_s(1, "container_id"), Field(2, "timeout", INT64))
    container_id: str = ""
    timeout: int = 0


@message
class StopContainerResponse(Message):
    TYPE_NAME = _t("StopContainerResponse")


@message
class RemoveContainerRequest(Message):
    TYPE_NAME = _t("RemoveContainerRequest")
    FIELDS = (_s(1, "container_id"),)
    container_id: str = ""


@message
class RemoveContainerResponse(Message):
    TYPE_NAME = _t("RemoveContainerResponse")


@message
class ContainerStateValue(Message):
    TYPE_NAME = _t("ContainerStateValue")
    FIELDS = (Field(1, "state", ENUM),)
    state: int = 0


@message
class ContainerFilter(Message):
    TYPE_NAME = _t("ContainerFilter")
    FIELDS = (
        _s(1, "id"),
        _m(2, "state", ContainerStateValue),
        _s(3, "pod_sandbox_id"),
        _map(4, "label_selector"),
    )
    id: str = ""
    state: ContainerStateValue | None = None
    pod_sandbox_id: str = ""
    label_selector: dict[str, str] = field(factory=dict)


@message
class ListContainersRequest(Message):
    TYPE_NAME = _t("ListContainersRequest")
    FIELDS = (_m(1, "filter", ContainerFilter),)
    filter: ContainerFilter | None = None


@message
class Container(Message):
    TYPE_NAME = _t("Container")
    FIELDS = (
        _s(1, "id"),
        _s(2, "pod_sandbox_id"),
        _m(3, "metadata", ContainerMetadata),
        _m(4, "image", ImageSpec),
        _s(5, "image_ref"),
        Field(6, "state", ENUM),
        Field(7, "created_at", INT64),
        _map(8, "labels"),
        _map(9, "annotations"),
    )
    id: str = ""
    pod_sandbox_id: str = ""
    metadata: ContainerMetadata | None = None
    image: ImageSpec | None = None
    image_ref: str = ""
    state: int = 0
    created_at: int = 0
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)


@message
class ListContainersResponse(Message):
    TYPE_NAME = _t("ListContainersResponse")
    FIELDS = (_m(1, "containers", Container, repeated=True),)
    containers: list[Container] = field(factory=list)


@message
class ContainerStatusRequest(Message):
    TYPE_NAME = _t("ContainerStatusRequest")
    FIELDS = (_s(1, "container_id"), Field(2, "verbose", BOOL))
    container_id: str = ""
    verbose: bool = False


@message
class ContainerStatus(Message):
    TYPE_NAME = _t("ContainerStatus")
    FIELDS = (
        _s(1, "id"),
        _m(2, "metadata", ContainerMetadata),
        Field(3, "state", ENUM),
        Field(4, "created_at", INT64),
        Field(5, "started_at", INT64),
        Field(6, "finished_at", INT64),
        Field(7, "exit_code", INT32),
        _m(8, "image", ImageSpec),
        _s(9, "image_ref"),
        _s(10, "reason"),
        _s(11, "message"),
        _map(12, "labels"),
        _map(13, "annotations"),
        _s(15, "log_path"),
    )
    id: str = ""
    metadata: ContainerMetadata | None = None
    state: int = 0
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    image: ImageSpec | None = None
    image_ref: str = ""
    reason: str = ""
    message: str = ""
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    log_path: str = ""


@message
class ContainerStatusResponse(Message):
    TYPE_NAME = _t("ContainerStatusResponse")
    FIELDS = (_m(1, "status", ContainerStatus), _map(2, "info"))
    status: ContainerStatus | None = None
    info: dict[str, str] = field(factory=dict)


# --------------------------------------------------------------- exec, attach


@message
class ExecSyncRequest(Message):
    TYPE_NAME = _t("ExecSyncRequest")
    FIELDS = (
        _s(1, "container_id"),
        Field(2, "cmd", STRING, repeated=True),
        Field(3, "timeout", INT64),
    )
    container_id: str = ""
    cmd: list[str] = field(factory=list)
    timeout: int = 0


@message
class ExecSyncResponse(Message):
    TYPE_NAME = _t("ExecSyncResponse")
    FIELDS = (Field(1, "stdout", BYTES), Field(2, "stderr", BYTES), Field(3, "exit_code", INT32))
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


@message
class ExecRequest(Message):
    TYPE_NAME = _t("ExecRequest")
    FIELDS = (
        _s(1, "container_id"),
        Field(2, "cmd", STRING, repeated=True),
        Field(3, "tty", BOOL),
        Field(4, "stdin", BOOL),
        Field(5, "stdout", BOOL),
        Field(6, "stderr", BOOL),
    )
    container_id: str = ""
    cmd: list[str] = field(factory=list)
    tty: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False


@message
class ExecResponse(Message):
    TYPE_NAME = _t("ExecResponse")
    FIELDS = (_s(1, "url"),)
    url: str = ""


@message
class AttachRequest(Message):
    TYPE_NAME = _t("AttachRequest")
    FIELDS = (
        _s(1, "container_id"),
        Field(2, "stdin", BOOL),
        Field(3, "tty", BOOL),
        Field(4, "stdout", BOOL),
        Field(5, "stderr", BOOL),
    )
    container_id: str = ""
    stdin: bool = False
    tty: bool = False
    stdout: bool = False
    stderr: bool = False


@message
class AttachResponse(Message):
    TYPE_NAME = _t("AttachResponse")
    FIELDS = (_s(1, "url"),)
    url: str = ""


# --------------------------------------------------------------- stats


@message
class ContainerAttributes(Message):
    TYPE_NAME = _t("ContainerAttributes")
    FIELDS = (
        _s(1, "id"),
        _m(2, "metadata", ContainerMetadata),
        _map(3, "labels"),
        _map(4, "annotations"),
    )
    id: str = ""
    metadata: ContainerMetadata | None = None
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)


@message
class CpuUsage(Message):
    TYPE_NAME = _t("CpuUsage")
    FIELDS = (
        Field(1, "timestamp", INT64),
        _m(2, "usage_core_nano_seconds", UInt64Value),
        _m(3, "usage_nano_cores", UInt64Value),
    )
    timestamp: int = 0
    usage_core_nano_seconds: UInt64Value | None = None
    usage_nano_cores: UInt64Value | None = None


@message
class MemoryUsage(Message):
    TYPE_NAME = _t("MemoryUsage")
    FIELDS = (
        Field(1, "timestamp", INT64),
        _m(2, "working_set_bytes", UInt64Value),
        _m(3, "available_bytes", UInt64Value),
        _m(4, "usage_bytes", UInt64Value),
        _m(5, "rss_bytes", UInt64Value),
        _m(6, "page_faults", UInt64Value),
        _m(7, "major_page_faults", UInt64Value),
    )
    timestamp: int = 0
    working_set_bytes: UInt64Value | None = None
    available_bytes: UInt64Value | None = None
    usage_bytes: UInt64Value | None = None
    rss_bytes: UInt64Value | None = None
    page_faults: UInt64Value | None = None
    major_page_faults: UInt64Value | None = None


@message
class FilesystemIdentifier(Message):
    TYPE_NAME = _t("FilesystemIdentifier")
    FIELDS = (_s(1, "mountpoint"),)
    mountpoint: str = ""


@message
class FilesystemUsage(Message):
    TYPE_NAME = _t("FilesystemUsage")
    FIELDS = (
        Field(1, "timestamp", INT64),
        _m(2, "fs_id", FilesystemIdentifier),
        _m(3, "used_bytes", UInt64Value),
        _m(4, "inodes_used", UInt64Value),
    )
    timestamp: int = 0
    fs_id: FilesystemIdentifier | None = None
    used_bytes: UInt64Value | None = None
    inodes_used: UInt64Value | None = None


@message
class ContainerStats(Message):
    TYPE_NAME = _t("ContainerStats")
    FIELDS = (
        _m(1, "attributes", ContainerAttributes),
        _m(2, "cpu", CpuUsage),
        _m(3, "memory", MemoryUsage),
        _m(4, "writable_layer", FilesystemUsage),
    )
    attributes: ContainerAttributes | None = None
    cpu: CpuUsage | None = None
    memory: MemoryUsage | None = None
    writable_layer: FilesystemUsage | None = None


@message
class ContainerStatsRequest(Message):
    TYPE_NAME = _t("ContainerStatsRequest")
    FIELDS = (_s(1, "container_id"),)
    container_id: str = ""


@message
class ContainerStatsResponse(Message):
    TYPE_NAME = _t("ContainerStatsResponse")
    FIELDS = (_m(1, "stats", ContainerStats),)
    stats: ContainerStats | None = None


# --------------------------------------------------------------- runtime, images


@message
class VersionRequest(Message):
    TYPE_NAME = _t("VersionRequest")
    FIELDS = (_s(1, "version"),)
    version: str = ""


@message
class VersionResponse(Message):
    TYPE_NAME = _t("VersionResponse")
    FIELDS = (
        _s(1, "version"),
        _s(2, "runtime_name"),
        _s(3, "runtime_version"),
        _s(4, "runtime_api_version"),
    )
    version: str = ""
    runtime_name: str = ""
    runtime_version: str = ""
    runtime_api_version: str = ""


@message
class StatusRequest(Message):
    TYPE_NAME = _t("StatusRequest")
    FIELDS = (Field(1, "verbose", BOOL),)
    verbose: bool = False


@message
class RuntimeCondition(Message):
    TYPE_NAME = _t("RuntimeCondition")
    FIELDS = (_s(1, "type"), Field(2, "status", BOOL), _s(3, "reason"), _s(4, "message"))
    type: str = ""
    status: bool = False
    reason: str = ""
    message: str = ""


@message
class RuntimeStatus(Message):
    TYPE_NAME = _t("RuntimeStatus")
    FIELDS = (_m(1, "conditions", RuntimeCondition, repeated=True),)
    conditions: list[RuntimeCondition] = field(factory=list)


@message
class StatusResponse(Message):
    TYPE_NAME = _t("StatusResponse")
    FIELDS = (_m(1, "status", RuntimeStatus), _map(2, "info"))
    status: RuntimeStatus | None = None
    info: dict[str, str] = field(factory=dict)


@message
class Image(Message):
    TYPE_NAME = _t("Image")
    FIELDS = (
        _s(1, "id"),
        Field(2, "repo_tags", STRING, repeated=True),
        Field(3, "repo_digests", STRING, repeated=True),
        Field(4, "size", UINT64),
        _s(6, "username"),
    )
    id: str = ""
    repo_tags: list[str] = field(factory=list)
    repo_digests: list[str] = field(factory=list)
    size: int = 0
    username: str = ""


@message
class ImageStatusRequest(Message):
    TYPE_NAME = _t("ImageStatusRequest")
    FIELDS = (_m(1, "image", ImageSpec), Field(2, "verbose", BOOL))
    image: ImageSpec | None = None
    verbose: bool = False


@message
class ImageStatusResponse(Message):
    TYPE_NAME = _t("ImageStatusResponse")
    FIELDS = (_m(1, "image", Image), _map(2, "info"))
    image: Image | None = None
    info: dict[str, str] = field(factory=dict)


# Every message class above, in declaration order (the oracle test walks them).
ALL: tuple[type[Message], ...] = tuple(
    v
    for v in dict(globals()).values()
    if isinstance(v, type) and issubclass(v, Message) and v.TYPE_NAME.startswith(PACKAGE + ".")
)
