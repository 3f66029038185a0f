"""Unit tests of the codec in ``epollshim.v2.pb`` (the protobuf oracle is in
test_messages_oracle.py). Pure: no processes, no files."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epollshim.v2 import messages as m
from epollshim.v2 import messages_more as more
from epollshim.v2 import pb
from epollshim.v2.pb import DecodeError, EncodeError, Field, Message, SchemaError, field, message


@message
class Inner(Message):
    TYPE_NAME = "test.Inner"
    FIELDS = (Field(1, "n", pb.INT32), Field(2, "tags", pb.STRING, repeated=True))
    n: int = 0
    tags: list[str] = field(factory=list)


@message
class Outer(Message):
    TYPE_NAME = "test.Outer"
    FIELDS = (
        Field(1, "name", pb.STRING),
        Field(2, "inner", pb.MESSAGE, Inner),
        Field(3, "many", pb.MESSAGE, Inner, repeated=True),
        Field(4, "nums", pb.UINT32, repeated=True),
        Field(5, "labels", pb.STRING, key=pb.STRING),
        Field(6, "blob", pb.BYTES),
    )
    name: str = ""
    inner: Inner | None = None
    many: list[Inner] = field(factory=list)
    nums: list[int] = field(factory=list)
    labels: dict[str, str] = field(factory=dict)
    blob: bytes = b""


# ------------------------------------------------------------------ varints


@pytest.mark.parametrize(
    ("value", "hexed"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (2**32 - 1, "ff ff ff ff 0f"),
        (2**64 - 1, "ff ff ff ff ff ff ff ff ff 01"),
        (-1, "ff ff ff ff ff ff ff ff ff 01"),
        (-62135596800, "80 92 b8 c3 98 fe ff ff ff 01"),
    ],
)
def test_varint_bytes(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert pb.encode_varint(value) == data
    assert pb.decode_varint(data, 0, len(data)) == (value & (2**64 - 1), len(data))


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    data = pb.encode_varint(value)
    assert pb.decode_varint(data, 0, len(data)) == (value, len(data))


@given(st.lists(st.integers(-(2**63), -1), max_size=40))
def test_negative_varints_kept_are_bounded_and_exact(values: list[int]) -> None:
    """Encoded negatives are kept (Go's zero time in every State), the first NEGATIVE_KEPT
    seen and no more; a kept one and a fresh one give the same bytes as the arithmetic."""
    from epollshim.v2 import varint

    for v in [*values, *values]:  # the second time, some come from the table
        u = v & (2**64 - 1)  # bit 63 set: 10 groups of 7 bits, all but the last marked
        want = bytes(((u >> 7 * i) & 0x7F) | (0x80 if i < 9 else 0) for i in range(10))
        assert varint.encode_varint(v) == want
        assert len(varint._negative) <= varint.NEGATIVE_KEPT


def test_negative_int32_is_ten_bytes() -> None:
    assert m.Status(code=-1).encode() == bytes.fromhex("08 ff ff ff ff ff ff ff ff ff 01")
    assert m.Status.decode(m.Status(code=-1).encode()).code == -1


# ------------------------------------------------------------------ proto3 encoding rules


def test_zero_values_are_omitted() -> None:
    assert m.StateResponse().encode() == b""
    assert m.KillRequest(id="", signal=0, all=False).encode() == b""
    assert Outer(name="", many=[], nums=[], labels={}, blob=b"").encode() == b""


def test_a_set_message_field_is_written_even_if_empty() -> None:
    assert Outer(inner=Inner()).encode() == b"\x12\x00"
    assert Outer.decode(b"\x12\x00").inner == Inner()
    assert Outer.decode(b"").inner is None


def test_repeated_numbers_are_packed_and_both_forms_decode() -> None:
    assert Outer(nums=[1, 300]).encode() == bytes.fromhex("22 03 01 ac 02")
    assert Outer.decode(bytes.fromhex("20 01 20 ac 02")).nums == [1, 300]
    assert Outer.decode(bytes.fromhex("22 01 01 20 02 22 00")).nums == [1, 2]


def test_map_entries_carry_key_and_value() -> None:
    assert Outer(labels={"a": ""}).encode() == bytes.fromhex("2a 05 0a 01 61 12 00")
    assert Outer.decode(bytes.fromhex("2a 00")).labels == {"": ""}
    assert Outer.decode(bytes.fromhex("2a 03 12 01 76")).labels == {"": "v"}
    twice = bytes.fromhex("2a 05 0a 01 61 12 00 2a 06 0a 01 61 12 01 62")
    assert Outer.decode(twice).labels == {"a": "b"}


def test_last_scalar_wins_and_message_fields_merge() -> None:
    data = Outer(name="a").encode() + Outer(name="b").encode()
    assert Outer.decode(data).name == "b"
    data = Outer(inner=Inner(n=1, tags=["x"])).encode() + Outer(inner=Inner(tags=["y"])).encode()
    assert Outer.decode(data).inner == Inner(n=1, tags=["x", "y"])


@pytest.mark.parametrize(
    "unknown",
    ["f8 01 05", "79 01 02 03 04 05 06 07 08", "7a 02 aa bb", "7d 01 02 03 04", "7a 00"],
    ids=["varint", "fixed64", "len", "fixed32", "empty-len"],
)
def test_unknown_fields_are_skipped(unknown: str) -> None:
    known = Outer(name="n", nums=[7]).encode()
    data = bytes.fromhex(unknown) + known + bytes.fromhex(unknown)
    assert Outer.decode(data) == Outer(name="n", nums=[7])


@message
class Quick(Message):
    """Every kind decode's short path takes, under one-byte tags (1-15) and two-byte ones."""

    TYPE_NAME = "test.Quick"
    FIELDS = (
        Field(1, "s", pb.STRING),
        Field(2, "b", pb.BYTES),
        Field(3, "i", pb.INT32),
        Field(4, "l", pb.INT64),
        Field(5, "u", pb.UINT64),
        Field(6, "e", pb.ENUM),
        Field(7, "inner", pb.MESSAGE, Inner),
        Field(8, "flag", pb.BOOL),
        Field(15, "last", pb.STRING),
        Field(16, "far", pb.STRING),
        Field(17, "far_n", pb.UINT32),
    )
    s: str = ""
    b: bytes = b""
    i: int = 0
    l: int = 0  # noqa: E741
    u: int = 0
    e: int = 0
    inner: Inner | None = None
    flag: bool = False
    last: str = ""
    far: str = ""
    far_n: int = 0


def _general_decode(cls: type[Message], data: bytes) -> Message | str:
    """``cls.decode(data)`` with the short path switched off, or its DecodeError's words."""
    decoding = pb._decoding(cls)
    short, decoding.quick = decoding.quick, {}
    try:
        return _decode_or_error(cls, data)
    finally:
        decoding.quick = short


def _decode_or_error(cls: type[Message], data: bytes) -> Message | str:
    try:
        return cls.decode(data)
    except DecodeError as e:
        return str(e)


_NEAR_LIMITS = st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 127, 128, 255, -1])
_TEXT = st.text(max_size=130) | st.text(min_size=125, max_size=130) | st.just("\udcff")


@given(
    st.builds(
        Quick,
        s=_TEXT,
        b=st.binary(max_size=130),
        i=_NEAR_LIMITS,
        l=st.integers(-(2**63), 2**63 - 1) | _NEAR_LIMITS,
        u=st.integers(0, 2**64 - 1) | st.sampled_from([0, 127, 128]),
        e=_NEAR_LIMITS,
        inner=st.none() | st.builds(Inner, n=_NEAR_LIMITS),
        flag=st.booleans(),
        last=_TEXT,
        far=_TEXT,
        far_n=st.sampled_from([0, 127, 128]),
    ),
    st.binary(max_size=8),
    st.integers(0, 300),
)
@settings(max_examples=300)
def test_the_short_decode_path_gives_what_the_general_one_gives(
    msg: Quick, noise: bytes, cut: int
) -> None:
    data = msg.encode()
    assert Quick.decode(data) == _general_decode(Quick, data) == msg
    for damaged in (data[:cut], data[:cut] + noise, noise + data, data + noise):
        assert _decode_or_error(Quick, damaged) == _general_decode(Quick, damaged)


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_the_short_decode_path_agrees_on_any_bytes(data: bytes) -> None:
    for cls in (Quick, m.Request, m.StateRequest, m.CreateTaskRequest):
        assert _decode_or_error(cls, data) == _general_decode(cls, data)


def test_strings_round_trip_bytes_that_are_not_utf8() -> None:
    decoded = Outer.decode(b"\x0a\x02\xff/")
    assert decoded.name == "\udcff/"
    assert decoded.encode() == b"\x0a\x02\xff/"


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("hexed", "words"),
    [
        ("0a", "truncated varint"),
        ("0a 05 61", "5 bytes announced, 1 left"),
        ("0a ff ff ff ff ff ff ff ff ff 7f", "announced"),
        ("78 ff ff ff ff ff ff ff ff ff ff 01", "Outer.#15: varint longer than 10 bytes"),
        ("00 01", "invalid field number 0"),
        ("7b", "unsupported wire type 3"),
        ("7c", "unsupported wire type 4"),
        ("7e", "unsupported wire type 6"),
        ("08 01", "wire type 0 does not fit string"),
        ("12 01 08", "Outer.inner: Inner.n: truncated varint"),
        ("1a 03 12 05 61", "Outer.many: Inner.tags: truncated"),
        ("22 02 01", "Outer.nums: truncated"),
        ("2a 02 0a 05", "Outer.labels: truncated"),
        ("7d 01 02", "Outer.#15: truncated"),
    ],
)
def test_malformed_input_raises_decode_error(hexed: str, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        Outer.decode(bytes.fromhex(hexed))


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for cls in (Outer, m.CreateTaskRequest, m.StateResponse, m.Request, m.ForwardRequest):
        try:
            cls.decode(data)
        except DecodeError:
            pass


def test_every_truncation_decodes_or_raises_decode_error() -> None:
    full = m.CreateTaskRequest(
        id="t", rootfs=[m.Mount("overlay", "overlay", "", ["a=b"])], options=pb.Any("x", b"\x08")
    ).encode()
    for cut in range(len(full)):
        try:
            m.CreateTaskRequest.decode(full[:cut])
        except DecodeError:
            pass


# ------------------------------------------------------------------ encoding errors (our bugs)


@pytest.mark.parametrize(
    ("msg", "words"),
    [
        (m.CreateTaskResponse(pid=-1), "CreateTaskResponse.pid: -1 is out of range for uint32"),
        (m.CreateTaskResponse(pid=2**32), "out of range for uint32"),
        (m.Request(timeout_nano=2**63), "out of range for int64"),
        (m.Status(code=2**31), "out of range for int32"),
        (m.StateRequest(id=5), "string needs a str, not int"),  # type: ignore[arg-type]
        (m.KillRequest(signal="9"), "uint32 needs an int, not str"),  # type: ignore[arg-type]
        (m.Request(payload="x"), "bytes needs bytes, not str"),  # type: ignore[arg-type]
        (m.StateRequest(id="\ud800"), "string cannot be encoded"),
        (m.WaitResponse(exited_at=m.Mount()), "needs a Timestamp, not Mount"),  # type: ignore[arg-type]
        (m.Mount(options=[1]), "Mount.options: string needs a str"),  # type: ignore[list-item]
        (m.Mount(options=5), "Mount.options: bad value"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_raise_encode_error(msg: Message, words: str) -> None:
    with pytest.raises(EncodeError, match=words):
        msg.encode()


# ------------------------------------------------------------------ schema declarations


def test_schema_mismatch_is_caught_at_declaration() -> None:
    with pytest.raises(SchemaError, match="attributes"):

        @message
        class Missing(Message):
            FIELDS = (Field(1, "a", pb.STRING), Field(2, "b", pb.STRING))
            a: str = ""

    with pytest.raises(SchemaError, match="unique and ascending"):

        @message
        class Twice(Message):
            FIELDS = (Field(1, "a", pb.STRING), Field(1, "b", pb.STRING))
            a: str = ""
            b: str = ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((1, "x", "float"), "unknown kind"),
        ((1, "x", pb.MESSAGE), "message class goes with kind MESSAGE"),
        ((1, "x", pb.STRING, Inner), "message class goes with kind MESSAGE"),
        ((0, "x", pb.STRING), "invalid field number 0"),
        ((19000, "x", pb.STRING), "invalid field number"),
        ((2**29, "x", pb.STRING), "invalid field number"),
    ],
)
def test_bad_fields(
    args: tuple[int, str, str] | tuple[int, str, str, type[Message]], words: str
) -> None:
    with pytest.raises(SchemaError, match=words):
        Field(*args)


def test_every_schema_class_checks_and_is_slotted() -> None:
    for cls in more.ALL:
        assert pb.schema(cls) is cls.FIELDS
        assert cls.__slots__ == tuple(f.name for f in cls.FIELDS)
        with pytest.raises(AttributeError):
            cls().misspelt = 1  # type: ignore[attr-defined]
        assert "__dict__" not in vars(cls) and "__annotations__" not in vars(cls)


def test_a_message_class_is_made_once() -> None:
    """The class statement makes the slotted class (``Message``'s metaclass): ``@message``
    only checks it. Remaking it there left the declared class as garbage (~2.5 KiB each)
    for the collector, which the v2 daemon keeps off while it imports its schema."""
    gc.collect()

    @message
    class Declared(Message):
        FIELDS = (Field(1, "a", pb.STRING),)
        a: str = ""

    assert gc.collect() == 0
    assert Declared.__slots__ == ("a",) and "__dict__" not in vars(Declared)
    assert Declared(a="x").a == "x" and Declared().a == ""


# ------------------------------------------------------------------ Message behaviour


def test_construction_defaults_are_fresh() -> None:
    a, b = Outer(), Outer()
    a.many.append(Inner())
    a.labels["k"] = "v"
    assert (b.many, b.labels, b.inner, b.name, b.blob) == ([], {}, None, "", b"")


def test_construction_positional_and_keyword() -> None:
    assert m.KillRequest("a1", "e2", 9, True) == m.KillRequest(
        id="a1", exec_id="e2", signal=9, all=True
    )
    with pytest.raises(TypeError, match="at most 4"):
        m.KillRequest("a", "b", 1, True, 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field sig"):
        m.KillRequest(sig=9)  # type: ignore[call-arg]


def test_equality_repr_and_hash() -> None:
    assert Outer(name="a") == Outer(name="a")
    assert Outer(name="a") != Outer(name="b")
    assert Inner() != m.Mount()
    assert repr(m.KillRequest(id="a1", signal=9)) == "KillRequest(id='a1', signal=9)"
    assert repr(Outer(inner=Inner())) == "Outer(inner=Inner())"
    with pytest.raises(TypeError):
        hash(Inner())


# ------------------------------------------------------------------ well-known types


def test_timestamps() -> None:
    assert pb.Timestamp.from_ns(1_700_000_000_123_456_789) == pb.Timestamp(1700000000, 123456789)
    assert pb.Timestamp.from_ns(-1) == pb.Timestamp(-1, 999_999_999)
    assert pb.Timestamp.from_float(1.5) == pb.Timestamp(1, 500_000_000)
    assert pb.Timestamp(2, 250_000_000).to_float() == 2.25
    assert m.timestamp(3.0) == pb.Timestamp(3, 0)
    assert m.go_zero_time() == pb.Timestamp(-62135596800, 0)


@given(st.integers(-(2**62), 2**62))
def test_timestamp_from_ns_is_normalised(ns: int) -> None:
    ts = pb.Timestamp.from_ns(ns)
    assert 0 <= ts.nanos < 1_000_000_000
    assert ts.seconds * 1_000_000_000 + ts.nanos == ns


def test_any_pack_and_unpack() -> None:
    packed = pb.pack_any(more.TaskOOM("c1"))
    assert packed.type_url == "containerd.events.TaskOOM"
    assert more.unpack(packed) == more.TaskOOM("c1")
    prefixed = pb.pack_any(more.TaskOOM("c1"), prefix="types.googleapis.com/")
    assert prefixed.type_name == "containerd.events.TaskOOM"
    assert prefixed.unpack(more.TaskOOM) == more.TaskOOM("c1")
    with pytest.raises(DecodeError, match=r"not containerd\.runc\.v1\.Options"):
        packed.unpack(m.Options)
    with pytest.raises(DecodeError, match=r"unknown type 'x\.Y'"):
        more.unpack(pb.Any("x.Y", b""))
    assert pb.Empty().encode() == b""


# ------------------------------------------------------------------ purity


WIRE_MODULES = ("pb", "messages", "ttrpc", "varint")
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "collections.abc",
        "enum",
        "typing",  # only under TYPE_CHECKING
        "epollshim.core.record",
        "epollshim.v2.pb",
        "epollshim.v2.varint",
        "epollshim.v2.messages",
    }
)


@pytest.mark.parametrize("name", WIRE_MODULES)
def test_wire_layer_imports_nothing_that_does_io(name: str) -> None:
    """No os/socket/time, and no google.protobuf (3.3 MB per shim) at run time."""
    path = Path(pb.__file__).with_name(f"{name}.py")
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
