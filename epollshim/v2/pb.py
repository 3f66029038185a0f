"""A small proto3 codec over a declarative schema (no google.protobuf at run time).

Rules of this module:
- Pure: no IO, no clock. ``google.protobuf`` is never imported (it costs 3.3 MB per
  process, DESIGN.md section 6); the tests use it as an oracle only.
- A message is a ``Message`` subclass decorated with ``@message`` (slotted by ``Message``'s
  metaclass as its class statement runs, and a dataclass to the type checker), with a
  ``TYPE_NAME`` (full proto name, used for ``Any`` type URLs) and a ``FIELDS`` tuple of
  ``Field`` in ascending number order. The annotated attributes are the FIELDS names in
  the same order, each defaulting to the proto3 zero value:
  ``0``/``False``/``""``/``b""``, ``None`` for a message field, ``field(factory=list)``
  for ``repeated``, ``field(factory=dict)`` for a map. ``__init__``, equality and repr are
  generic (driven by FIELDS), not generated per class.
- Encoding is proto3: zero scalars, empty lists/maps and ``None`` messages are omitted; a
  message field holding an instance is always written (presence), even if empty. Fields go
  out in ``FIELDS`` order; repeated numeric scalars are packed; map entries always carry key
  and value (as protobuf and Go do); negative int32/int64 are 10-byte two's complement
  varints. A value out of range for its kind is our bug: ``EncodeError``.
- Decoding skips unknown fields, accepts packed and unpacked repeated scalars, lets the last
  scalar win and merges repeated occurrences of a message field. Malformed input of any kind
  raises ``DecodeError`` naming the field path, never IndexError or UnicodeError. Strings
  decode with ``surrogateescape`` (as ``os.fsdecode``): the Go side (gogo) does not check
  UTF-8, so a non-UTF-8 path still round-trips to the file system.
- Every ttrpc call decodes two messages and encodes two, so the common shapes have short
  paths (``Field.fast``): a singular ASCII string under 128 bytes, a positive int32 value,
  a singular message; on decode, a one-byte tag and a one-byte length or value. They give
  exactly what the general path gives (the Hypothesis oracle tests draw values on both
  sides of each limit); anything else, errors included, takes the general path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from epollshim.v2.varint import MASK64, encode_varint

# typing costs ~0.7 MB per shim at run time; mypy treats any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any as _Any
    from typing import ClassVar, TypeVar, dataclass_transform
else:

    def dataclass_transform(**kwargs: object) -> object:
        return lambda cls: cls

    def TypeVar(name: str, bound: object = None) -> object:
        return name


# Field kinds (proto scalar type names, plus MESSAGE).
INT32, INT64, UINT32, UINT64 = "int32", "int64", "uint32", "uint64"
SINT32, SINT64, BOOL, ENUM = "sint32", "sint64", "bool", "enum"
FIXED32, FIXED64, SFIXED32, SFIXED64 = "fixed32", "fixed64", "sfixed32", "sfixed64"
STRING, BYTES, MESSAGE = "string", "bytes", "message"

# Wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5

_MASK32 = (1 << 32) - 1
_MASK64 = MASK64
_MAX_FIELD = (1 << 29) - 1

_WIRE: dict[str, int] = {
    **dict.fromkeys((INT32, INT64, UINT32, UINT64, SINT32, SINT64, BOOL, ENUM), VARINT),
    **dict.fromkeys((FIXED64, SFIXED64), I64),
    **dict.fromkeys((FIXED32, SFIXED32), I32),
    **dict.fromkeys((STRING, BYTES, MESSAGE), LEN),
}

_S32, _S64 = (-(1 << 31), (1 << 31) - 1), (-(1 << 63), (1 << 63) - 1)
_RANGE: dict[str, tuple[int, int]] = {
    **dict.fromkeys((INT32, ENUM, SINT32, SFIXED32), _S32),
    **dict.fromkeys((INT64, SINT64, SFIXED64), _S64),
    **dict.fromkeys((UINT32, FIXED32), (0, _MASK32)),
    **dict.fromkeys((UINT64, FIXED64), (0, _MASK64)),
}


_ZERO: dict[str, _Any] = {STRING: "", BYTES: b"", BOOL: False}

# Short paths (Field.fast, see the module rules): singular strings, bytes, messages and
# the integer kinds written as plain varints.
_FAST_STRING, _FAST_VARINT, _FAST_BYTES, _FAST_MESSAGE = 1, 2, 3, 4
_FAST: dict[str, int] = {
    STRING: _FAST_STRING,
    BYTES: _FAST_BYTES,
    MESSAGE: _FAST_MESSAGE,
    **dict.fromkeys((INT32, INT64, UINT32, UINT64, ENUM), _FAST_VARINT),
}


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


class EncodeError(ValueError):
    """A message holds a value its schema cannot encode (a bug on our side)."""


class SchemaError(TypeError):
    """A message class's FIELDS do not match its attributes."""


class Field:
    """One field of a message schema.

    ``kind`` is a scalar kind or MESSAGE (then ``msg`` is the message class). ``key`` makes
    the field a map: ``Field(3, "annotations", STRING, key=STRING)`` is map<string,string>,
    held as a dict.
    """

    __slots__ = (
        "fast",
        "key",
        "kind",
        "msg",
        "name",
        "number",
        "packed",
        "repeated",
        "tag",
        "wire",
        "zero",
    )

    def __init__(
        self,
        number: int,
        name: str,
        kind: str,
        msg: type[Message] | None = None,
        *,
        repeated: bool = False,
        key: str | None = None,
    ) -> None:
        if kind not in _WIRE:
            raise SchemaError(f"field {name}: unknown kind {kind!r}")
        if (kind == MESSAGE) != (msg is not None):
            raise SchemaError(f"field {name}: a message class goes with kind MESSAGE only")
        if not 1 <= number <= _MAX_FIELD or 19000 <= number <= 19999:
            raise SchemaError(f"field {name}: invalid field number {number}")
        self.number, self.name, self.kind, self.msg = number, name, kind, msg
        self.repeated, self.key = repeated or key is not None, key
        # proto3 packs repeated numeric scalars; maps are repeated entry messages.
        self.packed = repeated and key is None and _WIRE[kind] != LEN
        self.wire = LEN if key is not None or self.packed else _WIRE[kind]
        self.tag = encode_varint(number << 3 | self.wire)
        # The default when it is immutable (scalars, None for a message); lists and dicts
        # are made fresh by default().
        self.zero = None if msg is not None or self.repeated else zero_value(kind)
        # A singular string, bytes, integer or message field (the bulk of every call)
        # takes the short paths of encode and _decode_into; anything else, or a value a
        # short path does not cover, takes the general one, which gives the same bytes.
        self.fast = _FAST.get(kind, 0) if not self.repeated else 0

    def default(self) -> _Any:
        """A fresh proto3 default for this field."""
        if self.key is not None:
            return {}
        if self.repeated:
            return []
        return self.zero

    def __repr__(self) -> str:
        return f"Field({self.number}, {self.name!r}, {self.kind!r})"


def field(*, factory: Callable[[], _Any]) -> _Any:
    """Marks a repeated (``factory=list``) or map (``factory=dict``) attribute for the type
    checker; at run time every default comes from the field's kind."""
    return factory


class _Slotted(type):
    """Makes each subclass of ``Message`` with ``__slots__`` for its annotated attributes,
    as its class statement runs: one class per message (remaking it in ``@message`` made
    each twice, and the discarded one was garbage for the collector)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, _Any]) -> type:
        if bases:  # not Message itself
            # the annotations (the type checker's only) and the defaults (slots replace them)
            names = tuple(ns.pop("__annotations__", {}))
            ns = {k: v for k, v in ns.items() if k not in names}
            ns["__slots__"] = names
        return super().__new__(mcls, name, bases, ns)


class Message(metaclass=_Slotted):
    """Base of every message class; see the module docstring for how to declare one."""

    __slots__ = ()
    TYPE_NAME: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    def __init__(self, *args: _Any, **kwargs: _Any) -> None:
        """Positional arguments in FIELDS order, then keywords; the rest get defaults."""
        fields = self.FIELDS
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} arguments")
        for f, value in zip(fields, args, strict=False):  # args may be fewer
            setattr(self, f.name, value)
        for f in fields[len(args) :] if args else fields:
            name = f.name
            if name in kwargs:
                setattr(self, name, kwargs.pop(name))
            else:
                setattr(self, name, f.zero if not f.repeated else f.default())
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(kwargs)}")

    def encode(self) -> bytes:
        return encode(self)

    @classmethod
    def decode(cls: type[M], data: bytes | bytearray | memoryview) -> M:
        return decode(cls, data)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Only the fields that differ from their default, to keep log lines short."""
        shown = []
        for f in self.FIELDS:
            value = getattr(self, f.name)
            is_set = value is not None if f.msg is not None and not f.repeated else bool(value)
            if is_set:
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


M = TypeVar("M", bound=Message)


@dataclass_transform(field_specifiers=(field,))
def message(cls: type[M]) -> type[M]:
    """Class decorator: check ``cls``'s slots (made by ``Message``'s metaclass from its
    annotated attributes) against FIELDS. The type checker sees a dataclass (typed
    ``__init__``); at run time ``Message.__init__`` serves every class, because generating
    code per class the way dataclasses do costs ~0.3 ms and ~10 KiB for each of ~50 classes
    in every shim.
    """
    _schema(cls)
    return cls


# ---------------------------------------------------------------------------- schema


class _Schema:
    __slots__ = ("fields",)

    def __init__(self, cls: type[Message]) -> None:
        self.fields = cls.FIELDS
        numbers = [f.number for f in self.fields]
        if numbers != sorted(set(numbers)):
            raise SchemaError(f"{cls.__name__}: field numbers must be unique and ascending")
        names = [f.name for f in self.fields]
        if tuple(names) != cls.__dict__.get("__slots__"):
            raise SchemaError(f"{cls.__name__}: FIELDS {names} != attributes (in this order)")


class _Decoding:
    """What decoding a class needs, made at its first decode: a shim decodes few of the
    classes it declares, and these tables would cost ~30 KB for all of them."""

    __slots__ = ("blank", "by_number", "fresh", "quick")

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.by_number = {f.number: f for f in fields}
        # what a decoded message starts from: immutable defaults, and fresh lists and dicts
        self.blank = tuple((f.name, f.zero) for f in fields if not f.repeated)
        self.fresh = tuple((f.name, f.default) for f in fields if f.repeated)
        # the short path: a one-byte tag (its wire type included) -> (name, fast kind)
        self.quick = {
            f.number << 3 | f.wire: (f.name, f.fast)
            for f in fields
            if f.number < 16 and f.fast in (_FAST_STRING, _FAST_BYTES, _FAST_VARINT)
        }


_SCHEMAS: dict[type[Message], _Schema] = {}


def schema(cls: type[Message]) -> tuple[Field, ...]:
    """The checked FIELDS of ``cls``."""
    return _schema(cls).fields


def _schema(cls: type[Message]) -> _Schema:
    found = _SCHEMAS.get(cls)
    if found is None:
        found = _SCHEMAS[cls] = _Schema(cls)
    return found


_DECODINGS: dict[type[Message], _Decoding] = {}


def _decoding(cls: type[Message]) -> _Decoding:
    found = _DECODINGS.get(cls)
    if found is None:
        found = _DECODINGS[cls] = _Decoding(_schema(cls).fields)
    return found


# ---------------------------------------------------------------------------- encoding


def _int_bytes(kind: str, value: object) -> bytes:
    if not isinstance(value, int):
        raise EncodeError(f"{kind} needs an int, not {type(value).__name__}")
    if kind == BOOL:
        return b"\x01" if value else b"\x00"
    lo, hi = _RANGE[kind]
    if not lo <= value <= hi:
        raise EncodeError(f"{value} is out of range for {kind}")
    wire = _WIRE[kind]
    if kind in (SINT32, SINT64):  # zigzag
        return encode_varint(value << 1 if value >= 0 else (-value << 1) - 1)
    if wire == VARINT:
        return encode_varint(value)
    size = 8 if wire == I64 else 4
    return (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def _scalar_bytes(kind: str, value: object) -> bytes:
    """One scalar without its tag (LEN kinds carry their length prefix)."""
    if kind == STRING:
        if not isinstance(value, str):
            raise EncodeError(f"string needs a str, not {type(value).__name__}")
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise EncodeError(f"string cannot be encoded: {e.reason}") from None
        return encode_varint(len(data)) + data
    if kind == BYTES:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise EncodeError(f"bytes needs bytes, not {type(value).__name__}")
        return encode_varint(len(value)) + bytes(value)
    return _int_bytes(kind, value)


def _value_bytes(f: Field, value: _Any) -> bytes:
    if f.msg is None:
        return _scalar_bytes(f.kind, value)
    if not isinstance(value, f.msg):
        raise EncodeError(f"needs a {f.msg.__name__}, not {type(value).__name__}")
    data = encode(value)
    return encode_varint(len(data)) + data


def _field_parts(f: Field, value: _Any, out: list[bytes]) -> None:
    if f.key is not None:
        vtag = bytes([16 | _WIRE[f.kind]])
        for k, v in value.items():
            entry = bytes([8 | _WIRE[f.key]]) + _scalar_bytes(f.key, k) + vtag + _value_bytes(f, v)
            out += (f.tag, encode_varint(len(entry)), entry)
    elif f.packed:
        data = b"".join([_scalar_bytes(f.kind, v) for v in value])
        out += (f.tag, encode_varint(len(data)), data)
    elif f.repeated:
        for v in value:
            out += (f.tag, _value_bytes(f, v))
    else:
        out += (f.tag, _value_bytes(f, value))


def encode(msg: Message) -> bytes:
    """The proto3 encoding of ``msg`` (see the module rules)."""
    out: list[bytes] = []
    for f in _schema(type(msg)).fields:
        value = getattr(msg, f.name)
        fast = f.fast
        if fast:  # short paths: a short ASCII string, a positive int32 (zero: omitted)
            if not value and value is f.zero:
                continue
            if fast == _FAST_STRING:
                if type(value) is str and value.isascii() and len(value) < 128:
                    out += (f.tag, bytes((len(value),)), value.encode("ascii"))
                    continue
            elif fast == _FAST_VARINT and type(value) is int and 0 < value <= _S32[1]:
                # a positive int32 is in range for every kind of _FAST_VARINT
                out += (f.tag, bytes((value,)) if value < 128 else encode_varint(value))
                continue
        absent = value is None if f.msg is not None and not f.repeated else not value
        if absent:
            continue
        try:
            if fast == _FAST_MESSAGE and type(value) is f.msg:
                data = encode(value)
                out += (f.tag, encode_varint(len(data)), data)
            else:
                _field_parts(f, value, out)
        except EncodeError as e:
            raise EncodeError(f"{type(msg).__name__}.{f.name}: {e}") from None
        except (TypeError, AttributeError) as e:
            raise EncodeError(f"{type(msg).__name__}.{f.name}: bad value: {e}") from None
    return b"".join(out)


# ---------------------------------------------------------------------------- decoding


def decode_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos``; at most 10 bytes, kept to 64 bits."""
    result = shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def zero_value(kind: str) -> _Any:
    """The proto3 default of a scalar kind."""
    return _ZERO.get(kind, 0)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


_FROM_VARINT: dict[str, Callable[[int], _Any]] = {
    INT32: lambda v: _signed(v, 32),
    ENUM: lambda v: _signed(v, 32),
    INT64: lambda v: _signed(v, 64),
    UINT32: lambda v: v & _MASK32,
    UINT64: lambda v: v,
    BOOL: bool,
    SINT32: lambda v: _signed((v >> 1) ^ -(v & 1), 32),
    SINT64: lambda v: _signed((v >> 1) ^ -(v & 1), 64),
}


def _take(data: bytes, pos: int, end: int, size: int) -> int:
    """The end of ``size`` bytes starting at ``pos``, or DecodeError if they are not there."""
    stop = pos + size
    if stop > end:
        raise DecodeError(f"truncated: {size} bytes announced, {end - pos} left")
    return stop


def _read_scalar(kind: str, data: bytes, pos: int, end: int) -> tuple[_Any, int]:
    wire = _WIRE[kind]
    if wire == VARINT:
        v, pos = decode_varint(data, pos, end)
        return _FROM_VARINT[kind](v), pos
    if wire in (I64, I32):
        stop = _take(data, pos, end, 8 if wire == I64 else 4)
        v = int.from_bytes(data[pos:stop], "little", signed=kind in (SFIXED32, SFIXED64))
        return v, stop
    size, pos = decode_varint(data, pos, end)
    stop = _take(data, pos, end, size)
    if kind == BYTES:
        return data[pos:stop], stop
    return data[pos:stop].decode("utf-8", "surrogateescape"), stop


def _skip(data: bytes, pos: int, end: int, wire: int) -> int:
    if wire == VARINT:
        return decode_varint(data, pos, end)[1]
    if wire == I64:
        return _take(data, pos, end, 8)
    if wire == I32:
        return _take(data, pos, end, 4)
    if wire == LEN:
        size, pos = decode_varint(data, pos, end)
        return _take(data, pos, end, size)
    raise DecodeError(f"unsupported wire type {wire}")


def _read_value(f: Field, data: bytes, pos: int, end: int) -> tuple[_Any, int]:
    if f.msg is None:
        return _read_scalar(f.kind, data, pos, end)
    size, pos = decode_varint(data, pos, end)
    stop = _take(data, pos, end, size)
    return _decode_into(_blank(f.msg), data, pos, stop), stop


def _read_entry(f: Field, data: bytes, pos: int, end: int) -> tuple[_Any, _Any]:
    assert f.key is not None
    key: _Any = zero_value(f.key)
    value: _Any = _blank(f.msg) if f.msg is not None else zero_value(f.kind)
    while pos < end:
        tag, pos = decode_varint(data, pos, end)
        if tag == 8 | _WIRE[f.key]:
            key, pos = _read_scalar(f.key, data, pos, end)
        elif tag == 16 | _WIRE[f.kind]:
            value, pos = _read_value(f, data, pos, end)
        else:
            pos = _skip(data, pos, end, tag & 7)
    return key, value


def _read_field(msg: Message, f: Field, wire: int, data: bytes, pos: int, end: int) -> int:
    if f.key is not None and wire == LEN:
        size, pos = decode_varint(data, pos, end)
        stop = _take(data, pos, end, size)
        key, value = _read_entry(f, data, pos, stop)
        getattr(msg, f.name)[key] = value
        return stop
    if f.packed and wire == LEN:
        size, pos = decode_varint(data, pos, end)
        stop = _take(data, pos, end, size)
        items = getattr(msg, f.name)
        while pos < stop:
            value, pos = _read_scalar(f.kind, data, pos, stop)
            items.append(value)
        return stop
    if wire != _WIRE[f.kind] or f.key is not None:
        raise DecodeError(f"wire type {wire} does not fit {f.kind}")
    if f.repeated:
        value, pos = _read_value(f, data, pos, end)
        getattr(msg, f.name).append(value)
        return pos
    old = getattr(msg, f.name) if f.msg is not None else None
    if old is not None:  # a message field seen again: merge into it
        size, pos = decode_varint(data, pos, end)
        stop = _take(data, pos, end, size)
        _decode_into(old, data, pos, stop)
        return stop
    value, pos = _read_value(f, data, pos, end)
    setattr(msg, f.name, value)
    return pos


def _blank(cls: type[M]) -> M:
    """A message of defaults, as ``cls()`` makes it, without ``__init__``'s generality."""
    decoding = _DECODINGS.get(cls) or _decoding(cls)
    msg = object.__new__(cls)
    for name, zero in decoding.blank:
        setattr(msg, name, zero)
    for name, default in decoding.fresh:
        setattr(msg, name, default())
    return msg


def _decode_into(msg: M, data: bytes, pos: int, end: int) -> M:
    decoding = _DECODINGS.get(type(msg)) or _decoding(type(msg))
    by_number, quick = decoding.by_number, decoding.quick
    while pos < end:
        tag = data[pos]
        short = quick.get(tag)  # a one-byte tag of a fast field, with its wire type
        # then a one-byte length, or the value itself (0..127: the same in any kind)
        if short is not None and pos + 1 < end and (b := data[pos + 1]) < 0x80:
            name, fast = short
            if fast == _FAST_VARINT:
                pos += 2
                setattr(msg, name, b)
                continue
            stop = pos + 2 + b
            if stop <= end:
                value = data[pos + 2 : stop]
                pos = stop
                if fast == _FAST_STRING:
                    setattr(msg, name, value.decode("utf-8", "surrogateescape"))
                else:
                    setattr(msg, name, value)
                continue
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = decode_varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if not 1 <= number <= _MAX_FIELD:
            raise DecodeError(f"{type(msg).__name__}: invalid field number {number}")
        f = by_number.get(number)
        try:
            pos = (
                _skip(data, pos, end, wire)
                if f is None
                else _read_field(msg, f, wire, data, pos, end)
            )
        except DecodeError as e:
            where = f.name if f else f"#{number}"
            raise DecodeError(f"{type(msg).__name__}.{where}: {e}") from None
    return msg


def decode(cls: type[M], data: bytes | bytearray | memoryview) -> M:
    """Decode ``data`` as a ``cls``; DecodeError if it is malformed."""
    raw = bytes(data)
    return _decode_into(_blank(cls), raw, 0, len(raw))


# ---------------------------------------------------------------------------- well-known types


@message
class Empty(Message):
    TYPE_NAME = "google.protobuf.Empty"


@message
class Any(Message):
    TYPE_NAME = "google.protobuf.Any"
    FIELDS = (Field(1, "type_url", STRING), Field(2, "value", BYTES))
    type_url: str = ""
    value: bytes = b""

    @property
    def type_name(self) -> str:
        """The message name in the URL: ``types.googleapis.com/a.B`` and ``a.B`` give ``a.B``."""
        return self.type_url.rpartition("/")[2]

    def unpack(self, cls: type[M]) -> M:
        """Decode ``value`` as ``cls``; DecodeError if the URL names another type."""
        if self.type_name != cls.TYPE_NAME:
            raise DecodeError(f"Any holds {self.type_url!r}, not {cls.TYPE_NAME}")
        return decode(cls, self.value)


@message
class Timestamp(Message):
    TYPE_NAME = "google.protobuf.Timestamp"
    FIELDS = (Field(1, "seconds", INT64), Field(2, "nanos", INT32))
    seconds: int = 0
    nanos: int = 0

    @classmethod
    def from_ns(cls, ns: int) -> Timestamp:
        """From nanoseconds since the epoch (``time.time_ns()``), exactly."""
        seconds, nanos = divmod(ns, 1_000_000_000)
        return cls(seconds, nanos)

    @classmethod
    def from_float(cls, t: float) -> Timestamp:
        """From seconds since the epoch (``time.time()``), to the nearest nanosecond."""
        return cls.from_ns(round(t * 1_000_000_000))

    def to_float(self) -> float:
        return self.seconds + self.nanos / 1e9


def pack_any(msg: Message, prefix: str = "") -> Any:
    """Wrap ``msg`` in an Any whose URL is ``prefix + TYPE_NAME`` (containerd uses no prefix)."""
    return Any(prefix + type(msg).TYPE_NAME, encode(msg))


def unpack_any(value: Any, types: Mapping[str, type[Message]]) -> Message:
    """Decode an Any by looking its type name up in ``types`` (full name -> class)."""
    cls = types.get(value.type_name)
    if cls is None:
        raise DecodeError(f"Any holds unknown type {value.type_url!r}")
    return decode(cls, value.value)
