"""The ttrpc server: accepted connections, frames in, responses out, on the one loop.

Rules (spec section 3):
- Each connection has its own ``FrameDecoder`` and output buffer. Every complete frame
  is dispatched at once, so pipelined requests are independent: a ``Call`` may be
  answered now or much later (a parked ``Wait``), in any order.
- A framing error (oversize or unknown frame type) closes that connection with one log
  line; other connections and the shim carry on. An unparsable request or an even stream
  id is answered INVALID_ARGUMENT and the connection stays.
- Writes never block: what the socket does not take waits in the buffer with EVENT_WRITE
  registered. A peer that lets more than ``MAX_BUFFERED`` pile up is closed.
- Accept failures (EMFILE, ENFILE, ENOBUFS...): the listener leaves the loop and comes
  back after a back-off (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``), or at once when
  one of our connections closes (that freed a descriptor). One log line when accepting
  starts to fail, one when it works again; the connections we have are served meanwhile.
  The back-off timer exists only during such an episode.
- Answers to a closed connection are dropped (containerd restarted; a parked ``Wait``
  of the old connection is simply forgotten).
- Peers must have our effective uid and gid (SO_PEERCRED), as ttrpc's
  ``UnixSocketRequireSameUser`` checks for runc-v2: root in another group is refused too,
  with one log line naming the peer's pid, uid and gid.
"""

import os
import struct
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop, Timer
from epollshim.v2 import ttrpc
from epollshim.v2.messages import Request
from epollshim.v2.pb import Message

MAX_BUFFERED = 16 << 20
RECV_SIZE = 65536
BACKOFF_FIRST = 0.01  # seconds without polling the listener after a failed accept
BACKOFF_MAX = 1.0
PEERCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class Call:
    """One request, answerable exactly once with ``reply`` or ``fail``."""

    __slots__ = ("conn", "done", "method", "request", "stream_id")

    def __init__(self, conn: "Connection", stream_id: int, request: Request) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.request = request
        self.method = request.method
        self.done = False

    def reply(self, result: Message | None = None) -> None:
        if not self.done:
            self.done = True
            self.conn.send(ttrpc.response_frame(self.stream_id, result))

    def fail(self, code: int, message: str) -> None:
        if not self.done:
            self.done = True
            self.conn.send(ttrpc.error_frame(self.stream_id, code, message))


Dispatch = Callable[[Call], None]


class Connection:
    def __init__(self, server: "Server", sock: sockets.Socket, name: str) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.name = name
        self.decoder = ttrpc.FrameDecoder()
        self.out = bytearray()
        self.closed = False
        server.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
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
            frames = self.decoder.feed(data)
        except ttrpc.ProtocolError as e:
            self.close(f"protocol error: {e}")
            return
        for frame in frames:
            if self.closed:
                return
            self._frame(frame)

    def _frame(self, frame: ttrpc.Frame) -> None:
        if frame.type != ttrpc.REQUEST:
            return  # ttrpc servers ignore anything but requests
        try:
            request = ttrpc.decode_request(frame)
        except ttrpc.RequestError as e:
            self.send(ttrpc.error_frame(frame.stream_id, e.code, e.message))
            return
        self.server.dispatch(Call(self, frame.stream_id, request))

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self.out += data
        if len(self.out) > MAX_BUFFERED:
            self.close(f"peer does not read: {len(self.out)} bytes of answers pending")
            return
        self._flush()

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        except OSError as e:  # EPIPE, ECONNRESET: the peer left
            self.close(f"write failed: {e.strerror}")
            return
        del self.out[:n]
        if self.out:
            self.server.loop.add_writer(self.fd, self._flush)
        else:
            self.server.loop.remove_writer(self.fd)

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        if why:
            self.server.log.warn(f"ttrpc connection {self.name} closed: {why}")
        else:
            self.server.log.debug(f"ttrpc connection {self.name} closed by the peer")
        self.server.loop.forget(self.fd)
        self.sock.close()
        self.server.connections.discard(self)
        self.server.closed_one()


class Server:
    def __init__(self, loop: Loop, log: Log, listener: sockets.Socket, dispatch: Dispatch) -> None:
        self.loop = loop
        self.log = log
        self.listener = listener
        self.dispatch = dispatch
        self.connections: set[Connection] = set()
        self.count = 0
        self.failed_accepts = 0  # in the current episode
        self.backoff = BACKOFF_FIRST
        self.retry: Timer | None = None  # set while the listener is out of the loop
        self.accepting = True
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept)

    # -- accepting ---------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            sock = sockets.accept(self.listener)
        except BlockingIOError:
            return
        except OSError as e:  # EMFILE, ENFILE, ENOBUFS, ENOMEM...: back off
            self._accept_failed(e)
            return
        if self.failed_accepts:
            self.log.info(f"ttrpc accepting again after {self.failed_accepts} failed accepts")
            self.failed_accepts = 0
            self.backoff = BACKOFF_FIRST
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
        """A connection closed: its descriptor is free."""
        if self.retry is not None:
            self._listen()

    def stop_accepting(self) -> None:
        self.accepting = False
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        self.loop.forget(self.listener.fileno())
        self.listener.close()

    # -- connections -------------------------------------------------------------------
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
        creds = sock.getsockopt(sockets.SOL_SOCKET, sockets.SO_PEERCRED, PEERCRED.size)
    except OSError as e:  # ENOTCONN, EOPNOTSUPP: no credentials, no entry
        return f"no peer credentials: {e.strerror}"
    pid, uid, gid = PEERCRED.unpack(creds)
    ours = os.geteuid(), os.getegid()
    if (uid, gid) == ours:
        return ""
    return f"peer pid {pid} uid {uid} gid {gid} is not ours (uid {ours[0]} gid {ours[1]})"
