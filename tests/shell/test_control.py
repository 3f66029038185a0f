"""The control FIFO parser (spec 16.4): ``TYPE A B\\n`` lines, fed in any pieces.

``ControlReader.feed`` is pure apart from its callbacks and the log, so these
tests feed bytes and record what it asked for.
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from epollshim.log import Log
from epollshim.v0.control import MAX_LINE, ControlReader


class Recorder(Log):
    """A log that keeps its lines, plus the reader's callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, level: str, msg: str) -> None:
        self.lines.append((level, msg))

    def reader(self, fd: int = -1) -> ControlReader:
        return ControlReader(
            fd,
            lambda: self.calls.append(("close",)),
            lambda w, h: self.calls.append(("resize", w, h)),
            self,
        )


def feed(*chunks: bytes) -> Recorder:
    rec = Recorder()
    reader = rec.reader()
    for chunk in chunks:
        reader.feed(chunk)
    return rec


def test_resize_and_close() -> None:
    rec = feed(b"1 80 24\n0 0 0\n")
    assert rec.calls == [("resize", 80, 24), ("close",)]
    assert rec.lines == []


def test_close_twice_calls_twice() -> None:
    # Idempotence is the shim's job (closing an already closed writer does nothing).
    assert feed(b"0 0 0\n0 0 0\n").calls == [("close",), ("close",)]


def test_nothing_happens_before_the_newline() -> None:
    rec = Recorder()
    reader = rec.reader()
    for chunk in (b"1", b" 1", b"00 ", b"4", b"0"):
        reader.feed(chunk)
        assert rec.calls == []
    reader.feed(b"\n1 5")
    assert rec.calls == [("resize", 100, 40)]


def test_one_byte_at_a_time() -> None:
    data = b"1 120 40\n0 0 0\n1 1 1\n"
    assert feed(*(data[i : i + 1] for i in range(len(data)))).calls == [
        ("resize", 120, 40),
        ("close",),
        ("resize", 1, 1),
    ]


def test_several_spaces_and_tabs() -> None:
    assert feed(b"1   100 \t 40\n").calls == [("resize", 100, 40)]


def test_line_of_exactly_max_length_is_kept() -> None:
    line = b"1 5 " + b"6".rjust(MAX_LINE - 4, b"0")
    assert len(line) == MAX_LINE
    assert feed(line + b"\n").calls == [("resize", 5, 6)]


def test_long_line_is_dropped_up_to_its_newline() -> None:
    line = b"1 5 " + b"6".rjust(MAX_LINE - 3, b"0")  # one byte too long
    rec = feed(line + b"\n1 7 8\n")
    assert rec.calls == [("resize", 7, 8)]
    assert [level for level, _ in rec.lines] == ["warn"]


def test_long_line_in_pieces_is_dropped() -> None:
    rec = feed(b"1 2 " + b"3" * 100, b"3" * 100, b"3" * 300, b"\n0 0", b" 0\n")
    assert rec.calls == [("close",)]
    assert len(rec.lines) == 1


def test_long_line_does_not_swallow_the_next_one() -> None:
    rec = feed(b"x" * 1000 + b"\n1 2 3\n", b"1 4 5\n")
    assert rec.calls == [("resize", 2, 3), ("resize", 4, 5)]


def test_garbage_is_ignored() -> None:
    garbage = [
        b"hello",
        b"",
        b"1 2",
        b"1 2 3 4",
        b"1 x 2",
        b"\xff\xfe\xfd",
        b"0x1 0 0",
        b"1.5 2 3",
    ]
    rec = feed(b"\n".join(garbage) + b"\n1 9 9\n")
    assert rec.calls == [("resize", 9, 9)]
    assert len(rec.lines) == len(garbage)
    assert all(level == "warn" for level, _ in rec.lines)


def test_unknown_types_are_ignored() -> None:
    rec = feed(b"2 0 0\n7 1 1\n-1 0 0\n99999999999999999999 1 1\n0 0 0\n")
    assert rec.calls == [("close",)]
    assert len(rec.lines) == 4


def test_values_are_passed_on_unclamped() -> None:
    # Clamping to 0..65535 happens in set_winsize, where the ioctl needs it.
    assert feed(b"1 -5 70000\n").calls == [("resize", -5, 70000)]


def test_garbage_in_log_is_bounded() -> None:
    rec = feed(b"z" * 100 + b"\n")
    assert all(len(msg) < 200 for _, msg in rec.lines)


MESSAGES = st.lists(
    st.one_of(
        st.just(b"0 0 0\n"),
        st.builds(lambda w, h: b"1 %d %d\n" % (w, h), st.integers(0, 9999), st.integers(0, 9999)),
        st.binary(max_size=40).filter(lambda b: b"\n" not in b).map(lambda b: b"#" + b + b"\n"),
        st.binary(min_size=MAX_LINE + 1, max_size=400)
        .filter(lambda b: b"\n" not in b)
        .map(lambda b: b + b"\n"),
    ),
    max_size=20,
)


@given(MESSAGES, st.lists(st.integers(1, 50), max_size=30))
def test_any_split_gives_the_same_calls(messages: list[bytes], cuts: list[int]) -> None:
    data = b"".join(messages)
    whole = feed(data).calls
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    assert feed(*chunks).calls == whole
    expected: list[tuple[object, ...]] = []
    for m in messages:
        if m == b"0 0 0\n":
            expected.append(("close",))
        elif m.startswith(b"1 "):
            _, w, h = m.split()
            expected.append(("resize", int(w), int(h)))
    assert whole == expected


def test_readable_reads_a_nonblocking_pipe() -> None:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        rec = Recorder()
        reader = rec.reader(r)
        reader.readable()  # EAGAIN: nothing, no error
        os.write(w, b"1 3 4\n0 0")
        reader.readable()
        assert rec.calls == [("resize", 3, 4)]
        os.write(w, b" 0\n")
        reader.readable()
        assert rec.calls == [("resize", 3, 4), ("close",)]
    finally:
        os.close(r)
        os.close(w)
