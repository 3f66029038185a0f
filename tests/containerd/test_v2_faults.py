"""The shim's ttrpc server when the machine or a peer misbehaves (issue 7, items 3 to 5).

* Descriptors run out: with the shim's soft ``nofile`` limit lowered (``prlimit``) and more
  idle connections than it can accept, the shim must not spin on its listener nor flood
  containerd's log, must keep serving the connections it has, and must accept again once
  descriptors are free.
* Peers that never read: ten peers pipeline State requests and read no reply; the shim's
  memory must stay bounded (it stops reading from a peer it cannot write to), and containerd
  must still be served meanwhile.
* Peers that send Waits without end: one connection pipelines thousands of Waits for a
  running container, then peers connect, park a thousand each and leave; the shim's memory
  must stay bounded (epollshim parks at most ``server.MAX_OPEN_CALLS`` calls a connection
  and refuses the rest at once with RESOURCE_EXHAUSTED; runc-v2 parks a goroutine for
  each, which is recorded, not required), containerd must still be served, and every
  parked Wait must get the exit when the container ends.
* Peer credentials: a peer with our uid but another gid is refused (ttrpc's same-user check,
  as in runc-v2), with a log line; a same-user peer still works.

Every case runs against epollshim and containerd-shim-runc-v2 side by side. Waits are bounded
polls on log lines, fds and replies; the CPU check counts the shim's clock ticks over a
window of a few seconds (the window is polled, the assertion is on ticks, never on time).

The limit is lowered on the soft side only: we lack CAP_SYS_RESOURCE here, so a lowered hard
limit could never be raised back, and runc (a child of the shim) must still be able to set
the container's own ``RLIMIT_NOFILE`` when we exec after the episode.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from v2support import (
    DEADLINE,
    EPOLL,
    RUNTIMES,
    ShimConnection,
    check,
    detached,
    nothing_left,
    poll,
    remove,
    run_detached,
    shim_pid_of,
    shim_socket,
    tasks,
    wait_status,
)

from epollshim.tools.containerd import PrivateContainerd
from epollshim.v2 import server, ttrpc
from epollshim.v2.messages import (
    TASK_SERVICE,
    Code,
    StateRequest,
    StateResponse,
    TaskStatus,
    WaitRequest,
    WaitResponse,
)

pytestmark = pytest.mark.containerd

IDLE_PEERS = 60  # more than the shim can accept under the lowered limit
HEADROOM = 25  # descriptors over the shim's count: enough for runc-v2 to exec afterwards
WINDOW = 3.0  # seconds over which the shim's CPU ticks are counted
MAX_TICKS = 10  # of CLK_TCK (100/s here): 0.1 s of CPU in the window; a busy loop takes ~240
MAX_ACCEPT_LINES = 50  # runc-v2 logs each back-off (about 14 here); a busy loop, thousands
GREEDY_PEERS = 10
REQUESTS_PER_PEER = 80_000  # ~5.6 MB each: far past the point where a shim should stop reading
QUIET = 1.0  # seconds with no peer able to send and the shim idle: it stopped reading
IDLE_TICKS = 1  # CPU ticks an idle shim may show over QUIET (accounting jitter)
FLOOD_DEADLINE = 60.0
MAX_RSS = 32 << 20
NOBODY_GID = 65534
MANY_WAITS = 5000
WAITERS = 4  # peers that park Waits and leave
MAX_WAIT_GROWTH = 8 << 20  # RssAnon: 1024 parked calls take well under 1 MiB here


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


# -- /proc and the log --------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid``, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open files limit for {pid}")


def set_nofile(pid: int, soft: int, hard: int) -> None:
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{hard}"], check=True)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon of ``pid``, in bytes."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                found[key] = int(value.split()[0]) * 1024
    return found


def log_size(ctd: PrivateContainerd) -> int:
    return os.path.getsize(ctd.log_path)


def log_lines(ctd: PrivateContainerd, since: int, *words: str) -> list[str]:
    """Lines of containerd's log (shims write theirs into it) after offset ``since`` that
    contain every one of ``words``, ignoring case."""
    with open(ctd.log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if all(w.lower() in line.lower() for w in words)]


def state_of(ctd: PrivateContainerd, cid: str) -> StateResponse:
    """State over a new connection of our own: the shim accepts and answers."""
    with ShimConnection(shim_socket(ctd, cid)) as conn:
        return conn.call("State", StateRequest(id=cid)).result(StateResponse)


def drive_to_the_end(ctd: PrivateContainerd, cid: str, init: int) -> None:
    """containerd execs in the task, kills it, and its exit is waited for and reported."""
    r = ctd.ctr("task", "exec", "--exec-id", "after", cid, "echo", "still-here")
    assert (r.returncode, r.stdout) == (0, "still-here\n"), r.stderr
    assert tasks(ctd)[cid] == (init, "RUNNING")
    with ShimConnection(shim_socket(ctd, cid)) as conn:
        waiting = conn.send("Wait", WaitRequest(id=cid))  # parked until the exit
        assert conn.call("State", StateRequest(id=cid)).ok  # so Wait was dispatched first
        check(ctd.ctr("task", "kill", "-s", "SIGKILL", cid))
        assert conn.reply(waiting).result(WaitResponse).exit_status == 137
    wait_status(ctd, cid, "STOPPED")


# -- descriptors run out --------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_busy_loop_when_descriptors_run_out(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim = shim_pid_of(init)
    path = shim_socket(containerd, unique_id)
    soft, hard = nofile(shim)
    baseline = open_fds(shim)
    since = log_size(containerd)
    idle: list[socket.socket] = []
    try:
        set_nofile(shim, baseline + HEADROOM, hard)
        for _ in range(IDLE_PEERS):  # the listen backlog (128 for both) holds the rest
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(peer)
            peer.settimeout(DEADLINE)
            peer.connect(path)
        poll(
            "the shim to log that accept failed",
            lambda: log_lines(containerd, since, "too many open files"),
        )
        # the window: poll until it has elapsed, counting the shim's ticks across it
        before, start = cpu_ticks(shim), time.monotonic()
        poll("the measuring window", lambda: time.monotonic() - start > WINDOW)
        spent = cpu_ticks(shim) - before
        # the connections it has are still served: containerd's own answers State
        assert tasks(containerd)[unique_id] == (init, "RUNNING")
        failures = log_lines(containerd, since, "too many open files")
        print(f"{runtime}: {spent} ticks in {WINDOW:g} s; {len(failures)} accept-failure lines")
        assert spent <= MAX_TICKS, f"the shim used {spent} ticks of CPU in {WINDOW:g} s"
        assert len(failures) <= MAX_ACCEPT_LINES, f"{len(failures)} lines: {failures[:3]}"
        if runtime == EPOLL:
            assert len(failures) == 1, failures  # once per episode

        for peer in idle:
            peer.close()
        idle.clear()
        # descriptors free up: a new connection is accepted, under the same lowered limit
        assert state_of(containerd, unique_id).status == TaskStatus.RUNNING
        if runtime == EPOLL:  # one episode: one line as it began, one as it ended
            poll(
                "the shim to log that it accepts again",
                lambda: log_lines(containerd, since, "accepting again"),
            )
            assert len(log_lines(containerd, since, "accepting again")) == 1
            assert len(log_lines(containerd, since, "too many open files")) == 1
        poll("the shim to close the idle connections", lambda: open_fds(shim) <= baseline + 2)
        drive_to_the_end(containerd, unique_id, init)
    finally:
        for peer in idle:
            peer.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            set_nofile(shim, soft, hard)
        remove(containerd, unique_id)


# -- peers that never read ------------------------------------------------------------------


class Greedy:
    """A peer that pipelines State requests as fast as the shim takes them, never reading."""

    def __init__(self, path: str, cid: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(path)
        self.sock.setblocking(False)
        client = ttrpc.Client()
        self.batch = b"".join(
            client.request(TASK_SERVICE, "State", StateRequest(id=cid))[1] for _ in range(1000)
        )
        self.unsent = b""
        self.sent = 0  # requests handed to the kernel
        self.closed = False  # by the shim

    @property
    def done(self) -> bool:
        return self.closed or (self.sent >= REQUESTS_PER_PEER and not self.unsent)

    def push(self) -> bool:
        """Send what the socket takes now; True if it took anything."""
        took = False
        while not self.done:
            if not self.unsent:
                self.unsent = self.batch
                self.sent += 1000
            try:
                n = self.sock.send(self.unsent)
            except BlockingIOError:
                return took
            except (BrokenPipeError, ConnectionResetError):  # EPIPE, ECONNRESET: shim closed it
                self.closed = True
                return took
            self.unsent = self.unsent[n:]
            took = True
        return took


def flood(peers: list[Greedy], shim: int) -> int:
    """Push requests until every peer is done, the shim has stopped reading (no peer can
    send and the shim spends no CPU over ``QUIET`` seconds) or its VmRSS reaches
    ``MAX_RSS``; returns the largest VmRSS seen meanwhile."""
    largest = 0
    deadline = time.monotonic() + FLOOD_DEADLINE
    while time.monotonic() < deadline:
        progressed = [peer.push() for peer in peers]  # every peer, each time
        largest = max(largest, memory(shim)["VmRSS"])
        live = [p.sock for p in peers if not p.done]
        if not live or largest >= MAX_RSS:
            return largest
        if not any(progressed):
            ticks = cpu_ticks(shim)
            _, writable, _ = select.select([], live, [], QUIET)
            if not writable and cpu_ticks(shim) - ticks <= IDLE_TICKS:
                return largest  # idle, and reading from none of them
    pytest.fail(f"peers still sending after {FLOOD_DEADLINE:g} s")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_memory_stays_bounded_with_peers_that_never_read(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim = shim_pid_of(init)
    path = shim_socket(containerd, unique_id)
    peers: list[Greedy] = []
    try:
        peers.extend(Greedy(path, unique_id) for _ in range(GREEDY_PEERS))
        largest = flood(peers, shim)
        # meanwhile containerd is served, and so is a new peer that reads its answers
        assert state_of(containerd, unique_id).pid == init
        r = containerd.ctr("task", "exec", "--exec-id", "meanwhile", unique_id, "echo", "hi")
        assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
        largest = max(largest, memory(shim)["VmRSS"])
        now = memory(shim)
        sent = sum(p.sent for p in peers)
        closed = sum(p.closed for p in peers)
        print(
            f"{runtime}: largest VmRSS {largest >> 10} KiB, now VmRSS {now['VmRSS'] >> 10} KiB, "
            f"RssAnon {now['RssAnon'] >> 10} KiB; {sent} requests sent, {closed} peers closed"
        )
        assert largest < MAX_RSS, f"the shim grew to {largest >> 20} MiB"
        assert closed == 0  # paused, not cut off: runc-v2 does not close them either
        for peer in peers:
            peer.sock.close()
        peers.clear()
        assert tasks(containerd)[unique_id] == (init, "RUNNING")
        assert shim_pid_of(init) == shim
        drive_to_the_end(containerd, unique_id, init)
    finally:
        for peer in peers:
            peer.sock.close()
        remove(containerd, unique_id)


# -- peers that send Waits without end ------------------------------------------------------


def park_waits(conn: ShimConnection, cid: str, count: int) -> list[int]:
    """Pipeline ``count`` Waits, then a State: once it is answered every Wait was taken in.
    Returns the stream ids of the Waits not answered yet (parked)."""
    ids = [conn.send("Wait", WaitRequest(id=cid)) for _ in range(count)]
    conn.reply(conn.send("State", StateRequest(id=cid)))
    parked = []
    for i in ids:
        reply = conn.replies.pop(i, None)
        if reply is None:
            parked.append(i)
        else:  # refused at once, never dispatched
            assert reply.code == Code.RESOURCE_EXHAUSTED, reply
    return parked


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_peers_sending_waits_without_end_are_bounded_and_lose_no_exit(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    init = run_detached(containerd, runtime, unique_id, "sleep", "600")
    shim = shim_pid_of(init)
    path = shim_socket(containerd, unique_id)
    before = memory(shim)
    flooder = ShimConnection(path)
    try:
        parked = park_waits(flooder, unique_id, MANY_WAITS)
        # more peers park Waits and leave: what they left behind must not pile up
        for _ in range(WAITERS):
            with ShimConnection(path) as peer:
                left = park_waits(peer, unique_id, server.MAX_OPEN_CALLS)
                assert len(left) == server.MAX_OPEN_CALLS
        assert state_of(containerd, unique_id).pid == init  # a new peer is served
        now = memory(shim)
        grown = now["RssAnon"] - before["RssAnon"]
        print(
            f"{runtime}: {len(parked)} of {MANY_WAITS} Waits parked on one connection, "
            f"{WAITERS} x {server.MAX_OPEN_CALLS} left by closed ones; RssAnon grew "
            f"{grown >> 10} KiB to {now['RssAnon'] >> 10} KiB"
        )
        if runtime == EPOLL:
            assert len(parked) == server.MAX_OPEN_CALLS
            assert grown < MAX_WAIT_GROWTH, f"grew {grown >> 20} MiB"
        else:  # recorded: runc-v2 parks them all, a goroutine each
            assert len(parked) == MANY_WAITS
        # containerd is served throughout, and the exit reaches every parked Wait
        drive_to_the_end(containerd, unique_id, init)
        for i in parked:
            assert flooder.reply(i).result(WaitResponse).exit_status == 137
    finally:
        flooder.close()
        remove(containerd, unique_id)


# -- peer credentials -----------------------------------------------------------------------

# Run as uid 0, gid 65534: connect, ask State once, report what came back before EOF.
OTHER_GROUP_PEER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
s.connect(sys.argv[1])
got = b""
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
    while chunk := s.recv(65536):
        got += chunk
    print("closed", len(got))
except (BrokenPipeError, ConnectionResetError):  # closed before or after our request
    print("closed", len(got))
except TimeoutError:
    print("open", len(got))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_peer_of_another_group_is_refused(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as gid 65534")
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        shim = shim_pid_of(init)
        since = log_size(containerd)
        _, request = ttrpc.Client().request(TASK_SERVICE, "State", StateRequest(id=unique_id))
        argv = [sys.executable, "-c", OTHER_GROUP_PEER, shim_socket(containerd, unique_id)]
        r = subprocess.run(
            [*argv, request.hex(), str(DEADLINE)],
            group=NOBODY_GID,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=2 * DEADLINE,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["closed", "0"], "the other group's peer got an answer"
        refusals = poll(
            "a log line about the refused peer",
            lambda: log_lines(containerd, since, "refus"),
        )
        print(f"{runtime}: {refusals}")
        assert len(refusals) == 1, refusals
        if runtime == EPOLL:
            assert "uid 0 gid 65534" in refusals[0], refusals
        # a peer of our own uid and gid is served as before
        state = state_of(containerd, unique_id)
        assert (state.pid, state.status) == (init, TaskStatus.RUNNING)
        assert shim_pid_of(init) == shim
        check(containerd.ctr("task", "kill", "-s", "SIGKILL", unique_id))
        wait_status(containerd, unique_id, "STOPPED")
