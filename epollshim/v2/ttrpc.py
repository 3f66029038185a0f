"""Sans-IO ttrpc (v1.1, as containerd 1.6 speaks it): framing, server replies, event client.

Rules of this module (shared spec containerd-shim-v2.md section 3):
- Pure: bytes in, frames and bytes out. No sockets, no clock; the caller owns the fds.
- A frame is a 10-byte header (u32be payload length, u32be stream id, u8 type, u8 flags)
  and at most 4 MiB of payload. ``FrameDecoder`` keeps a partial frame pending (never an
  error). A header announcing more than 4 MiB, or a type other than request (1), response
  (2) or data (3), raises ``ProtocolError``: the stream cannot be resynchronised, so the
  caller logs the message and closes the connection. Flags are reserved and passed through.
- Server side: clients pick odd stream ids; a request on an even id, or whose ``Request``
  does not parse, is answered INVALID_ARGUMENT on the same id and the connection stays up
  (``RequestError`` carries the answer). Unknown service or method: UNIMPLEMENTED with
  ttrpc's own texts ``service <name>`` / ``method <name>``; containerd maps that to "not
  implemented". Responses may go out in any order; success omits ``status`` and an empty
  payload; a reply that would exceed 4 MiB becomes a RESOURCE_EXHAUSTED error instead.
- Client side (the event publisher): ids are odd, from 1, +2 per call, per connection;
  replies are matched by stream id, and replies to unknown ids (late ones) are dropped.
"""

from __future__ import annotations

from epollshim.core.record import Record
from epollshim.v2.messages import CODE_NAMES, Code, KeyValue, Request, Response, Status
from epollshim.v2.pb import DecodeError, M, Message
from epollshim.v2.varint import encode_varint

HEADER_SIZE = 10
MAX_PAYLOAD = 4 << 20  # 4194304, ttrpc's messageLengthMax
REQUEST, RESPONSE, DATA = 1, 2, 3
_MAX_STREAM = (1 << 32) - 1
_RESPONSE_PAYLOAD = Response.FIELDS[1].tag  # field 2, bytes


class ProtocolError(Exception):
    """The peer broke the framing; the connection must be closed.

    ``stream_id`` is the stream of the offending frame when its header was readable.
    """

    def __init__(self, message: str, stream_id: int | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class RequestError(Exception):
    """A request to answer with an error status; the connection stays usable."""

    def __init__(self, code: int, message: str) -> None:
        name = CODE_NAMES.get(code, f"code {code}")
        super().__init__(f"{name}: {message}")
        self.code, self.message = code, message


class Frame(Record):
    """One frame as read off the wire (a slotted record: no ``typing`` import at run time)."""

    __slots__ = __match_args__ = ("stream_id", "type", "flags", "payload")
    stream_id: int
    type: int
    flags: int
    payload: bytes

    def __init__(self, stream_id: int, type: int, flags: int, payload: bytes) -> None:
        self._set(stream_id=stream_id, type=type, flags=flags, payload=payload)


def encode_frame(stream_id: int, type: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """Header and payload of one frame (ValueError for values no frame can carry)."""
    if not 0 <= stream_id <= _MAX_STREAM or not 0 <= type <= 255 or not 0 <= flags <= 255:
        raise ValueError(f"bad frame header: stream {stream_id}, type {type}, flags {flags}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    header = len(payload).to_bytes(4, "big") + stream_id.to_bytes(4, "big")
    return header + bytes((type, flags)) + payload


class FrameDecoder:
    """Cuts a byte stream into frames: ``feed(data)`` returns the frames completed so far."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload
        self._failed: ProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes held back as an incomplete frame (a reader at EOF may want to report it)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while len(buf) - pos >= HEADER_SIZE:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            stream_id = int.from_bytes(buf[pos + 4 : pos + 8], "big")
            ftype, flags = buf[pos + 8], buf[pos + 9]
            self._check_header(length, stream_id, ftype)
            end = pos + HEADER_SIZE + length
            if len(buf) < end:
                break
            frames.append(Frame(stream_id, ftype, flags, bytes(buf[pos + HEADER_SIZE : end])))
            pos = end
        del buf[:pos]
        return frames

    def _check_header(self, length: int, stream_id: int, ftype: int) -> None:
        if length > self._max:
            message = (
                f"frame on stream {stream_id} announces {length} bytes,"
                f" more than the maximum message size of {self._max}"
            )
        elif ftype not in (REQUEST, RESPONSE, DATA):
            message = f"frame on stream {stream_id} has unknown type {ftype}"
        else:
            return
        self._failed = ProtocolError(message, stream_id)
        self._buf.clear()
        raise self._failed


# ---------------------------------------------------------------------------- server side


def decode_request(frame: Frame) -> Request:
    """The ``Request`` in a type-1 frame; RequestError tells what to answer instead."""
    if frame.stream_id % 2 == 0:
        raise RequestError(
            Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams"
        )
    try:
        return Request.decode(frame.payload)
    except DecodeError as e:
        raise RequestError(Code.INVALID_ARGUMENT, f"ttrpc: cannot parse request: {e}") from None


def decode_payload(request: Request, cls: type[M]) -> M:
    """The method's argument; an undecodable one is answered INTERNAL, as ttrpc does."""
    try:
        return cls.decode(request.payload)
    except DecodeError as e:
        raise RequestError(Code.INTERNAL, f"ttrpc: error unmarshalling payload: {e}") from None


def unknown_service(service: str) -> RequestError:
    return RequestError(Code.UNIMPLEMENTED, f"service {service}")


def unknown_method(method: str) -> RequestError:
    return RequestError(Code.UNIMPLEMENTED, f"method {method}")


def error_frame(stream_id: int, code: int, message: str) -> bytes:
    """A response frame carrying ``status{code, message}`` and no payload."""
    response = Response(status=Status(code=code, message=message))
    return encode_frame(stream_id, RESPONSE, response.encode())


def response_frame(stream_id: int, result: Message | bytes | None = None) -> bytes:
    """A successful response frame (no status; ``None`` or Empty give a 0-byte payload).
    ``result`` may be a message encoded already (bytes): ``TaskService.state``'s memo."""
    if result is None:
        payload = b""
    elif isinstance(result, bytes):
        payload = result
    else:
        payload = result.encode()
    # Response(payload=payload).encode(), written out: every call's answer goes through here
    encoded = _RESPONSE_PAYLOAD + encode_varint(len(payload)) + payload if payload else b""
    if len(encoded) > MAX_PAYLOAD:
        return error_frame(
            stream_id,
            Code.RESOURCE_EXHAUSTED,
            f"message length {len(encoded)} exceed maximum message size of {MAX_PAYLOAD}",
        )
    return encode_frame(stream_id, RESPONSE, encoded)


# ---------------------------------------------------------------------------- client side


class Reply(Record):
    """A response matched to the call that asked for it."""

    __slots__ = __match_args__ = ("stream_id", "method", "code", "message", "payload")
    stream_id: int
    method: str
    code: int
    message: str
    payload: bytes

    def __init__(
        self, stream_id: int, method: str, code: int, message: str, payload: bytes
    ) -> None:
        self._set(stream_id=stream_id, method=method, code=code, message=message, payload=payload)

    @property
    def ok(self) -> bool:
        return self.code == Code.OK

    def result(self, cls: type[M]) -> M:
        """The decoded payload; RequestError(code, message) if the call failed."""
        if not self.ok:
            raise RequestError(self.code, self.message)
        try:
            return cls.decode(self.payload)
        except DecodeError as e:
            raise ProtocolError(f"bad {self.method} reply: {e}", self.stream_id) from None


class Client:
    """The calling half of one connection: builds request frames, matches replies."""

    def __init__(self) -> None:
        self._next_id = 1
        self._calls: dict[int, str] = {}  # stream id -> "service/method"

    @property
    def outstanding(self) -> int:
        return len(self._calls)

    def request(
        self,
        service: str,
        method: str,
        argument: Message,
        *,
        timeout_ns: int = 0,
        metadata: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(stream id, frame bytes) for a new call; send the bytes, then ``receive`` frames."""
        stream_id = self._next_id
        if stream_id > _MAX_STREAM:
            raise ProtocolError("stream ids exhausted on this connection; reconnect")
        request = Request(
            service=service,
            method=method,
            payload=argument.encode(),
            timeout_nano=timeout_ns,
            metadata=[KeyValue(k, v) for k, v in (metadata or {}).items()],
        )
        frame = encode_frame(stream_id, REQUEST, request.encode())
        self._next_id += 2
        self._calls[stream_id] = f"{service}/{method}"
        return stream_id, frame

    def forget(self, stream_id: int) -> None:
        """Stop waiting for a call (given up on); a late reply will be dropped."""
        self._calls.pop(stream_id, None)

    def receive(self, frame: Frame) -> Reply | None:
        """The Reply a response frame completes, or None for a late/unknown stream id."""
        if frame.type != RESPONSE:
            raise ProtocolError(f"client got a frame of type {frame.type}", frame.stream_id)
        method = self._calls.pop(frame.stream_id, None)
        if method is None:
            return None
        try:
            response = Response.decode(frame.payload)
        except DecodeError as e:
            raise ProtocolError(f"bad response to {method}: {e}", frame.stream_id) from None
        status = response.status or Status()
        return Reply(frame.stream_id, method, status.code, status.message, response.payload)
