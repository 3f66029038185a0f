"""The event publisher: containerd's ``Events/Forward`` over our own ttrpc connection.

Rules (spec section 5):
- One FIFO queue; one event in flight at a time. containerd's ttrpc server answers
  pipelined calls concurrently, so sending the next event only after the previous reply
  is what keeps them in order (create < start < exit < delete).
- The connection is ours, non-blocking, with a write buffer: publishing never blocks the
  loop. A connection that fails (containerd restarting) is re-dialled lazily after 1, 2,
  4... seconds (at most 8); the event in flight goes back to the head of the queue and
  is dropped after ``MAX_ATTEMPTS`` tries. An error reply drops that event with a log line.
- Queue capacity 2048, as runc-v2: beyond it the oldest event is dropped (logged).
- ``flush(done, deadline)``: call ``done`` once the queue is empty or the deadline passed
  (Shutdown waits for its events, spec 2.4).
"""

import collections
import time
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop, Timer
from epollshim.v2 import ttrpc
from epollshim.v2.messages import EVENTS_SERVICE, TOPICS, Envelope, ForwardRequest
from epollshim.v2.pb import Message, Timestamp, pack_any

MAX_QUEUE = 2048
MAX_ATTEMPTS = 5
TIMEOUT_NS = 5_000_000_000
NS_METADATA = "containerd-namespace-ttrpc"


class Publisher:
    def __init__(self, loop: Loop, log: Log, address: str, namespace: str) -> None:
        self.loop = loop
        self.log = log
        self.address = address.removeprefix("unix://")
        self.namespace = namespace
        self.queue: collections.deque[tuple[ForwardRequest, int]] = collections.deque()
        self.sock: sockets.Socket | None = None
        self.client = ttrpc.Client()
        self.decoder = ttrpc.FrameDecoder()
        self.out = bytearray()
        self.in_flight: tuple[ForwardRequest, int] | None = None
        self.stream_id = 0
        self.retry: Timer | None = None
        self.backoff = 1.0
        self.flushers: list[Callable[[], None]] = []

    # -- the public side ------------------------------------------------------------
    def publish(self, event: Message) -> None:
        if not self.address:
            return
        envelope = Envelope(
            timestamp=Timestamp.from_ns(time.time_ns()),
            namespace=self.namespace,
            topic=TOPICS[type(event)],
            event=pack_any(event),
        )
        if len(self.queue) >= MAX_QUEUE:
            dropped, _ = self.queue.popleft()
            self.log.warn(f"event queue full: dropped {_topic(dropped)}")
        self.queue.append((ForwardRequest(envelope=envelope), 0))
        self._next()

    def flush(self, done: Callable[[], None], deadline: float) -> None:
        if self.idle:
            done()
            return
        self.flushers.append(done)
        self.loop.call_later(deadline, self._flushed)

    @property
    def idle(self) -> bool:
        return not self.queue and self.in_flight is None

    def _flushed(self) -> None:
        flushers, self.flushers = self.flushers, []
        if flushers and not self.idle:
            self.log.warn(f"{len(self.queue) + 1} events not delivered before shutdown")
        for done in flushers:
            done()

    # -- sending ------------------------------------------------------------------------
    def _next(self) -> None:
        if self.in_flight is not None or self.retry is not None:
            return
        if not self.queue:
            if self.flushers:
                self._flushed()
            return
        if self.sock is None and not self._connect():
            return
        self.in_flight = self.queue.popleft()
        request, _ = self.in_flight
        self.stream_id, frame = self.client.request(
            EVENTS_SERVICE,
            "Forward",
            request,
            timeout_ns=TIMEOUT_NS,
            metadata={NS_METADATA: self.namespace},
        )
        self.out += frame
        self._write()

    def _connect(self) -> bool:
        sock = sockets.unix(sockets.SOCK_NONBLOCK)
        try:
            sock.connect(self.address)
        except BlockingIOError:  # backlog full: connecting; writable when done
            pass
        except OSError as e:
            sock.close()
            self._schedule_retry(f"cannot connect to {self.address}: {e.strerror}")
            return False
        self.sock = sock
        self.client = ttrpc.Client()
        self.decoder = ttrpc.FrameDecoder()
        self.out.clear()
        self.loop.add_reader(sock.fileno(), self._readable)
        return True

    def _write(self) -> None:
        assert self.sock is not None
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._broken(f"send failed: {e.strerror}")
            return
        del self.out[:n]
        if self.out:
            self.loop.add_writer(self.sock.fileno(), self._write)
        else:
            self.loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self._broken(f"receive failed: {e.strerror}")
            return
        if not data:
            self._broken("containerd closed the connection")
            return
        try:
            for frame in self.decoder.feed(data):
                reply = self.client.receive(frame)
                if reply is not None and reply.stream_id == self.stream_id:
                    self._answered(reply)
        except ttrpc.ProtocolError as e:
            self._broken(f"bad reply: {e}")

    def _answered(self, reply: ttrpc.Reply) -> None:
        assert self.in_flight is not None
        if not reply.ok:
            self.log.warn(f"containerd refused {_topic(self.in_flight[0])}: {reply.message}")
        self.in_flight = None
        self.backoff = 1.0
        self._next()

    # -- failures -----------------------------------------------------------------------
    def _broken(self, why: str) -> None:
        if self.sock is not None:
            self.loop.forget(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.out.clear()
        if self.in_flight is not None:  # back to the head; _schedule_retry counts the try
            self.queue.appendleft(self.in_flight)
            self.in_flight = None
        self._schedule_retry(why)

    def _schedule_retry(self, why: str) -> None:
        self.log.warn(f"events: {why}; retrying in {self.backoff:g}s")
        if self.queue and self.queue[0][1] + 1 >= MAX_ATTEMPTS:
            request, _ = self.queue.popleft()
            self.log.warn(f"dropped {_topic(request)} after {MAX_ATTEMPTS} attempts")
        elif self.queue:
            request, attempts = self.queue.popleft()
            self.queue.appendleft((request, attempts + 1))
        self.retry = self.loop.call_later(self.backoff, self._retry)
        self.backoff = min(self.backoff * 2, 8.0)

    def _retry(self) -> None:
        self.retry = None
        self._next()

    def close(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
        if self.sock is not None:
            self.loop.forget(self.sock.fileno())
            self.sock.close()
            self.sock = None


def _topic(request: ForwardRequest) -> str:
    return request.envelope.topic if request.envelope else "an event"
