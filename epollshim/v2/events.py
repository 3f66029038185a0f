"""The event publisher: containerd's ``Events/Forward`` over our own ttrpc connection.

Rules (spec section 5):
- One FIFO queue; one event in flight at a time. containerd's ttrpc server answers
  pipelined calls concurrently, so sending the next event only after the previous reply
  is what keeps them in order (create < start < exit < delete).
- An event leaves the queue only when containerd answered it. A connection that breaks
  (containerd restarting) puts the event in flight back at the head, and the publisher
  re-dials after 0.1, 0.2, 0.4... seconds, at most ``MAX_BACKOFF`` (1 s): attempts never
  run out while the shim lives. An error reply drops that event with a log line (that is
  containerd's answer, not an outage).
- ``kick()`` re-dials at once: the daemon calls it when containerd talks to us again (it
  came back) and ``publish`` does it for every new event, so a queue never waits behind
  a back-off timer once containerd is there. The back-off only paces a containerd that
  is down.
- The connection is non-blocking with a write buffer: publishing never blocks the loop.
  With nothing queued, a broken connection is simply dropped (no timer, no wake-up); the
  next event dials again.
- Queue capacity ``MAX_QUEUE`` (2048, as runc-v2). When it is full the oldest event that
  is not a ``/tasks/exit`` is dropped, or, if every one is an exit, the oldest; each drop
  is logged with its topic and container.
- ``flush(done)`` (Shutdown): ``done`` runs once the queue is empty; or, when containerd
  stops making progress, after ``GIVE_UP`` (1 s) without an answer if it cannot be
  reached, ``GIVE_UP_CONNECTED`` (5 s) if it is connected but silent. Each event given
  up is logged.
"""

import collections
import time
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop, Timer
from epollshim.v2 import ttrpc
from epollshim.v2.messages import EVENTS_SERVICE, Envelope, Event, ForwardRequest, TaskExit
from epollshim.v2.pb import Timestamp, pack_any

MAX_QUEUE = 2048
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 1.0
GIVE_UP = 1.0
GIVE_UP_CONNECTED = 5.0
TIMEOUT_NS = 5_000_000_000
NS_METADATA = "containerd-namespace-ttrpc"
EXIT_TOPIC = TaskExit.TOPIC


class Queued:
    """One event waiting for containerd: the request and how to name it in the log."""

    __slots__ = ("label", "request", "topic")

    def __init__(self, request: ForwardRequest, topic: str, label: str) -> None:
        self.request = request
        self.topic = topic
        self.label = label


class Publisher:
    def __init__(self, loop: Loop, log: Log, address: str, namespace: str) -> None:
        self.loop = loop
        self.log = log
        self.address = address.removeprefix("unix://")
        self.namespace = namespace
        self.queue: collections.deque[Queued] = collections.deque()
        self.sock: sockets.Socket | None = None
        self.client = ttrpc.Client()
        self.decoder = ttrpc.FrameDecoder()
        self.out = bytearray()
        self.in_flight: Queued | None = None
        self.stream_id = 0
        self.retry: Timer | None = None
        self.backoff = FIRST_BACKOFF
        self.outage = ""  # why containerd cannot be reached, while it cannot
        self.flushers: list[Callable[[], None]] = []
        self.give_up: Timer | None = None
        self.progress = 0.0  # monotonic time of the last answer (or of the flush start)

    # -- the public side ------------------------------------------------------------
    def publish(self, event: Event) -> None:
        if not self.address:
            return
        topic = event.TOPIC
        envelope = Envelope(
            timestamp=Timestamp.from_ns(time.time_ns()),
            namespace=self.namespace,
            topic=topic,
            event=pack_any(event),
        )
        label = f"{topic} of {getattr(event, 'container_id', '') or '?'}"
        if len(self.queue) >= MAX_QUEUE:
            self._drop_one()
        self.queue.append(Queued(ForwardRequest(envelope=envelope), topic, label))
        self.kick()

    def kick(self) -> None:
        """Send now if anything waits: containerd may be back (keeps the back-off length)."""
        if self.retry is not None and self.queue:
            self.retry.cancel()
            self.retry = None
        self._next()

    def flush(self, done: Callable[[], None]) -> None:
        """Call ``done`` once every event was answered, or containerd stopped answering."""
        if self.idle:
            done()
            return
        self.flushers.append(done)
        if self.give_up is None:
            self.progress = time.monotonic()
            self.give_up = self.loop.call_later(GIVE_UP, self._check_progress)
        self.kick()

    @property
    def idle(self) -> bool:
        return not self.queue and self.in_flight is None

    def _drop_one(self) -> None:
        victim = next((q for q in self.queue if q.topic != EXIT_TOPIC), self.queue[0])
        self.queue.remove(victim)
        self.log.warn(f"event queue full ({MAX_QUEUE}): dropped {victim.label}")

    # -- sending ------------------------------------------------------------------------
    def _next(self) -> None:
        if self.in_flight is not None or self.retry is not None:
            return
        if not self.queue:
            if self.flushers:  # kick() runs on every call: nothing to do in the common case
                self._flushed()
            return
        if self.sock is None and not self._connect():
            return
        self.in_flight = self.queue.popleft()
        self.stream_id, frame = self.client.request(
            EVENTS_SERVICE,
            "Forward",
            self.in_flight.request,
            timeout_ns=TIMEOUT_NS,
            metadata={NS_METADATA: self.namespace},
        )
        self.out += frame
        self._write()

    def _connect(self) -> bool:
        try:
            sock = sockets.unix(sockets.SOCK_NONBLOCK)
        except OSError as e:  # EMFILE, ENFILE: like any outage, try again later
            self._schedule_retry(f"cannot make a socket: {e.strerror}")
            return False
        try:
            sock.connect(self.address)
        except BlockingIOError:  # backlog full: connecting; writable when done
            pass
        except OSError as e:  # ENOENT, ECONNREFUSED: containerd is down
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
        except OSError as e:  # EPIPE, ECONNRESET, ENOTCONN (a refused non-blocking connect)
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
        except OSError as e:  # ECONNRESET
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
            self.log.warn(f"containerd refused {self.in_flight.label}: {reply.message}")
        self.in_flight = None
        self.progress = time.monotonic()
        self.backoff = FIRST_BACKOFF
        if self.outage:
            self.log.info(f"events: containerd answers again ({self.outage} before)")
            self.outage = ""
        self._next()

    # -- failures -----------------------------------------------------------------------
    def _broken(self, why: str) -> None:
        self._close_socket()
        if self.in_flight is not None:  # back to the head: it was never answered
            self.queue.appendleft(self.in_flight)
            self.in_flight = None
        if self.queue:
            self._schedule_retry(why)
        else:  # nothing to send: dial again when there is
            self.log.debug(f"events: {why}")

    def _schedule_retry(self, why: str) -> None:
        if why != self.outage:  # once per kind of failure, not once per try
            self.log.warn(f"events: {why}; {len(self.queue)} queued, retrying")
            self.outage = why
        self.retry = self.loop.call_later(self.backoff, self._retry)
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _retry(self) -> None:
        self.retry = None
        self._next()

    # -- flushing -------------------------------------------------------------------------
    def _check_progress(self) -> None:
        self.give_up = None
        if not self.flushers:
            return
        silent = time.monotonic() - self.progress
        connected = self.sock is not None and self.in_flight is not None
        limit = GIVE_UP_CONNECTED if connected else GIVE_UP
        if silent < limit:
            self.give_up = self.loop.call_later(min(GIVE_UP, limit - silent), self._check_progress)
            return
        pending = ([self.in_flight] if self.in_flight else []) + list(self.queue)
        why = self.outage or f"no answer from containerd for {silent:.1f}s"
        for queued in pending:
            self.log.warn(f"events: giving up {queued.label} at shutdown: {why}")
        self._flushed()

    def _flushed(self) -> None:
        if self.give_up is not None:
            self.give_up.cancel()
            self.give_up = None
        flushers, self.flushers = self.flushers, []
        for done in flushers:
            done()

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.loop.forget(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.out.clear()

    def close(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        self._close_socket()
