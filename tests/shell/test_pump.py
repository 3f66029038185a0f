"""Pumps with real pipes: every byte in order through back-pressure, and their place in the
loop (bulk: relays yield to the other callbacks of a batch, see shell/loop.py)."""

import fcntl
import os
import pty
import subprocess
import sys
import time
import tty

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


F_SETPIPE_SZ = 1031


def test_an_edge_pump_reads_again_after_a_full_read_and_stops_after_a_short_one() -> None:
    """Edge-triggered, one wake-up must leave the source drained: 200 000 bytes written at
    once, then nothing, are three full reads and a short one (no further wake-up comes)."""
    src_r, src_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    dst_r, dst_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    loop = Loop()
    try:
        for fd in (src_w, dst_w):
            fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
        pump = Pump(loop, src_r, dst_w, bufsize=65536, edge=True).start()
        sent = os.urandom(200_000)
        assert os.write(src_w, sent) == len(sent)
        loop._once()
        assert pump.moved == len(sent)
        assert os.read(dst_r, 1 << 20) == sent
        assert not loop.selector.select(0)  # drained; the edge was used
        os.write(src_w, b"more")
        loop._once()
        assert os.read(dst_r, 100) == b"more"
    finally:
        loop.close()
        for fd in (src_r, src_w, dst_r, dst_w):
            os.close(fd)


def test_an_edge_pump_relays_a_pty_to_its_end_through_back_pressure() -> None:
    """A process writes 4 MB into a pty (raw); the pump moves the master's bytes into a
    pipe that we read slowly, so the pipe fills and the master is registered again."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    dst_r, dst_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    block = bytes(range(256)) * 64
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nfor _ in range(16): os.write(1, bytes(range(256)) * {16 * 64})",
        ],
        stdout=slave,
    )
    os.close(slave)
    loop = Loop()
    ended: list[Pump] = []
    got = bytearray()
    waited_for_room = False
    try:
        pump = Pump(loop, master, dst_w, on_eof=ended.append, edge=True).start()
        assert master in loop.edge
        deadline = time.monotonic() + 120
        turns = 0
        while not ended and time.monotonic() < deadline:
            if not loop.timers:  # a stall shows as the deadline passing, not a hang
                loop.call_later(1, lambda: None)
            loop._once()
            turns += 1
            if dst_w in loop.callbacks:
                waited_for_room = True
            if master in loop.callbacks:  # registered again after waiting: edge again
                assert master in loop.edge
            if dst_w in loop.callbacks or turns % 32 == 0:  # slowly: the pipe fills
                got += _read(dst_r)
        got += _read(dst_r)
    finally:
        loop.close()
        writer.wait(30)
        for fd in (master, dst_r, dst_w):
            os.close(fd)
    assert ended == [pump], f"stalled after {len(got)} bytes"
    assert len(got) == 16 * 256 * 16 * 64 and got == block * (len(got) // len(block))
    assert waited_for_room


def test_an_edge_pump_sees_the_end_of_a_pty_whose_writer_is_gone() -> None:
    """The slave's last close wakes the master once, with its last bytes: a short read
    there does not mean "wait for the next edge" (none comes) but "read on to EIO"."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    dst_r, dst_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.write(slave, b"last words")
    os.close(slave)
    loop = Loop()
    ended: list[Pump] = []

    def end(pump: Pump) -> None:
        ended.append(pump)
        loop.stop()

    try:
        pump = Pump(loop, master, dst_w, on_eof=end, edge=True).start()
        loop.call_later(10, loop.stop)  # a stall ends the wait, and the test fails
        loop.run()
        assert ended == [pump]
        assert os.read(dst_r, 100) == b"last words"
    finally:
        loop.close()
        for fd in (master, dst_r, dst_w):
            os.close(fd)
