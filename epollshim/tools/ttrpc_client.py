"""A blocking ttrpc client for a shim's Task service, for tests and the bench.

It speaks to any runtime v2 shim (epollshim or containerd-shim-runc-v2) with epollshim's own
codec (``epollshim.v2.ttrpc``, ``epollshim.v2.messages``). Never imported by a shim.
"""

from __future__ import annotations

import socket

from epollshim.v2 import ttrpc
from epollshim.v2.messages import TASK_SERVICE
from epollshim.v2.pb import Message


class ShimConnection:
    """A blocking ttrpc connection to a shim socket, with our own codec."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except BaseException:
            self.sock.close()
            raise
        self.client = ttrpc.Client()
        self.decoder = ttrpc.FrameDecoder()
        self.replies: dict[int, ttrpc.Reply] = {}  # arrived, not yet asked for

    def __enter__(self) -> ShimConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def call(self, method: str, argument: Message) -> ttrpc.Reply:
        return self.reply(self.send(method, argument))

    def send(self, method: str, argument: Message) -> int:
        """Send a request without waiting; returns its stream id for ``reply``."""
        stream_id, frame = self.client.request(TASK_SERVICE, method, argument)
        self.sock.sendall(frame)
        return stream_id

    def reply(self, stream_id: int) -> ttrpc.Reply:
        """The reply to ``stream_id`` (others arriving meanwhile are kept)."""
        while stream_id not in self.replies:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"shim closed the connection before answering {stream_id}")
            for frame in self.decoder.feed(data):
                reply = self.client.receive(frame)
                if reply is not None:
                    self.replies[reply.stream_id] = reply
        return self.replies.pop(stream_id)

    def raw_frames(self) -> list[ttrpc.Frame]:
        """Frames received until one arrives (for raw requests)."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("shim closed the connection")
            frames = self.decoder.feed(data)
            if frames:
                return frames

    def closed_by_peer(self) -> bool:
        """Read until the shim closes (True) or the socket timeout expires (False).

        Anything the shim sends before closing (an error reply, say) is read and ignored.
        """
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:  # ECONNRESET: closed with unread data
            return True
        except TimeoutError:
            return False
        return True
