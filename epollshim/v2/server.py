"""The ttrpc server: accepted connections, frames in, responses out, on the one loop.

Rules (spec section 3):
- Each connection has its own ``FrameDecoder`` and output buffer. Complete frames are
  dispatched in the order they came, so pipelined requests are independent: a ``Call``
  may be answered now or much later (a parked ``Wait``), in any order.
- A framing error (oversize or unknown frame type) closes that connection with one log
  line; other connections and the shim carry on. An unparsable request or an even stream
  id is answered INVALID_ARGUMENT and the connection stays.
- Writes never block: what the socket does not take waits in the buffer with EVENT_WRITE
  registered; while bytes wait, further answers are only appended (no syscall).
- Back-pressure, per connection: once more than ``PAUSE_AT`` of its answers are unsent,
  the connection is paused: it is not read, and frames already decoded wait undispatched
  (so it cannot pile up more than one answer past the mark), until its backlog is back
  to ``RESUME_AT``. Across connections: while all of them hold more than ``TOTAL_CAP``,
  every connection with answers pending pauses too, until the total is back to
  ``TOTAL_RESUME`` or its own backlog is empty. A peer that reads its answers has none
  pending, so it is never paused by the others (as runc-v2, which stops reading a peer
  it cannot write to). Paused connections cost no syscall; they resume on their own
  EVENT_WRITE, and the frames they hold are dispatched from a zero-delay timer (never
  from inside another connection's callback). Answers to calls taken before the pause
  (a parked ``Wait``) still queue; a peer that lets more than ``MAX_BUFFERED`` pile up
  all the same is closed.
- Accept failures (EMFILE, ENFILE, ENOBUFS...): the listener leaves the loop and comes
  back after a back-off (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``), or at once when
  one of our connections closes (that freed a descriptor). One log line when accepting
  starts to fail, one when it works again, which is when every waiting peer got in (the
  backlog is empty): at the limit, one success proves little. The connections we have are
  served meanwhile; the back-off timer exists only during such an episode.
- Calls in flight are bounded: a connection may have ``MAX_OPEN_CALLS`` calls dispatched
  and not yet answered (parked ``Wait``s, mostly), all connections ``TOTAL_OPEN_CALLS``;
  past that a request is answered RESOURCE_EXHAUSTED at once, without dispatching it,
  with one log line per connection each time it reaches the bound. Each parked call
  holds memory until its answer, so a peer sending Waits without end would otherwise
  grow the shim without end (runc-v2 parks a goroutine per call). containerd keeps one
  parked Wait per process it waits for, far below the bound.
- Bytes sent to a peer tell the loop (``Loop.woke_peer``), which yields the CPU once
  before a relay's next chunk, so the caller our answer woke runs first (shell/loop.py).
- Answers to a closed connection are dropped (containerd restarted; a parked ``Wait``
  of the old connection is simply forgotten), and its calls stop counting.
- Peers must have our effective uid and gid (SO_PEERCRED), as ttrpc's
  ``UnixSocketRequireSameUser`` checks for runc-v2: root in another group is refused too,
  with one log line naming the peer's pid, uid and gid.
"""

import os
import sys
from collections import deque
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop, Timer
from epollshim.v2 import ttrpc
from epollshim.v2.messages import Code, Request
from epollshim.v2.pb import Message

RECV_SIZE = 65536
PAUSE_AT = 1 << 20  # unsent answers of one connection: stop reading it
RESUME_AT = 256 << 10  # ... read it again
TOTAL_CAP = 4 << 20  # unsent answers of all connections: pause those with any pending
TOTAL_RESUME = 2 << 20
MAX_BUFFERED = 16 << 20  # reachable only through answers to calls taken earlier
BACKOFF_FIRST = 0.01  # seconds without polling the listener after a failed accept
BACKOFF_MAX = 1.0
PEERCRED_SIZE = 12  # struct ucred: int pid, uint uid, uint gid
MAX_OPEN_CALLS = 1024  # calls of one connection dispatched, not answered yet
TOTAL_OPEN_CALLS = 4096  # ... of all connections


class Call:
    """One request, answerable exactly once with ``reply`` or ``fail``."""

    __slots__ = ("conn", "done", "method", "request", "stream_id")

    def __init__(self, conn: "Connection", stream_id: int, request: Request) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.request = request
        self.method = request.method
        self.done = False

    def reply(self, result: Message | bytes | None = None) -> None:
        if not self.done:
            self.done = True
            self.conn.answered()
            self.conn.send(ttrpc.response_frame(self.stream_id, result))

    def fail(self, code: int, message: str) -> None:
        if not self.done:
            self.done = True
            self.conn.answered()
            self.conn.send(ttrpc.error_frame(self.stream_id, code, message))


Dispatch = Callable[[Call], None]


class Connection:
    def __init__(self, server: "Server", sock: sockets.Socket, name: str) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.name = name
        self.decoder = ttrpc.FrameDecoder()
        self.held: deque[ttrpc.Frame] = deque()  # decoded, not dispatched yet
        self.out = bytearray()
        self.paused = False
        self.resuming: Timer | None = None
        self.closed = False
        self.open_calls = 0  # dispatched, not answered yet
        self.refusing = False  # at MAX_OPEN_CALLS or TOTAL_OPEN_CALLS (logged once)
        server.loop.add_reader(self.fd, self._readable)

    # -- reading -----------------------------------------------------------------------
    def _readable(self) -> None:
        if self.held:  # resumed, and the zero-delay timer has not run yet: keep the order
            self._dispatch_held()
            if self.held or self.closed:
                return
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as e:  # ECONNRESET
            self.close(f"read failed: {e.strerror}")
            return
        if not data:
            self.close("")
            return
        try:
            self.held.extend(self.decoder.feed(data))
        except ttrpc.ProtocolError as e:
            self.close(f"protocol error: {e}")
            return
        self._dispatch_held()

    def _dispatch_held(self) -> None:
        while self.held and not self.closed:
            if self._backlogged():
                self._pause()
                return
            self._frame(self.held.popleft())

    def _frame(self, frame: ttrpc.Frame) -> None:
        if frame.type != ttrpc.REQUEST:
            return  # ttrpc servers ignore anything but requests
        try:
            request = ttrpc.decode_request(frame)
        except ttrpc.RequestError as e:
            self.send(ttrpc.error_frame(frame.stream_id, e.code, e.message))
            return
        if self.open_calls >= MAX_OPEN_CALLS or self.server.open_calls >= TOTAL_OPEN_CALLS:
            self._refuse(frame.stream_id, request.method)
            return
        self.refusing = False
        self.open_calls += 1
        self.server.open_calls += 1
        self.server.dispatch(Call(self, frame.stream_id, request))

    def _refuse(self, stream_id: int, method: str) -> None:
        mine, total = self.open_calls, self.server.open_calls
        why = f"{mine} calls of this connection ({total} of all) await their answers"
        if not self.refusing:
            self.refusing = True
            self.server.log.warn(f"ttrpc connection {self.name}: {why}; refusing more")
        self.send(ttrpc.error_frame(stream_id, Code.RESOURCE_EXHAUSTED, f"{method}: {why}"))

    def answered(self) -> None:
        """One of our calls got its answer (or a closed connection's, which no longer count)."""
        if not self.closed:
            self.open_calls -= 1
            self.server.open_calls -= 1

    # -- back-pressure -----------------------------------------------------------------
    def _backlogged(self) -> bool:
        """True while this peer should not be read (module rules; hysteresis when paused)."""
        mine = len(self.out)
        if not mine:
            return False
        if self.paused:
            return mine > RESUME_AT or self.server.pending > TOTAL_RESUME
        return mine > PAUSE_AT or self.server.pending > TOTAL_CAP

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.server.paused.add(self)
            self.server.loop.remove_reader(self.fd)

    def resume_if_drained(self) -> None:
        if not self.paused or self.closed or self._backlogged():
            return
        self.paused = False
        self.server.paused.discard(self)
        self.server.loop.add_reader(self.fd, self._readable)
        if self.held and self.resuming is None:
            self.resuming = self.server.loop.call_later(0, self._resumed)

    def _resumed(self) -> None:
        self.resuming = None
        if not self.paused:
            self._dispatch_held()

    # -- writing -----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closed:
            return
        waiting = bool(self.out)  # then EVENT_WRITE is registered: let it flush
        self.out += data
        self.server.pending += len(data)
        if len(self.out) > MAX_BUFFERED:
            self.close(f"peer does not read: {len(self.out)} bytes of answers pending")
        elif not waiting:
            self._flush()

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        except OSError as e:  # EPIPE, ECONNRESET: the peer left
            self.close(f"write failed: {e.strerror}")
            return
        if n:
            del self.out[:n]
            self.server.pending -= n
        if self.out:
            self.server.loop.add_writer(self.fd, self._flush)
        else:
            self.server.loop.remove_writer(self.fd)
        if n:
            self.resume_if_drained()
            self.server.drained()
            self.server.loop.woke_peer()

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        if why:
            self.server.log.warn(f"ttrpc connection {self.name} closed: {why}")
        else:
            self.server.log.debug(f"ttrpc connection {self.name} closed by the peer")
        if self.resuming is not None:
            self.resuming.cancel()
        self.server.loop.forget(self.fd)
        self.sock.close()
        self.server.pending -= len(self.out)
        self.server.open_calls -= self.open_calls
        self.open_calls = 0
        self.out.clear()
        self.held.clear()
        self.server.connections.discard(self)
        self.server.paused.discard(self)
        self.server.closed_one()


class Server:
    def __init__(self, loop: Loop, log: Log, listener: sockets.Socket, dispatch: Dispatch) -> None:
        self.loop = loop
        self.log = log
        self.listener = listener
        self.dispatch = dispatch
        self.connections: set[Connection] = set()
        self.paused: set[Connection] = set()
        self.pending = 0  # unsent answer bytes, all connections together
        self.open_calls = 0  # dispatched and not answered, open connections together
        self.count = 0
        self.failed_accepts = 0  # in the current episode
        self.backoff = BACKOFF_FIRST
        self.retry: Timer | None = None  # set while the listener is out of the loop
        self.accepting = True
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept)

    # -- accepting ---------------------------------------------------------------------
    def _accept(self) -> None:
        # One accept per wake-up (level-triggered: the next comes on the next one), except
        # in an episode: there, accept until the backlog is empty, and only that ends it.
        # One success proves little at the limit, where each descriptor a closing
        # connection frees is taken by the next waiting peer and accept fails again.
        served = False
        while True:
            try:
                sock = sockets.accept(self.listener)
            except BlockingIOError:
                if served and self.failed_accepts:
                    self._accepting_again()
                return
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS, ENOMEM...: back off
                self._accept_failed(e)
                return
            self._serve(sock)
            served = True
            if not self.failed_accepts:
                return

    def _serve(self, sock: sockets.Socket) -> None:
        sock.setblocking(False)
        self.count += 1
        name = f"#{self.count}"
        denied = _peer_denied(sock)
        if denied:
            self.log.warn(f"ttrpc connection {name} refused: {denied}")
            sock.close()
            return
        self.log.debug(f"ttrpc connection {name} accepted")
        self.connections.add(Connection(self, sock, name))

    def _accepting_again(self) -> None:
        self.log.info(f"ttrpc accepting again after {self.failed_accepts} failed accepts")
        self.failed_accepts = 0
        self.backoff = BACKOFF_FIRST

    def _accept_failed(self, error: OSError) -> None:
        if not self.failed_accepts:
            self.log.error(
                f"ttrpc accept failed: {error.strerror}; retrying when one of our "
                f"{len(self.connections)} connections closes or within {BACKOFF_MAX:g} s, "
                "quietly until it works"
            )
        self.failed_accepts += 1
        self.loop.remove_reader(self.listener.fileno())
        self.retry = self.loop.call_later(self.backoff, self._listen)
        self.backoff = min(2 * self.backoff, BACKOFF_MAX)

    def _listen(self) -> None:
        """Put the listener back in the loop (back-off over, or a descriptor freed)."""
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        if self.accepting:
            self.loop.add_reader(self.listener.fileno(), self._accept)

    def closed_one(self) -> None:
        """A connection closed: its descriptor is free, and so are its answers."""
        if self.retry is not None:
            self._listen()
        self.drained()

    def stop_accepting(self) -> None:
        self.accepting = False
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        self.loop.forget(self.listener.fileno())
        self.listener.close()

    # -- connections -------------------------------------------------------------------
    def drained(self) -> None:
        """Answers left: connections paused by the total may read again."""
        if self.paused and self.pending <= TOTAL_RESUME:
            for conn in list(self.paused):
                conn.resume_if_drained()

    def adopt(self, sock: sockets.Socket) -> Connection:
        """Serve an already connected socket (tests use a socketpair)."""
        sock.setblocking(False)
        self.count += 1
        conn = Connection(self, sock, f"#{self.count}")
        self.connections.add(conn)
        return conn

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close("")


def _peer_denied(sock: sockets.Socket) -> str:
    """Why the peer may not talk to us, or "" (SO_PEERCRED: it must be our uid and gid)."""
    try:
        creds = sock.getsockopt(sockets.SOL_SOCKET, sockets.SO_PEERCRED, PEERCRED_SIZE)
    except OSError as e:  # ENOTCONN, EOPNOTSUPP: no credentials, no entry
        return f"no peer credentials: {e.strerror}"
    pid, uid, gid = (
        int.from_bytes(creds[i : i + 4], sys.byteorder, signed=i == 0) for i in (0, 4, 8)
    )
    ours = os.geteuid(), os.getegid()
    if (uid, gid) == ours:
        return ""
    return f"peer pid {pid} uid {uid} gid {gid} is not ours (uid {ours[0]} gid {ours[1]})"
