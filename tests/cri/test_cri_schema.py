"""Our CRI schema (``epollshim.tools.cri_api``) against the ``protobuf`` package as an oracle.

The descriptors below are transcribed by hand from the public CRI definition (k8s.io/cri-api,
``pkg/apis/runtime/v1/api.proto``, package ``runtime.v1``), restricted to the fields we
declare; they are not derived from our classes. A wrong number, name, kind or repetition in
``cri_api`` fails ``test_schema_matches_the_cri_definition``, and the round trips check that
our codec writes and reads what protobuf does for every class. No containerd needed.
"""

from __future__ import annotations

from typing import Any as TAny

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epollshim.tools import cri_api as c
from epollshim.tools import pbstrategies
from epollshim.v2 import pb
from epollshim.v2.pb import Message

P = "runtime.v1"
ENUMS = {
    "NamespaceMode": {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3},
    "PodSandboxState": {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1},
    "ContainerState": {
        "CONTAINER_CREATED": 0,
        "CONTAINER_RUNNING": 1,
        "CONTAINER_EXITED": 2,
        "CONTAINER_UNKNOWN": 3,
    },
}

# Message name (in runtime.v1) -> "number name [repeated] type; ...". Types: proto scalars,
# a message or enum name of runtime.v1, or map<K,V>.
SPEC: dict[str, str] = {
    "Int64Value": "1 value int64",
    "UInt64Value": "1 value uint64",
    "KeyValue": "1 key string; 2 value string",
    "ImageSpec": "1 image string; 2 annotations map<string,string>",
    "NamespaceOption": "1 network NamespaceMode; 2 pid NamespaceMode; 3 ipc NamespaceMode;"
    " 4 target_id string",
    "DNSConfig": "1 servers repeated string; 2 searches repeated string; 3 options repeated string",
    "LinuxSandboxSecurityContext": "1 namespace_options NamespaceOption;"
    " 3 run_as_user Int64Value; 4 readonly_rootfs bool; 6 privileged bool",
    "LinuxPodSandboxConfig": "1 cgroup_parent string;"
    " 2 security_context LinuxSandboxSecurityContext; 3 sysctls map<string,string>",
    "PodSandboxMetadata": "1 name string; 2 uid string; 3 namespace string; 4 attempt uint32",
    "PodSandboxConfig": "1 metadata PodSandboxMetadata; 2 hostname string;"
    " 3 log_directory string; 4 dns_config DNSConfig; 6 labels map<string,string>;"
    " 7 annotations map<string,string>; 8 linux LinuxPodSandboxConfig",
    "RunPodSandboxRequest": "1 config PodSandboxConfig; 2 runtime_handler string",
    "RunPodSandboxResponse": "1 pod_sandbox_id string",
    "StopPodSandboxRequest": "1 pod_sandbox_id string",
    "StopPodSandboxResponse": "",
    "RemovePodSandboxRequest": "1 pod_sandbox_id string",
    "RemovePodSandboxResponse": "",
    "PodSandboxStatusRequest": "1 pod_sandbox_id string; 2 verbose bool",
    "PodSandboxStatus": "1 id string; 2 metadata PodSandboxMetadata; 3 state PodSandboxState;"
    " 4 created_at int64; 7 labels map<string,string>; 8 annotations map<string,string>;"
    " 9 runtime_handler string",
    "PodSandboxStatusResponse": "1 status PodSandboxStatus; 2 info map<string,string>",
    "PodSandboxStateValue": "1 state PodSandboxState",
    "PodSandboxFilter": "1 id string; 2 state PodSandboxStateValue;"
    " 3 label_selector map<string,string>",
    "ListPodSandboxRequest": "1 filter PodSandboxFilter",
    "PodSandbox": "1 id string; 2 metadata PodSandboxMetadata; 3 state PodSandboxState;"
    " 4 created_at int64; 5 labels map<string,string>; 6 annotations map<string,string>;"
    " 7 runtime_handler string",
    "ListPodSandboxResponse": "1 items repeated PodSandbox",
    "ContainerMetadata": "1 name string; 2 attempt uint32",
    "LinuxContainerResources": "1 cpu_period int64; 2 cpu_quota int64; 3 cpu_shares int64;"
    " 4 memory_limit_in_bytes int64; 5 oom_score_adj int64; 6 cpuset_cpus string;"
    " 7 cpuset_mems string",
    "LinuxContainerSecurityContext": "2 privileged bool; 3 namespace_options NamespaceOption;"
    " 5 run_as_user Int64Value; 7 readonly_rootfs bool",
    "LinuxContainerConfig": "1 resources LinuxContainerResources;"
    " 2 security_context LinuxContainerSecurityContext",
    "ContainerConfig": "1 metadata ContainerMetadata; 2 image ImageSpec;"
    " 3 command repeated string; 4 args repeated string; 5 working_dir string;"
    " 6 envs repeated KeyValue; 9 labels map<string,string>;"
    " 10 annotations map<string,string>; 11 log_path string; 12 stdin bool;"
    " 13 stdin_once bool; 14 tty bool; 15 linux LinuxContainerConfig",
    "CreateContainerRequest": "1 pod_sandbox_id string; 2 config ContainerConfig;"
    " 3 sandbox_config PodSandboxConfig",
    "CreateContainerResponse": "1 container_id string",
    "StartContainerRequest": "1 container_id string",
    "StartContainerResponse": "",
    "StopContainerRequest": "1 container_id string; 2 timeout int64",
    "StopContainerResponse": "",
    "RemoveContainerRequest": "1 container_id string",
    "RemoveContainerResponse": "",
    "ContainerStateValue": "1 state ContainerState",
    "ContainerFilter": "1 id string; 2 state ContainerStateValue; 3 pod_sandbox_id string;"
    " 4 label_selector map<string,string>",
    "ListContainersRequest": "1 filter ContainerFilter",
    "Container": "1 id string; 2 pod_sandbox_id string; 3 metadata ContainerMetadata;"
    " 4 image ImageSpec; 5 image_ref string; 6 state ContainerState; 7 created_at int64;"
    " 8 labels map<string,string>; 9 annotations map<string,string>",
    "ListContainersResponse": "1 containers repeated Container",
    "ContainerStatusRequest": "1 container_id string; 2 verbose bool",
    "ContainerStatus": "1 id string; 2 metadata ContainerMetadata; 3 state ContainerState;"
    " 4 created_at int64; 5 started_at int64; 6 finished_at int64; 7 exit_code int32;"
    " 8 image ImageSpec; 9 image_ref string; 10 reason string; 11 message string;"
    " 12 labels map<string,string>; 13 annotations map<string,string>; 15 log_path string",
    "ContainerStatusResponse": "1 status ContainerStatus; 2 info map<string,string>",
    "ExecSyncRequest": "1 container_id string; 2 cmd repeated string; 3 timeout int64",
    "ExecSyncResponse": "1 stdout bytes; 2 stderr bytes; 3 exit_code int32",
    "ExecRequest": "1 container_id string; 2 cmd repeated string; 3 tty bool; 4 stdin bool;"
    " 5 stdout bool; 6 stderr bool",
    "ExecResponse": "1 url string",
    "AttachRequest": "1 container_id string; 2 stdin bool; 3 tty bool; 4 stdout bool;"
    " 5 stderr bool",
    "AttachResponse": "1 url string",
    "ContainerAttributes": "1 id string; 2 metadata ContainerMetadata;"
    " 3 labels map<string,string>; 4 annotations map<string,string>",
    "CpuUsage": "1 timestamp int64; 2 usage_core_nano_seconds UInt64Value;"
    " 3 usage_nano_cores UInt64Value",
    "MemoryUsage": "1 timestamp int64; 2 working_set_bytes UInt64Value;"
    " 3 available_bytes UInt64Value; 4 usage_bytes UInt64Value; 5 rss_bytes UInt64Value;"
    " 6 page_faults UInt64Value; 7 major_page_faults UInt64Value",
    "FilesystemIdentifier": "1 mountpoint string",
    "FilesystemUsage": "1 timestamp int64; 2 fs_id FilesystemIdentifier;"
    " 3 used_bytes UInt64Value; 4 inodes_used UInt64Value",
    "ContainerStats": "1 attributes ContainerAttributes; 2 cpu CpuUsage;"
    " 3 memory MemoryUsage; 4 writable_layer FilesystemUsage",
    "ContainerStatsRequest": "1 container_id string",
    "ContainerStatsResponse": "1 stats ContainerStats",
    "VersionRequest": "1 version string",
    "VersionResponse": "1 version string; 2 runtime_name string; 3 runtime_version string;"
    " 4 runtime_api_version string",
    "StatusRequest": "1 verbose bool",
    "RuntimeCondition": "1 type string; 2 status bool; 3 reason string; 4 message string",
    "RuntimeStatus": "1 conditions repeated RuntimeCondition",
    "StatusResponse": "1 status RuntimeStatus; 2 info map<string,string>",
    "Image": "1 id string; 2 repo_tags repeated string; 3 repo_digests repeated string;"
    " 4 size uint64; 6 username string",
    "ImageStatusRequest": "1 image ImageSpec; 2 verbose bool",
    "ImageStatusResponse": "1 image Image; 2 info map<string,string>",
}

FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    name: getattr(FDP, f"TYPE_{name.upper()}")
    for name in ("int32", "int64", "uint32", "uint64", "bool", "string", "bytes")
}


def parse_spec(text: str) -> list[tuple[int, str, bool, str]]:
    """(number, name, repeated, type) for each field of a SPEC entry."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        number, name, *rest = part.split()
        out.append((int(number), name, rest[0] == "repeated", rest[-1]))
    return out


def _set_type(fd: TAny, type_: str) -> None:
    if type_ in SCALARS:
        fd.type = SCALARS[type_]
    else:
        fd.type = FDP.TYPE_ENUM if type_ in ENUMS else FDP.TYPE_MESSAGE
        fd.type_name = f".{P}.{type_}"


def build_pool() -> dict[str, TAny]:
    """Message name -> protobuf class, for every SPEC entry (one proto3 file)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="cri_oracle.proto", package=P, syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    for msg_name, text in SPEC.items():
        msg = fdp.message_type.add(name=msg_name)
        for number, name, repeated, type_ in parse_spec(text):
            fd = msg.field.add(name=name, number=number, label=FDP.LABEL_OPTIONAL)
            if type_.startswith("map<"):
                key, value = type_[4:-1].split(",")
                entry_name = "".join(w.title() for w in name.split("_")) + "Entry"
                entry = msg.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                for n, (fname, ftype) in enumerate((("key", key), ("value", value)), 1):
                    _set_type(
                        entry.field.add(name=fname, number=n, label=FDP.LABEL_OPTIONAL), ftype
                    )
                fd.label, fd.type = FDP.LABEL_REPEATED, FDP.TYPE_MESSAGE
                fd.type_name = f".{P}.{msg_name}.{entry_name}"
                continue
            if repeated:
                fd.label = FDP.LABEL_REPEATED
            _set_type(fd, type_)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{P}.{n}")) for n in SPEC
    }


PB = build_pool()


def short(cls: type[Message]) -> str:
    return cls.TYPE_NAME.removeprefix(P + ".")


def to_pb(obj: Message) -> TAny:
    out = PB[short(type(obj))]()
    for f in obj.FIELDS:
        value = getattr(obj, f.name)
        if f.key is not None:
            getattr(out, f.name).update(value)  # our maps are string -> string only
        elif f.msg and f.repeated:
            for v in value:
                getattr(out, f.name).add().CopyFrom(to_pb(v))
        elif f.msg:
            if value is not None:
                getattr(out, f.name).CopyFrom(to_pb(value))
        elif f.repeated:
            getattr(out, f.name).extend(value)
        else:
            setattr(out, f.name, value)
    return out


ORACLE = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDS = [short(cls) for cls in c.ALL]


def test_every_class_is_in_the_transcription() -> None:
    assert sorted(IDS) == sorted(SPEC)
    assert all(cls.TYPE_NAME == f"{P}.{short(cls)}" == f"{P}.{cls.__name__}" for cls in c.ALL)


def schema_of(cls: type[Message]) -> list[tuple[int, str, bool, str]]:
    """Our declaration of ``cls`` in the SPEC's terms."""
    enums = {name: t for _, name, _, t in parse_spec(SPEC.get(short(cls), "")) if t in ENUMS}
    out = []
    for f in cls.FIELDS:
        if f.key is not None:
            kind = f"map<{f.key},{f.kind}>"
        elif f.msg:
            kind = short(f.msg)
        elif f.kind == pb.ENUM:  # which enum is not in our schema: the constants are checked
            kind = enums.get(f.name, "an enum")
        else:
            kind = f.kind
        out.append((f.number, f.name, f.repeated and f.key is None, kind))
    return out


@pytest.mark.parametrize("cls", c.ALL, ids=IDS)
def test_schema_matches_the_cri_definition(cls: type[Message]) -> None:
    assert schema_of(cls) == parse_spec(SPEC[short(cls)])


def test_enum_constants_match_the_definition() -> None:
    for enum_name, values in ENUMS.items():
        ours = {k: v for k, v in vars(getattr(c, enum_name)).items() if k.isupper()}
        assert ours == values, enum_name


@pytest.mark.parametrize("cls", c.ALL, ids=IDS)
@given(data=st.data())
@ORACLE
def test_round_trips_through_protobuf(cls: type[Message], data: st.DataObject) -> None:
    obj = data.draw(pbstrategies.message(cls, size=2))
    assert PB[short(cls)].FromString(obj.encode()) == to_pb(obj)  # protobuf reads ours
    assert cls.decode(to_pb(obj).SerializeToString()) == obj  # we read protobuf's


def test_the_checks_can_fail() -> None:
    """A field under a wrong number fails the schema check and reads as unknown."""

    @pb.message
    class ContainerStatus(Message):  # exit_code is 7 in the CRI definition
        TYPE_NAME = f"{P}.ContainerStatus"
        FIELDS = (pb.Field(1, "id", pb.STRING), pb.Field(8, "exit_code", pb.INT32))
        id: str = ""
        exit_code: int = 0

    assert schema_of(ContainerStatus) != parse_spec(SPEC["ContainerStatus"])
    assert PB["ContainerStatus"].FromString(ContainerStatus(exit_code=3).encode()).exit_code == 0
