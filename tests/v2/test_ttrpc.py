"""Tests of the sans-IO ttrpc layer (``epollshim.v2.ttrpc``): framing, server replies and
the event client. Pure: bytes in, bytes out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from epollshim.v2 import messages as m
from epollshim.v2 import messages_more as more
from epollshim.v2 import pb, ttrpc
from epollshim.v2.ttrpc import Frame, FrameDecoder, ProtocolError, RequestError


def h(text: str) -> bytes:
    """Hex with spaces, and "quoted" ASCII runs, as the spec writes captures."""
    out = b""
    for i, chunk in enumerate(text.split('"')):
        out += chunk.encode() if i % 2 else bytes.fromhex(chunk)
    return out


KILL_FRAME = h(
    '00 00 00 2b 00 00 00 4b 01 00 0a 17 "containerd.task.v2.Task" 12 04 "Kill" 1a 0a'
    ' 0a 02 "a1" 12 02 "e2" 18 09'
)
CONNECT_FRAME = h(
    '00 00 00 28 00 00 00 03 01 00 0a 17 "containerd.task.v2.Task" 12 07 "Connect" 1a 04 0a 02 "t2"'
)


# ------------------------------------------------------------------ framing


def test_encode_frame_header() -> None:
    assert ttrpc.encode_frame(3, ttrpc.RESPONSE) == h("00 00 00 00 00 00 00 03 02 00")
    assert ttrpc.encode_frame(0xFFFFFFFF, 1, b"ab", flags=4) == h(
        '00 00 00 02 ff ff ff ff 01 04 "ab"'
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((-1, 1, b""), "bad frame header"),
        ((2**32, 1, b""), "bad frame header"),
        ((1, 256, b""), "bad frame header"),
        ((1, 1, bytes(ttrpc.MAX_PAYLOAD + 1)), "exceeds 4194304"),
    ],
)
def test_encode_frame_refuses_what_no_frame_can_carry(
    args: tuple[int, int, bytes], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        ttrpc.encode_frame(*args)


def test_decode_appendix_a1_kill() -> None:
    (frame,) = FrameDecoder().feed(KILL_FRAME)
    assert (frame.stream_id, frame.type, frame.flags, len(frame.payload)) == (0x4B, 1, 0, 0x2B)
    request = ttrpc.decode_request(frame)
    assert (request.service, request.method) == (m.TASK_SERVICE, "Kill")
    assert ttrpc.decode_payload(request, m.KillRequest) == m.KillRequest("a1", "e2", 9)


def test_frames_split_at_every_byte_boundary() -> None:
    stream = KILL_FRAME + CONNECT_FRAME + ttrpc.encode_frame(5, ttrpc.REQUEST)
    expected = FrameDecoder().feed(stream)
    assert [f.stream_id for f in expected] == [0x4B, 3, 5]
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == expected
        assert decoder.pending == 0


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    got: list[Frame] = []
    for fed, byte in enumerate(CONNECT_FRAME, 1):
        got += decoder.feed(bytes([byte]))
        assert decoder.pending == (0 if got else fed)
        assert len(got) == (fed == len(CONNECT_FRAME))
    assert got[0].payload == CONNECT_FRAME[10:]


@given(st.lists(st.binary(max_size=40), max_size=6), st.data())
def test_any_chunking_gives_the_same_frames(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(
        ttrpc.encode_frame(2 * i + 1, ttrpc.REQUEST, p) for i, p in enumerate(payloads)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert [f.payload for f in got] == payloads
    assert [f.stream_id for f in got] == [2 * i + 1 for i in range(len(payloads))]


def test_truncated_header_and_payload_stay_pending() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(KILL_FRAME[:9]) == []
    assert decoder.pending == 9
    assert decoder.feed(KILL_FRAME[9:20]) == []
    assert decoder.pending == 20
    assert len(decoder.feed(KILL_FRAME[20:])) == 1
    assert decoder.pending == 0


def test_zero_length_frames() -> None:
    frames = FrameDecoder().feed(ttrpc.encode_frame(7, ttrpc.RESPONSE) * 3)
    assert frames == [Frame(7, ttrpc.RESPONSE, 0, b"")] * 3


def test_exactly_four_mib_is_allowed() -> None:
    frame = ttrpc.encode_frame(1, ttrpc.REQUEST, bytes(ttrpc.MAX_PAYLOAD))
    (got,) = FrameDecoder().feed(frame)
    assert len(got.payload) == ttrpc.MAX_PAYLOAD


def test_oversize_frame_is_a_protocol_error_from_its_header() -> None:
    decoder = FrameDecoder()
    header = h("00 40 00 01 00 00 00 09 01 00")  # 4 MiB + 1
    with pytest.raises(ProtocolError, match="stream 9 announces 4194305 bytes") as caught:
        decoder.feed(header)
    assert caught.value.stream_id == 9
    with pytest.raises(ProtocolError):  # the decoder stays failed
        decoder.feed(CONNECT_FRAME)


def test_custom_cap() -> None:
    with pytest.raises(ProtocolError, match="more than the maximum message size of 16"):
        FrameDecoder(max_payload=16).feed(KILL_FRAME)


@pytest.mark.parametrize("ftype", [0, 4, 255])
def test_bad_type_is_a_protocol_error(ftype: int) -> None:
    with pytest.raises(ProtocolError, match=f"stream 3 has unknown type {ftype}"):
        FrameDecoder().feed(ttrpc.encode_frame(3, ftype, b"x"))


def test_frames_before_a_bad_one_in_the_same_chunk_are_lost_with_the_connection() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(CONNECT_FRAME + ttrpc.encode_frame(5, 9))
    assert decoder.pending == 0


def test_data_frames_and_flags_pass_through() -> None:
    (frame,) = FrameDecoder().feed(ttrpc.encode_frame(1, ttrpc.DATA, b"z", flags=3))
    assert frame == Frame(1, ttrpc.DATA, 3, b"z")


# ------------------------------------------------------------------ server side


def test_even_stream_id_is_invalid_argument() -> None:
    with pytest.raises(RequestError) as caught:
        ttrpc.decode_request(Frame(2, ttrpc.REQUEST, 0, CONNECT_FRAME[10:]))
    assert caught.value.code == m.Code.INVALID_ARGUMENT
    assert caught.value.message == "StreamID must be odd for client initiated streams"


def test_unparsable_request_is_invalid_argument() -> None:
    with pytest.raises(RequestError) as caught:
        ttrpc.decode_request(Frame(1, ttrpc.REQUEST, 0, b"\x0a\x05ab"))
    assert caught.value.code == m.Code.INVALID_ARGUMENT
    assert "Request.service: truncated" in caught.value.message


def test_unparsable_payload_is_internal_as_in_ttrpc() -> None:
    request = m.Request(m.TASK_SERVICE, "Kill", b"\x0a\x09")
    with pytest.raises(RequestError, match="INTERNAL: ttrpc: error unmarshalling payload"):
        ttrpc.decode_payload(request, m.KillRequest)


def test_unknown_service_and_method_texts() -> None:
    service = ttrpc.unknown_service("x.Y")
    method = ttrpc.unknown_method("Frobnicate")
    assert (service.code, service.message) == (m.Code.UNIMPLEMENTED, "service x.Y")
    assert (method.code, method.message) == (m.Code.UNIMPLEMENTED, "method Frobnicate")


def test_appendix_a3_connect_reply() -> None:
    frame = ttrpc.response_frame(3, m.ConnectResponse(shim_pid=714, task_pid=829))
    assert frame == h("00 00 00 08 00 00 00 03 02 00 12 06 08 ca 05 10 bd 06")


def test_appendix_a4_empty_reply() -> None:
    expected = h("00 00 00 00 00 00 00 07 02 00")
    assert ttrpc.response_frame(7) == expected
    assert ttrpc.response_frame(7, pb.Empty()) == expected
    assert ttrpc.response_frame(7, m.CreateTaskResponse(pid=0)) == expected


@given(st.binary(max_size=1 << 15))
def test_a_reply_carries_the_response_message_the_codec_writes(payload: bytes) -> None:
    class Raw(pb.Message):  # a result whose encoding is ``payload`` as it is
        def encode(self) -> bytes:
            return payload

    (frame,) = FrameDecoder().feed(ttrpc.response_frame(5, Raw()))
    assert frame.payload == m.Response(payload=payload).encode()
    assert m.Response.decode(frame.payload) == m.Response(payload=payload)


def test_appendix_a5_error_reply() -> None:
    message = "process already finished: not found"
    frame = ttrpc.error_frame(9, m.Code.NOT_FOUND, message)
    assert frame == h(f'00 00 00 29 00 00 00 09 02 00 0a 27 08 05 12 23 "{message}"')


def test_too_big_reply_becomes_resource_exhausted() -> None:
    big = more.PidsResponse(
        [more.ProcessInfo(pid=n, info=pb.Any("t", bytes(1000))) for n in range(5000)]
    )
    (frame,) = FrameDecoder().feed(ttrpc.response_frame(11, big))
    status = m.Response.decode(frame.payload).status
    assert status is not None
    assert status.code == m.Code.RESOURCE_EXHAUSTED
    assert "exceed maximum message size of 4194304" in status.message


# ------------------------------------------------------------------ client side


def forward(topic: str) -> m.ForwardRequest:
    event = pb.pack_any(more.TaskOOM("c1"))
    return m.ForwardRequest(m.Envelope(pb.Timestamp(1, 0), "default", topic, event))


def test_client_uses_odd_ids_from_one() -> None:
    client = ttrpc.Client()
    ids = [client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))[0] for _ in range(4)]
    assert ids == [1, 3, 5, 7]
    assert client.outstanding == 4


def test_client_request_frame_carries_everything() -> None:
    client = ttrpc.Client()
    stream_id, data = client.request(
        m.EVENTS_SERVICE,
        "Forward",
        forward("/tasks/oom"),
        timeout_ns=5_000_000_000,
        metadata={"containerd-namespace-ttrpc": "default"},
    )
    (frame,) = FrameDecoder().feed(data)
    assert (frame.stream_id, frame.type) == (stream_id, ttrpc.REQUEST)
    request = ttrpc.decode_request(frame)  # what containerd's server would see
    assert (request.service, request.method) == (m.EVENTS_SERVICE, "Forward")
    assert request.timeout_nano == 5_000_000_000
    assert request.metadata == [m.KeyValue("containerd-namespace-ttrpc", "default")]
    assert ttrpc.decode_payload(request, m.ForwardRequest) == forward("/tasks/oom")


def test_client_matches_replies_in_any_order() -> None:
    client = ttrpc.Client()
    first, _ = client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))
    second, _ = client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))
    error = "timestamp must be set on forwarded event: invalid argument"
    replies = FrameDecoder().feed(
        ttrpc.error_frame(second, m.Code.INVALID_ARGUMENT, error) + ttrpc.response_frame(first)
    )
    got = [client.receive(f) for f in replies]
    assert got[0] == ttrpc.Reply(second, f"{m.EVENTS_SERVICE}/Forward", 3, error, b"")
    assert got[1] is not None
    assert got[1].ok
    assert got[1].stream_id == first
    assert got[1].result(pb.Empty) == pb.Empty()
    assert client.outstanding == 0
    with pytest.raises(RequestError, match="INVALID_ARGUMENT: timestamp must be set"):
        got[0].result(pb.Empty)


def test_client_drops_late_and_unknown_replies() -> None:
    client = ttrpc.Client()
    stream_id, _ = client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))
    client.forget(stream_id)
    (late,) = FrameDecoder().feed(ttrpc.response_frame(stream_id))
    assert client.receive(late) is None
    (unknown,) = FrameDecoder().feed(ttrpc.response_frame(99))
    assert client.receive(unknown) is None


def test_client_reports_unimplemented_forward() -> None:
    """An older containerd without the Events service answers as ttrpc does."""
    client = ttrpc.Client()
    stream_id, _ = client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))
    error = ttrpc.unknown_service(m.EVENTS_SERVICE)
    (frame,) = FrameDecoder().feed(ttrpc.error_frame(stream_id, error.code, error.message))
    reply = client.receive(frame)
    assert reply is not None
    assert (reply.code, reply.message) == (m.Code.UNIMPLEMENTED, f"service {m.EVENTS_SERVICE}")


def test_client_protocol_errors() -> None:
    client = ttrpc.Client()
    stream_id, _ = client.request(m.EVENTS_SERVICE, "Forward", forward("/tasks/oom"))
    with pytest.raises(ProtocolError, match="client got a frame of type 1"):
        client.receive(Frame(stream_id, ttrpc.REQUEST, 0, b""))
    with pytest.raises(ProtocolError, match="bad response to"):
        client.receive(Frame(stream_id, ttrpc.RESPONSE, 0, b"\x0a\x05"))
    stream_id, _ = client.request(m.TASK_SERVICE, "Connect", m.ConnectRequest("t"))
    reply = client.receive(
        Frame(stream_id, ttrpc.RESPONSE, 0, m.Response(payload=b"\x08").encode())
    )
    assert reply is not None
    with pytest.raises(ProtocolError, match=r"bad containerd\.task\.v2\.Task/Connect reply"):
        reply.result(m.ConnectResponse)


def test_client_stream_ids_run_out() -> None:
    client = ttrpc.Client()
    client._next_id = 2**32 - 1
    assert client.request(m.EVENTS_SERVICE, "Forward", forward("/a"))[0] == 2**32 - 1
    with pytest.raises(ProtocolError, match="stream ids exhausted"):
        client.request(m.EVENTS_SERVICE, "Forward", forward("/a"))


def test_request_error_with_a_code_we_do_not_name() -> None:
    assert str(RequestError(99, "odd")) == "code 99: odd"
    assert str(RequestError(5, "gone")) == "NOT_FOUND: gone"
