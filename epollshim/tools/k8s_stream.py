"""A small client for Kubernetes' exec/attach streaming protocol over WebSocket (tests only).

containerd's CRI plugin answers Exec and Attach with a URL on its streaming server (the
kubelet's streaming library); kubectl then talks SPDY or WebSocket to it. We speak the
WebSocket form, which is one page:

* RFC 6455: an HTTP/1.1 ``GET`` with ``Upgrade: websocket`` and a random key, answered by
  ``101`` with ``Sec-WebSocket-Accept`` = base64(SHA-1(key + the RFC's GUID)); frames are
  ``FIN|opcode``, a length (7 bits, or 126 + 16 bits, or 127 + 64 bits) and, from the client
  only, a 4-byte mask XORed over the payload. Opcodes: 0 continuation, 1 text, 2 binary,
  8 close, 9 ping, 10 pong.
* Subprotocol ``v4.channel.k8s.io``: each binary message is one byte of channel (0 stdin,
  1 stdout, 2 stderr, 3 error, 4 resize) and the data. The server first sends an empty
  message on the lowest output channel it serves, to say the streams are ready; when an exec
  ends it sends a JSON ``Status`` on channel 3 (``{"status": "Success"}``, or ``Failure`` with
  the exit code in ``details.causes``) and closes the connection. This protocol version has no
  way to close stdin alone: commands read what they need and exit.

Waits are socket timeouts (bounded), never sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class StreamError(Exception):
    """The streaming server refused us or broke the protocol."""


class StreamSession:
    """One exec or attach session; a context manager that closes the connection."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise StreamError(f"not an http://host:port/ URL: {url!r}")
        self.url = url
        self.protocol = ""
        self.closed = False
        self._buf = b""
        self._sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        try:
            self._handshake(parts.netloc, parts.path + (f"?{parts.query}" if parts.query else ""))
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handshake(self, host: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if status.split()[1:2] != ["101"]:
            raise StreamError(f"{self.url}: {status}")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise StreamError(f"{self.url}: bad Sec-WebSocket-Accept")
        self.protocol = headers.get("sec-websocket-protocol", "")
        if self.protocol != PROTOCOL:
            raise StreamError(f"{self.url}: server chose protocol {self.protocol!r}")

    # -- frames -------------------------------------------------------------------------------

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise StreamError(f"{self.url}: connection closed by the server")
        self._buf += data

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(head + mask + masked)

    def _recv_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        mask = self._take(4) if b1 & 0x80 else b""
        payload = self._take(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    # -- messages -------------------------------------------------------------------------------

    def wait_ready(self) -> int:
        """Read the server's first message, the empty one on the lowest output channel that
        says the streams are wired (send stdin after it); returns that channel."""
        got = self.recv()
        if got is None or got[1] or got[0] not in (STDOUT, STDERR, ERROR):
            raise StreamError(f"{self.url}: expected the empty ready message, got {got!r}")
        return got[0]

    def send(self, channel: int, data: bytes) -> None:
        """One message on ``channel`` (``STDIN``, ``RESIZE``)."""
        self._send_frame(OP_BINARY, bytes([channel]) + data)

    def recv(self) -> tuple[int, bytes] | None:
        """The next (channel, data) message, or None once the server closed the session."""
        if self.closed:
            return None
        message = b""
        while True:
            fin, opcode, payload = self._recv_frame()
            if opcode == OP_PING:
                self._send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                self.closed = True
                self._send_frame(OP_CLOSE, payload[:2])
                return None
            message += payload
            if fin:
                break
        if not message:
            raise StreamError(f"{self.url}: a message without a channel byte")
        return message[0], message[1:]

    def read_until(self, channel: int, wanted: bytes) -> tuple[dict[int, bytes], Any]:
        """Read until ``channel`` has carried ``wanted`` or the session ends: (bytes per
        channel, the decoded error-channel status or None)."""
        return self._read(lambda seen: wanted in seen.get(channel, b""))

    def read_to_end(self) -> tuple[dict[int, bytes], Any]:
        """Everything until the server closes the session (an exec that ended)."""
        return self._read(lambda seen: False)

    def _read(self, done: Callable[[dict[int, bytes]], bool]) -> tuple[dict[int, bytes], Any]:
        seen: dict[int, bytes] = {}
        status = None
        while not done(seen):
            got = self.recv()
            if got is None:
                break
            ch, data = got
            seen[ch] = seen.get(ch, b"") + data
            if ch == ERROR and data:
                status = json.loads(data)
        return seen, status

    def close(self) -> None:
        if not self.closed:
            try:
                self._send_frame(OP_CLOSE, struct.pack("!H", 1000))
            except OSError:  # EPIPE/ECONNRESET: the server is already gone
                pass
            self.closed = True
        self._sock.close()
