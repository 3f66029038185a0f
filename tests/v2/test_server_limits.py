"""The ttrpc server's limits over real sockets and a real Loop, no containerd (issue 7, 3-5).

Back-pressure (peers that do not read are paused, not served into unbounded buffers, and
peers that read are never paused by them), the accept back-off when descriptors run out
(one log line per episode, no busy loop, resumed at once when a connection closes), and
the peer-credential check (our uid and our gid, or refused). The bounds are shrunk with
``monkeypatch`` so a few hundred requests show them; the shim's side of each socketpair
gets a small send buffer so answers pile up in the server rather than in the kernel.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop
from epollshim.v2 import server as server_module
from epollshim.v2 import ttrpc
from epollshim.v2.messages import TASK_SERVICE, Code, Request, Response
from epollshim.v2.server import Call, Connection, Server

ANSWER = 1000  # bytes of message in each answer
PARKED = "Park"  # a method whose calls the test answers itself, later


class Harness:
    """A Server on a real listener, answering every call with ~1 KB (or parking it)."""

    def __init__(self, tmp: Path) -> None:
        self.loop = Loop()
        self.log_path = tmp / "shim.log"
        self.log = Log()
        self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.log.add_sink(self.log_fd, "text", "debug")
        self.path = str(tmp / "shim.sock")
        listener = sockets.unix()
        listener.bind(self.path)
        listener.listen(16)
        self.parked: list[Call] = []
        self.answered = 0
        self.stop_after = 0  # stop the loop once this many calls were answered
        self.server = Server(self.loop, self.log, listener, self.dispatch)
        self.clients: list[socket.socket] = []

    def dispatch(self, call: Call) -> None:
        if call.method == PARKED:
            self.parked.append(call)
            return
        call.fail(Code.NOT_FOUND, "x" * ANSWER)
        self.answered += 1
        if self.answered == self.stop_after:
            self.loop.stop()

    def pair(self) -> tuple[socket.socket, Connection]:
        """A peer on a socketpair; the shim's end sends little at a time (small SO_SNDBUF)."""
        ours, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.settimeout(5)
        self.clients.append(ours)
        return ours, self.server.adopt(theirs)

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(self.path)
        self.clients.append(client)
        return client

    def pump(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            self.loop.call_later(0, self.loop.stop)
            self.loop.run()

    def run_until_answered(self, count: int) -> None:
        """Run the loop until ``count`` calls in all were answered (at most 10 s)."""
        if self.answered >= count:
            return
        self.stop_after = count
        guard = self.loop.call_later(10, self.loop.stop)
        self.loop.run()
        guard.cancel()

    def log_lines(self, *words: str) -> list[str]:
        text = self.log_path.read_text()
        return [line for line in text.splitlines() if all(w in line for w in words)]

    def reading(self, conn: Connection) -> bool:
        """Whether the loop polls ``conn`` for requests."""
        return self.loop.callbacks.get(conn.fd, [None, None])[0] is not None

    def listening(self) -> bool:
        return self.loop.callbacks.get(self.server.listener.fileno(), [None, None])[0] is not None

    def close(self) -> None:
        for sock in self.clients:
            sock.close()
        self.server.close()
        self.server.stop_accepting()
        self.loop.close()
        os.close(self.log_fd)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


def requests(first_id: int, count: int, method: str = "State") -> bytes:
    payload = Request(service=TASK_SERVICE, method=method, payload=b"").encode()
    return b"".join(
        ttrpc.encode_frame(first_id + 2 * n, ttrpc.REQUEST, payload) for n in range(count)
    )


def read_answers(
    sock: socket.socket, count: int, decoder: ttrpc.FrameDecoder, code: int = Code.NOT_FOUND
) -> list[int]:
    """Stream ids of the next ``count`` answers on ``sock``, each failing with ``code``
    (blocking, with the socket's timeout)."""
    ids: list[int] = []
    while len(ids) < count:
        data = sock.recv(65536)
        assert data, f"closed after {len(ids)} of {count} answers"
        for frame in decoder.feed(data):
            status = Response.decode(frame.payload).status
            assert status is not None and status.code == code, status
            ids.append(frame.stream_id)
    return ids


# -- calls in flight ----------------------------------------------------------------------


@pytest.fixture
def few_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_OPEN_CALLS", 5, raising=False)
    monkeypatch.setattr(server_module, "TOTAL_OPEN_CALLS", 8, raising=False)


def refusals(sock: socket.socket, count: int, decoder: ttrpc.FrameDecoder) -> list[int]:
    """Stream ids of the next ``count`` answers, each RESOURCE_EXHAUSTED."""
    return read_answers(sock, count, decoder, Code.RESOURCE_EXHAUSTED)


@pytest.mark.usefixtures("few_calls")
def test_calls_in_flight_per_connection_are_bounded(harness: Harness) -> None:
    peer, conn = harness.pair()
    decoder = ttrpc.FrameDecoder()
    peer.sendall(requests(1, 8, PARKED))
    harness.pump()
    # five parked; the three past the bound answered at once, and not dispatched
    assert [c.stream_id for c in harness.parked] == [1, 3, 5, 7, 9]
    assert refusals(peer, 3, decoder) == [11, 13, 15]
    assert (conn.open_calls, harness.server.open_calls) == (5, 5)
    assert len(harness.log_lines("#1", "refusing more")) == 1  # once for the episode
    # two answered: two more may park, the next is refused, and logged as a new episode
    for call in harness.parked[:2]:
        call.fail(Code.NOT_FOUND, "done")
    assert (conn.open_calls, harness.server.open_calls) == (3, 3)
    read_answers(peer, 2, decoder)
    peer.sendall(requests(17, 3, PARKED))
    harness.pump()
    assert [c.stream_id for c in harness.parked[5:]] == [17, 19]
    assert refusals(peer, 1, decoder) == [21]
    assert len(harness.log_lines("#1", "refusing more")) == 2
    # answering twice counts once
    harness.parked[0].fail(Code.NOT_FOUND, "again")
    assert conn.open_calls == 5


@pytest.mark.usefixtures("few_calls")
def test_calls_in_flight_of_all_connections_are_bounded_and_freed_by_a_close(
    harness: Harness,
) -> None:
    first, one = harness.pair()
    second, two = harness.pair()
    first.sendall(requests(1, 5, PARKED))
    harness.pump()
    second.sendall(requests(1, 5, PARKED))
    harness.pump()
    # the total (8) leaves the second connection three
    assert (one.open_calls, two.open_calls, harness.server.open_calls) == (5, 3, 8)
    assert refusals(second, 2, ttrpc.FrameDecoder()) == [7, 9]
    # the first leaves: its calls no longer count, and answering them later changes nothing
    first.close()
    harness.pump()
    assert harness.server.open_calls == 3
    for call in harness.parked[:5]:
        call.fail(Code.NOT_FOUND, "gone")
    assert (harness.server.open_calls, two.open_calls) == (3, 3)
    second.sendall(requests(11, 2, PARKED))
    harness.pump()
    assert two.open_calls == 5 and len(harness.parked) == 10


# -- back-pressure ----------------------------------------------------------------------


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "PAUSE_AT", 16 << 10, raising=False)
    monkeypatch.setattr(server_module, "RESUME_AT", 4 << 10, raising=False)
    monkeypatch.setattr(server_module, "TOTAL_CAP", 40 << 10, raising=False)
    monkeypatch.setattr(server_module, "TOTAL_RESUME", 20 << 10, raising=False)


@pytest.mark.usefixtures("small_bounds")
def test_a_peer_that_does_not_read_is_paused_then_served_in_full(harness: Harness) -> None:
    greedy, conn = harness.pair()
    greedy.sendall(requests(1, 500))  # ~500 KB of answers
    harness.pump(20)
    # paused: not polled for requests, and at most one answer past the mark
    assert not harness.reading(conn)
    assert len(conn.out) <= server_module.PAUSE_AT + ANSWER + 100
    assert harness.server.pending == len(conn.out)
    assert harness.answered < 500
    assert harness.log_lines("closed") == []
    # a peer that reads its answers is served meanwhile
    polite, _ = harness.pair()
    polite.sendall(requests(1, 3))
    harness.pump()
    assert read_answers(polite, 3, ttrpc.FrameDecoder()) == [1, 3, 5]
    # the greedy one reads at last: every answer comes, in order, none lost
    decoder = ttrpc.FrameDecoder()
    got: list[int] = []
    while len(got) < 500:
        harness.pump(2)
        greedy.setblocking(False)
        try:
            while data := greedy.recv(65536):
                got += [f.stream_id for f in decoder.feed(data)]
        except BlockingIOError:
            pass
    assert got == list(range(1, 1000, 2))
    assert harness.reading(conn) and not conn.held
    assert harness.server.pending == 0 and not harness.server.paused


@pytest.mark.usefixtures("small_bounds")
def test_the_total_pauses_only_peers_with_answers_pending(harness: Harness) -> None:
    greedy = [harness.pair() for _ in range(6)]
    for sock, _ in greedy:
        sock.sendall(requests(1, 200))
    harness.pump(20)
    # each holds less than its own mark, together they stop at the total
    cap = server_module.TOTAL_CAP + len(greedy) * (ANSWER + 100)
    assert 0 < harness.server.pending <= cap
    assert all(len(conn.out) <= server_module.PAUSE_AT + ANSWER + 100 for _, conn in greedy)
    assert not any(harness.reading(conn) for _, conn in greedy)
    # a peer that reads is never held back by them
    polite, conn = harness.pair()
    decoder = ttrpc.FrameDecoder()
    for n in range(50):
        polite.sendall(requests(2 * n + 1, 1))
        harness.pump(1)
        assert read_answers(polite, 1, decoder) == [2 * n + 1]
        assert harness.reading(conn)
    assert harness.server.pending <= cap
    # the greedy ones leave: their answers go with them, nothing stays paused
    for sock, _ in greedy:
        sock.close()
    harness.pump()
    assert harness.server.pending == 0 and not harness.server.paused
    assert harness.server.connections == {conn}


@pytest.mark.usefixtures("small_bounds")
def test_answers_to_calls_taken_before_the_pause_still_queue(harness: Harness) -> None:
    greedy, conn = harness.pair()
    greedy.sendall(requests(1, 10, PARKED) + requests(21, 300))
    harness.pump(20)
    assert len(harness.parked) == 10 and not harness.reading(conn)
    for call in harness.parked:  # e.g. parked Waits answered when a container exits
        call.fail(Code.NOT_FOUND, "y" * ANSWER)
    assert len(conn.out) > server_module.PAUSE_AT and not conn.closed
    assert harness.server.pending == len(conn.out)


@pytest.mark.usefixtures("small_bounds")
@pytest.mark.parametrize("seed", range(5))
def test_any_reading_pattern_gets_every_answer_in_order(harness: Harness, seed: int) -> None:
    """Peers send and read in random bursts: the accounting stays exact, and every answer
    arrives once, in order, however often the connections were paused and resumed."""
    rng = random.Random(seed)
    peers = [harness.pair() for _ in range(4)]
    decoders = [ttrpc.FrameDecoder() for _ in peers]
    sent = [0] * len(peers)
    got: list[list[int]] = [[] for _ in peers]
    total = 300

    def read_some(i: int, budget: int) -> None:
        sock = peers[i][0]
        sock.setblocking(False)
        try:
            while budget > 0 and (data := sock.recv(min(budget, 65536))):
                budget -= len(data)
                got[i] += [f.stream_id for f in decoders[i].feed(data)]
        except BlockingIOError:
            pass
        sock.setblocking(True)

    for _ in range(200):
        i = rng.randrange(len(peers))
        count = min(rng.randrange(60), total - sent[i])
        if count:
            peers[i][0].sendall(requests(2 * sent[i] + 1, count))
            sent[i] += count
        read_some(rng.randrange(len(peers)), rng.choice([0, 4096, 65536]))
        harness.pump(1)
        outs = sum(len(conn.out) for _, conn in peers)
        assert harness.server.pending == outs
    while any(len(g) < s for g, s in zip(got, sent, strict=True)):
        harness.pump(1)
        for i in range(len(peers)):
            read_some(i, 1 << 20)
    assert [g == list(range(1, 2 * s, 2)) for g, s in zip(got, sent, strict=True)] == [True] * 4
    assert harness.server.pending == 0 and not harness.server.paused


# -- accept back-off ------------------------------------------------------------------------


def emfile(listener: sockets.Socket) -> sockets.Socket:
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def test_accept_failures_back_off_log_once_and_resume_when_a_connection_closes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only a closing connection can bring the listener back
    monkeypatch.setattr(server_module, "BACKOFF_FIRST", 3600.0, raising=False)
    monkeypatch.setattr(server_module, "BACKOFF_MAX", 3600.0, raising=False)
    existing, _ = harness.pair()
    monkeypatch.setattr(sockets, "accept", emfile)
    waiting = harness.connect()  # in the backlog
    harness.pump(20)
    assert len(harness.log_lines("accept failed", "Too many open files")) == 1
    assert not harness.listening()  # no busy loop: the listener is out of the loop
    assert harness.server.failed_accepts == 1
    # the connections it has are served
    existing.sendall(requests(1, 1))
    harness.pump()
    assert read_answers(existing, 1, ttrpc.FrameDecoder()) == [1]
    # a descriptor frees up: the listener is back at once, and accept works again
    monkeypatch.undo()
    existing.close()
    harness.pump()
    assert harness.listening()
    assert len(harness.log_lines("accepting again after 1 failed accepts")) == 1
    waiting.sendall(requests(1, 1))
    harness.pump()
    assert read_answers(waiting, 1, ttrpc.FrameDecoder()) == [1]
    assert len(harness.log_lines("accept failed")) == 1


def test_accept_failures_retry_after_the_back_off(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = iter(range(3))

    def accept(listener: sockets.Socket) -> sockets.Socket:
        if next(failures, None) is not None:
            return emfile(listener)
        return real_accept(listener)

    real_accept = sockets.accept
    monkeypatch.setattr(sockets, "accept", accept)
    client = harness.connect()
    client.sendall(requests(1, 1))
    harness.run_until_answered(1)  # through three back-offs: 10, 20, 40 ms
    assert read_answers(client, 1, ttrpc.FrameDecoder()) == [1]
    assert len(harness.log_lines("accept failed")) == 1
    assert len(harness.log_lines("accepting again after 3 failed accepts")) == 1
    assert harness.server.retry is None
    assert all(timer.cancelled for timer in harness.loop.timers)  # no timer once accepting


def test_draining_the_backlog_at_the_limit_is_one_episode(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the limit, each closed connection frees one descriptor that the next waiting peer
    takes at once: accept works once, then fails again. That is still the same episode,
    not one per freed descriptor (seen: two log lines per close)."""
    real_accept = sockets.accept
    limit = 3  # connections the fake descriptor table has room for

    def accept(listener: sockets.Socket) -> sockets.Socket:
        if len(harness.server.connections) >= limit:
            return emfile(listener)
        return real_accept(listener)

    monkeypatch.setattr(sockets, "accept", accept)
    clients = [harness.connect() for _ in range(8)]
    harness.pump()
    assert len(harness.server.connections) == limit
    for client in clients:  # one at a time: each close lets one waiting peer in
        client.close()
        harness.pump(3)
    harness.pump()
    assert harness.server.connections == set()
    assert harness.log_lines("accepting again") == []  # nobody came since: no proof yet
    fresh = harness.connect()
    fresh.sendall(requests(1, 1))
    harness.pump()
    assert read_answers(fresh, 1, ttrpc.FrameDecoder()) == [1]
    assert len(harness.log_lines("accept failed")) == 1
    assert len(harness.log_lines("accepting again")) == 1
    assert harness.server.failed_accepts == 0 and harness.listening()


def test_stop_accepting_during_a_back_off_leaves_no_timer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockets, "accept", emfile)
    harness.connect()
    harness.pump()
    assert harness.server.retry is not None
    harness.server.stop_accepting()
    assert harness.server.retry is None
    assert all(timer.cancelled for timer in harness.loop.timers)


# -- peer credentials -----------------------------------------------------------------------


def test_a_peer_of_another_group_is_refused(harness: Harness) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect with another gid")
    os.setegid(65534)
    try:
        stranger = harness.connect()  # SO_PEERCRED records the credentials of connect()
    finally:
        os.setegid(0)
    harness.pump()
    assert stranger.recv(100) == b""  # closed without a word
    (line,) = harness.log_lines("refused")
    assert f"peer pid {os.getpid()} uid 0 gid 65534 is not ours (uid 0 gid 0)" in line
    assert harness.server.connections == set()
    friend = harness.connect()
    friend.sendall(requests(1, 1))
    harness.pump()
    assert read_answers(friend, 1, ttrpc.FrameDecoder()) == [1]
