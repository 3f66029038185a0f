"""The shim's own pure parts and its ttrpc server, without containerd or runc.

Flags, runtime options, the grouping id and socket name, mount options, and the server
over socketpairs against a real Loop + TaskService (malformed frames, pipelining, State's
memo of its reply).
"""

from __future__ import annotations

import json
import os
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epollshim.core.exits import ExitRouter
from epollshim.core.machine import Process
from epollshim.core.states import STATES, State
from epollshim.log import Log
from epollshim.shell.loop import Loop
from epollshim.v2 import main, mount, options, start, ttrpc
from epollshim.v2.container import Container, Context, Proc
from epollshim.v2.events import Publisher
from epollshim.v2.messages import (
    TASK_SERVICE,
    Code,
    ConnectRequest,
    ConnectResponse,
    Options,
    Request,
    Response,
    StateRequest,
    StateResponse,
)
from epollshim.v2.messages_more import CreateOptions, RuntimeOptions
from epollshim.v2.options import RuncOptions
from epollshim.v2.pb import Any, pack_any
from epollshim.v2.server import Server
from epollshim.v2.service import TaskService, state_response

# -- flags --------------------------------------------------------------------------------


def test_flags_go_style_and_variants() -> None:
    argv = ["-namespace", "ns", "-address=/a.sock", "--id", "c1", "-debug", "start"]
    flags = main.parse(argv)
    assert flags.action == "start"
    assert flags.get("namespace") == "ns" and flags.get("address") == "/a.sock"
    assert flags.get("id") == "c1" and flags.flag("debug")
    assert not main.parse(["-debug=false", "delete"]).flag("debug")
    assert main.parse([*flags.argv(), "start"]).values == flags.values


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bogus", "start"], "not defined: -bogus"),
        (["-id"], "needs an argument: -id"),
        (["start", "delete"], "unexpected argument"),
    ],
)
def test_flags_errors(argv: list[str], message: str) -> None:
    with pytest.raises(main.UsageError, match=message):
        main.parse(argv)


# -- runtime options -------------------------------------------------------------------------


def test_options_default_and_runc_v1() -> None:
    assert options.decode(None).runc_root("ns") == "/run/containerd/runc/ns"
    value = pack_any(
        Options(binary_name="/x/runc", root="/r", systemd_cgroup=True, no_pivot_root=True)
    )
    opts = options.decode(value)
    assert (opts.binary, opts.runc_root("ns")) == ("/x/runc", "/r/ns")
    assert opts.global_args() == ["--systemd-cgroup"]
    assert opts.create_args() == ["--no-pivot"]
    again = options.RuncOptions.from_json(opts.to_json())
    assert again.to_json() == opts.to_json()


def test_options_linux_create_options_and_ignored_types() -> None:
    value = pack_any(CreateOptions(no_new_keyring=True, io_uid=5, io_gid=6, shim_cgroup="/g"))
    opts = options.decode(value, "myrunc")
    assert opts.binary == "myrunc" and opts.create_args() == ["--no-new-keyring"]
    assert (opts.io_uid, opts.io_gid, opts.shim_cgroup) == (5, 6, "/g")
    assert options.decode(pack_any(RuntimeOptions(config_path="/c"))).binary == "runc"


def test_options_errors_name_the_type() -> None:
    with pytest.raises(options.OptionsError, match=r"unsupported runtime options type 'x\.Y'"):
        options.decode(Any("x.Y", b""))
    with pytest.raises(options.OptionsError, match="malformed"):
        options.decode(Any(Options.TYPE_NAME, b"\x0a\xff"))


# -- start: grouping and socket names ------------------------------------------------------


def test_socket_path_is_runc_v2_convention() -> None:
    import hashlib

    want = hashlib.sha256(b"/run/containerd/containerd.sock/default/mytask").hexdigest()
    got = start.socket_path(
        "/run/containerd/s", "/run/containerd/containerd.sock", "default", "mytask"
    )
    assert got == "/run/containerd/s/" + want


def test_group_id_from_annotations(tmp_path: os.PathLike[str]) -> None:
    bundle = os.fspath(tmp_path)
    keys = start.DEFAULT_GROUP_KEYS
    assert start.group_id(bundle, "c1", keys) == "c1"  # no config.json
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {"io.kubernetes.cri.sandbox-id": "pod1"}}, f)
    assert start.group_id(bundle, "c1", keys) == "pod1"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {"other": "x"}}, f)
    assert start.group_id(bundle, "c1", keys) == "c1"


# -- mount options ----------------------------------------------------------------------------


def test_mount_options() -> None:
    flags, data = mount.parse_options(["ro", "nosuid", "index=off", "lowerdir=/a:/b"])
    assert flags == mount.MS_RDONLY | mount.MS_NOSUID
    assert data == "index=off,lowerdir=/a:/b"
    assert mount.parse_options(["rbind", "rw"]) == (mount.MS_BIND | mount.MS_REC, "")
    with pytest.raises(mount.MountError, match="loop"):
        mount.parse_options(["loop"])


# -- the server over socketpairs ------------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.loop = Loop()
        log = Log()
        ctx = Context(self.loop, log, ExitRouter(), Publisher(self.loop, log, "", "ns"))
        self.service = TaskService(ctx, lambda: None)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server = Server(self.loop, log, listener, self.service.dispatch)
        self.clients: list[socket.socket] = []

    def connect(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.server.adopt(theirs)
        ours.settimeout(5)
        self.clients.append(ours)
        return ours

    def pump(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            self.loop.call_later(0, self.loop.stop)
            self.loop.run()

    def close(self) -> None:
        for sock in self.clients:
            sock.close()
        self.server.close()
        self.server.listener.close()
        self.loop.close()


def call_frame(stream_id: int, method: str, argument: bytes) -> bytes:
    request = Request(service=TASK_SERVICE, method=method, payload=argument)
    return ttrpc.encode_frame(stream_id, ttrpc.REQUEST, request.encode())


def responses(sock: socket.socket, count: int) -> dict[int, Response]:
    decoder = ttrpc.FrameDecoder()
    got: dict[int, Response] = {}
    while len(got) < count:
        for frame in decoder.feed(sock.recv(65536)):
            got[frame.stream_id] = Response.decode(frame.payload)
    return got


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    yield h  # type: ignore[misc]
    h.close()


def test_pipelined_calls_and_errors(harness: Harness) -> None:
    sock = harness.connect()
    sock.sendall(
        call_frame(1, "Connect", ConnectRequest(id="c").encode())
        + call_frame(3, "State", StateRequest(id="nope").encode())
        + call_frame(5, "Checkpoint", b"")
        + ttrpc.encode_frame(6, ttrpc.REQUEST, b"")
    )
    harness.pump()
    got = responses(sock, 4)
    assert ConnectResponse.decode(got[1].payload).shim_pid == os.getpid()
    assert got[3].status and got[3].status.code == Code.NOT_FOUND
    assert got[3].status.message == "container not created: not found"
    assert got[5].status and got[5].status.code == Code.UNIMPLEMENTED
    assert got[6].status and got[6].status.code == Code.INVALID_ARGUMENT


def test_oversize_frame_closes_only_that_connection(harness: Harness) -> None:
    bad, good = harness.connect(), harness.connect()
    bad.sendall(struct.pack(">IIBB", ttrpc.MAX_PAYLOAD + 1, 1, ttrpc.REQUEST, 0))
    good.sendall(call_frame(1, "Connect", ConnectRequest(id="c").encode()))
    harness.pump()
    assert bad.recv(100) == b""  # closed by the shim
    assert 1 in responses(good, 1)
    assert len(harness.server.connections) == 1


# -- State's memo -------------------------------------------------------------------------
# TaskService.state keeps each process's last reply encoded; whatever changes, and in any
# order, the reply must be the one a fresh encoding gives.

# (where, attribute, values): where is "machine", "proc" or "container"
_INPUTS = st.one_of(
    st.tuples(st.just("machine"), st.just("state"), st.sampled_from(STATES)),
    st.tuples(st.just("machine"), st.just("pid"), st.none() | st.integers(1, 1 << 22)),
    st.tuples(st.just("proc"), st.just("started"), st.booleans()),
    st.tuples(st.just("proc"), st.just("exit_code"), st.none() | st.integers(0, 255)),
    st.tuples(st.just("proc"), st.just("exited_at"), st.none() | st.floats(1e9, 2e9)),
    st.tuples(st.just("proc"), st.just("paths"), st.sampled_from([("", "", ""), ("i", "o", "")])),
    st.tuples(st.just("proc"), st.just("terminal"), st.booleans()),
    st.tuples(st.just("container"), st.just("paused"), st.booleans()),
    st.tuples(st.just("container"), st.just("pausing"), st.booleans()),
    st.tuples(st.just("container"), st.just("bundle"), st.sampled_from(["/b/c1", "/b/other"])),
)


def _fresh_state(c: Container, p: Proc) -> bytes:
    return state_response(c, p).encode()


def _state_payload(h: Harness, sock: socket.socket, stream_id: int, exec_id: str) -> bytes:
    sock.sendall(call_frame(stream_id, "State", StateRequest(id="c1", exec_id=exec_id).encode()))
    h.pump(2)
    response = responses(sock, 1)[stream_id]
    assert response.status is None
    return response.payload


def _container(h: Harness) -> Container:
    runtime = None  # State never runs runc
    c = Container(h.service.ctx, "c1", "/b/c1", RuncOptions(), runtime)  # type: ignore[arg-type]
    c.init = Proc(c, "", ("", "", ""), False)
    c.execs["e1"] = Proc(c, "e1", ("", "o", "e"), True)
    for p in (c.init, *c.execs.values()):
        p.machine = Process(p.name, init=not p.exec_id, drain_deadline=1.0)
    h.service.containers["c1"] = c
    return c


def test_state_answers_from_its_memo_until_an_input_changes(harness: Harness) -> None:
    c = _container(harness)
    p = c.init
    assert p is not None and p.machine is not None
    sock = harness.connect()
    first = _state_payload(harness, sock, 1, "")
    memo = p.state_reply
    assert memo is not None and memo[1] == first == _fresh_state(c, p)
    assert _state_payload(harness, sock, 3, "") == first
    assert p.state_reply is memo  # answered from the memo, not encoded again
    p.machine.state, p.machine.pid, p.started = State.RUNNING, 42, True
    running = _state_payload(harness, sock, 5, "")
    assert running == _fresh_state(c, p) != first
    assert StateResponse.decode(running).pid == 42


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "e1"]), _INPUTS), max_size=12))
def test_state_never_answers_stale(changes: list[tuple[str, tuple[str, str, object]]]) -> None:
    h = Harness()
    try:
        c = _container(h)
        sock = h.connect()
        stream_id = 1
        for exec_id, (where, name, value) in [("", ("proc", "started", False)), *changes]:
            p = c.proc(exec_id)
            target = {"machine": p.machine, "proc": p, "container": c}[where]
            setattr(target, name, value)
            for asked in ("", "e1"):  # each process has its own memo
                got = _state_payload(h, sock, stream_id, asked)
                assert got == _fresh_state(c, c.proc(asked)), (asked, where, name, value)
                stream_id += 2
    finally:
        h.close()
