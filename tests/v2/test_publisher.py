"""The event publisher against a containerd stand-in on real unix sockets, one real Loop.

The stand-in (``Events``) is a listening socket served on the publisher's own loop: it
decodes each ``Events/Forward`` and answers it, or, as told, hangs up without answering
(containerd killed mid-call) or answers an error. containerd going down is its socket
going away; coming back is a new listener on the same path. The tests check what the
issue asks: nothing is lost or reordered across outages however long, a queued event goes
as soon as containerd is back and the publisher is kicked, the queue bound keeps exits,
and a flush gives up (logging each event) only when containerd does not answer.
The same behaviour against a real containerd: tests/containerd/test_v2_outage.py.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from epollshim.log import Log
from epollshim.shell.loop import Loop
from epollshim.v2 import events, ttrpc
from epollshim.v2.events import Publisher
from epollshim.v2.messages import EVENTS_SERVICE, ForwardRequest, TaskExit, TaskStart
from epollshim.v2.pb import decode

BOUND = 10.0  # seconds a test may pump the loop before it fails: a bound, never asserted


class Events:
    """containerd's Events service, as far as Forward goes, served on ``loop``."""

    def __init__(self, loop: Loop, path: str, mode: str = "answer") -> None:
        self.loop = loop
        self.mode = mode  # "answer", "hang-up" (close without answering) or "refuse"
        self.got: list[tuple[str, int, int]] = []  # (topic, pid, exit status)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.path = path
        self.up = True
        self.conns: list[socket.socket] = []
        loop.add_reader(self.listener.fileno(), self._accept)

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.setblocking(False)
        decoder = ttrpc.FrameDecoder()
        self.conns.append(conn)
        self.loop.add_reader(conn.fileno(), lambda: self._readable(conn, decoder))

    def _readable(self, conn: socket.socket, decoder: ttrpc.FrameDecoder) -> None:
        data = conn.recv(65536)
        if not data:
            self._drop(conn)
            return
        for frame in decoder.feed(data):
            request = ttrpc.decode_request(frame)
            assert (request.service, request.method) == (EVENTS_SERVICE, "Forward")
            if self.mode == "hang-up":
                self._drop(conn)
                return
            if self.mode == "refuse":
                conn.sendall(ttrpc.error_frame(frame.stream_id, 5, "namespace gone"))
                continue
            envelope = decode(ForwardRequest, request.payload).envelope
            assert envelope is not None and envelope.event is not None
            exit_status = pid = 0
            if envelope.topic == "/tasks/exit":
                event = decode(TaskExit, envelope.event.value)
                pid, exit_status = event.pid, event.exit_status
            self.got.append((envelope.topic, pid, exit_status))
            conn.sendall(ttrpc.response_frame(frame.stream_id))

    def _drop(self, conn: socket.socket) -> None:
        self.loop.forget(conn.fileno())
        conn.close()
        self.conns.remove(conn)

    def down(self) -> None:
        """containerd dies: its listener and every connection go, the socket file too."""
        if not self.up:
            return
        self.up = False
        for conn in list(self.conns):
            self._drop(conn)
        self.loop.forget(self.listener.fileno())
        self.listener.close()
        os.unlink(self.path)


class Setup:
    def __init__(self, path: str, log_path: str) -> None:
        self.path = path
        self.loop = Loop()
        self.log = Log()
        self.log_path = log_path
        self.log.open_file(log_path, "json", "debug")
        self.publisher = Publisher(self.loop, self.log, "unix://" + path, "ns")
        self.standins: list[Events] = []

    def containerd(self, mode: str = "answer") -> Events:
        ctd = Events(self.loop, self.path, mode)
        self.standins.append(ctd)
        return ctd

    def pump_until(self, what: str, done: object) -> None:
        """Run the loop until ``done()`` holds (bounded)."""
        end = time.monotonic() + BOUND
        while not done():  # type: ignore[operator]
            if time.monotonic() > end:
                pytest.fail(f"not within {BOUND} s: {what}")
            self.loop.call_later(0.01, self.loop.stop)
            self.loop.run()

    def log_text(self) -> str:
        return Path(self.log_path).read_text()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(str(tmp_path / "ctd.sock"), str(tmp_path / "shim.log"))
    yield s
    for ctd in s.standins:
        ctd.down()
    s.publisher.close()
    s.loop.close()


def exit_event(pid: int, status: int) -> TaskExit:
    return TaskExit(container_id="c", id="c", pid=pid, exit_status=status)


def start_event(pid: int) -> TaskStart:
    return TaskStart(container_id="c", pid=pid)


def test_attempts_never_run_out_and_order_is_kept(setup: Setup) -> None:
    """containerd hangs up on every Forward, ten times over (the old limit was 5 tries)."""
    ctd = setup.containerd("hang-up")
    accepted = [0]
    real_accept = ctd._accept

    def counting_accept() -> None:
        accepted[0] += 1
        real_accept()

    setup.loop.forget(ctd.listener.fileno())
    setup.loop.add_reader(ctd.listener.fileno(), counting_accept)
    setup.publisher.publish(start_event(1))
    setup.publisher.publish(exit_event(1, 7))
    for attempt in range(1, 11):
        setup.pump_until(f"attempt {attempt}", lambda a=attempt: accepted[0] >= a)
        setup.pump_until("the hang-up seen", lambda: setup.publisher.in_flight is None)
        setup.publisher.kick()  # as a call from containerd would
    assert len(setup.publisher.queue) + (setup.publisher.in_flight is not None) == 2
    ctd.mode = "answer"
    setup.pump_until("both delivered", lambda: len(ctd.got) == 2)
    assert ctd.got == [("/tasks/start", 0, 0), ("/tasks/exit", 1, 7)]
    assert setup.publisher.idle
    assert "dropped" not in setup.log_text()
    ctd.down()


def test_queued_events_go_as_soon_as_containerd_is_back_and_kicks(setup: Setup) -> None:
    """Down long enough for the back-off to reach its longest; back, a kick sends at once."""
    for pid in (1, 2, 3):
        setup.publisher.publish(exit_event(pid, pid))
    setup.pump_until("the longest back-off", lambda: setup.publisher.backoff == events.MAX_BACKOFF)
    assert setup.publisher.retry is not None
    ctd = setup.containerd()
    setup.publisher.kick()
    for _ in range(20):  # loop turns that wait for no timer: the back-off timer is not needed
        setup.loop.call_later(0, setup.loop.stop)
        setup.loop.run()
    assert ctd.got == [("/tasks/exit", 1, 1), ("/tasks/exit", 2, 2), ("/tasks/exit", 3, 3)]
    assert setup.publisher.idle and setup.publisher.retry is None
    ctd.down()


def test_a_new_event_redials_at_once(setup: Setup) -> None:
    setup.publisher.publish(exit_event(1, 1))
    setup.pump_until("the longest back-off", lambda: setup.publisher.backoff == events.MAX_BACKOFF)
    ctd = setup.containerd()
    setup.publisher.publish(exit_event(2, 2))
    for _ in range(20):
        setup.loop.call_later(0, setup.loop.stop)
        setup.loop.run()
    assert ctd.got == [("/tasks/exit", 1, 1), ("/tasks/exit", 2, 2)]
    ctd.down()


def test_a_full_queue_drops_other_events_before_exits(setup: Setup) -> None:
    setup.publisher.publish(start_event(1))
    for pid in range(2, events.MAX_QUEUE + 1):
        setup.publisher.publish(exit_event(pid, 0))
    assert len(setup.publisher.queue) == events.MAX_QUEUE
    setup.publisher.publish(exit_event(events.MAX_QUEUE + 1, 0))  # the start goes
    assert len(setup.publisher.queue) == events.MAX_QUEUE
    assert all(q.topic == "/tasks/exit" for q in setup.publisher.queue)
    setup.publisher.publish(exit_event(events.MAX_QUEUE + 2, 0))  # only exits: the oldest
    labels = [q.request.envelope for q in setup.publisher.queue]
    assert len(labels) == events.MAX_QUEUE
    log = setup.log_text()
    assert log.count("event queue full") == 2
    assert "dropped /tasks/start of c" in log and "dropped /tasks/exit of c" in log
    ctd = setup.containerd()
    setup.publisher.kick()
    setup.pump_until("the queue delivered", lambda: setup.publisher.idle)
    assert [pid for _, pid, _ in ctd.got] == list(range(3, events.MAX_QUEUE + 3))
    ctd.down()


def test_an_error_reply_drops_that_event_only(setup: Setup) -> None:
    ctd = setup.containerd("refuse")
    setup.publisher.publish(exit_event(1, 1))
    setup.pump_until("the refusal", lambda: setup.publisher.idle)
    assert "containerd refused /tasks/exit of c: namespace gone" in setup.log_text()
    ctd.mode = "answer"
    setup.publisher.publish(exit_event(2, 2))
    setup.pump_until("the next event", lambda: setup.publisher.idle)
    assert ctd.got == [("/tasks/exit", 2, 2)]
    ctd.down()


def test_a_lost_connection_with_nothing_queued_sets_no_timer(setup: Setup) -> None:
    ctd = setup.containerd()
    setup.publisher.publish(exit_event(1, 1))
    setup.pump_until("delivered", lambda: setup.publisher.idle)
    ctd.down()
    setup.pump_until("the hang-up seen", lambda: setup.publisher.sock is None)
    assert setup.publisher.retry is None
    assert [t for t in setup.loop.timers if not t.cancelled] == []


def test_flush_waits_for_the_queue_when_containerd_answers(setup: Setup) -> None:
    flushed = []
    setup.publisher.publish(exit_event(1, 1))  # containerd is down for now
    setup.publisher.flush(lambda: flushed.append(True))
    ctd = setup.containerd()
    setup.publisher.kick()
    setup.pump_until("the flush", lambda: flushed)
    assert ctd.got == [("/tasks/exit", 1, 1)]
    assert "giving up" not in setup.log_text()
    ctd.down()


def test_flush_gives_up_on_an_unreachable_containerd_naming_each_event(setup: Setup) -> None:
    flushed = []
    setup.publisher.publish(start_event(1))
    setup.publisher.publish(exit_event(1, 9))
    setup.publisher.flush(lambda: flushed.append(True))
    setup.pump_until("the flush to give up", lambda: flushed)
    log = setup.log_text()
    assert "giving up /tasks/start of c at shutdown" in log
    assert "giving up /tasks/exit of c at shutdown" in log
    assert "cannot connect to" in log


def test_flush_gives_up_on_a_silent_containerd(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connected but never answering: given up after GIVE_UP_CONNECTED (shortened here)."""
    monkeypatch.setattr(events, "GIVE_UP_CONNECTED", 0.3)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(setup.path)
    listener.listen(4)  # never accepted: the connect succeeds, no answer ever comes
    flushed = []
    setup.publisher.publish(exit_event(1, 1))
    setup.publisher.flush(lambda: flushed.append(True))
    setup.pump_until("the flush to give up", lambda: flushed)
    assert "giving up /tasks/exit of c at shutdown: no answer from containerd" in (setup.log_text())
    listener.close()
