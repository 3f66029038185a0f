"""Pumps with real pipes: every byte in order through back-pressure, and their place in the
loop (bulk: relays yield to the other callbacks of a batch, see shell/loop.py)."""

import os

from epollshim.shell.loop import Loop
from epollshim.shell.pump import Pump


def test_a_pump_is_bulk_on_both_ends_and_moves_every_byte_in_order() -> None:
    src_r, src_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    dst_r, dst_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    loop = Loop()
    ended: list[Pump] = []
    pump = Pump(loop, src_r, dst_w, bufsize=4096, on_eof=ended.append).start()
    sent = bytes(range(256)) * 2048  # 512 KiB: more than both pipes hold
    got = bytearray()
    off = 0
    waited_for_room = False
    turns = 0
    try:
        assert src_r in loop.bulk
        while not ended:
            if off < len(sent):
                try:
                    off += os.write(src_w, sent[off : off + 65536])
                except BlockingIOError:
                    pass
                if off == len(sent):
                    os.close(src_w)
            loop._once()
            if dst_w in loop.callbacks:  # destination full: waiting for room is relay work too
                waited_for_room = True
                assert dst_w in loop.bulk
            turns += 1
            if dst_w in loop.callbacks or turns % 32 == 0:  # a slow reader: the pipe fills
                got += _read(dst_r)
        got += _read(dst_r)
    finally:
        loop.close()
        for fd in (src_r, dst_r, dst_w):
            os.close(fd)
    assert bytes(got) == sent
    assert waited_for_room
    assert ended == [pump] and not loop.callbacks and not loop.bulk


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""
