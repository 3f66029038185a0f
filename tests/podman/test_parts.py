"""The monitor's parts without podman: the k8s-file writer, the attach server's
back-pressure, the control FIFOs, and a check that the podman harness can fail."""

from __future__ import annotations

import os
import pty
import shutil
import socket
import subprocess
import sys
import tempfile
import tty
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from podmansupport import PrivatePodman, alive, k8s_lines

from epollshim.conmon import k8slog
from epollshim.conmon.attach import STDERR, STDOUT, AttachServer
from epollshim.conmon.k8slog import K8sLog, lines
from epollshim.conmon.relay import CtlReader, Output, WinszReader, make_fifo
from epollshim.log import Log
from epollshim.shell.loop import Loop


def read_log(path: Path) -> list[tuple[str, str, str]]:
    return k8s_lines(path.read_text())


def test_lines_cut_only_after_newlines() -> None:
    assert lines(b"a\nb\r\nc") == [b"a\n", b"b\r\n", b"c"]
    assert lines(b"a\n") == [b"a\n"] and lines(b"") == []


def test_k8s_log_whole_and_partial_lines(tmp_path: Path) -> None:
    log = K8sLog(str(tmp_path / "ctr.log"))
    log.write("stdout", b"one\ntwo\nthr")
    log.write("stdout", b"ee\n")
    log.write("stderr", b"\n")
    log.close()
    assert read_log(tmp_path / "ctr.log") == [
        ("stdout", "F", "one"),
        ("stdout", "F", "two"),
        ("stdout", "P", "thr"),
        ("stdout", "F", "ee"),
        ("stderr", "F", ""),
    ]
    stamp = (tmp_path / "ctr.log").read_text().split(" ", 1)[0]
    assert stamp[10] == "T" and stamp[-6] in "+-" and len(stamp.split(".")[1]) == 9 + 6


def test_k8s_log_size_max_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    log = K8sLog(str(path), size_max=200)
    for i in range(20):
        log.write("stdout", b"line %d\n" % i)
    log.close()
    assert path.stat().st_size <= 200
    assert read_log(path)[-1] == ("stdout", "F", "line 19")
    assert not (tmp_path / "ctr.log.tmp").exists()


def test_k8s_log_global_max_stops(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    log = K8sLog(str(path), global_max=100)
    for i in range(20):
        log.write("stdout", b"line %d\n" % i)
    log.close()
    assert len(read_log(path)) == 2  # each line counts 52 bytes here; the third would pass


_OUTPUT = st.lists(st.sampled_from([b"\n", b"a", b"bc", b"\r", b"\xff", b"\n\n"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), _OUTPUT.map(b"".join))),
    size_max=st.integers(-1, 300),
    global_max=st.integers(-1, 500),
)
def test_k8s_log_a_chunk_at_once_writes_what_line_by_line_writes(
    chunks: list[tuple[str, bytes]], size_max: int, global_max: int
) -> None:
    """``write``'s whole-chunk path against ``_write_lines`` alone, chunk after chunk: the same
    file (reopens included) and the same counts, with and without limits."""
    with tempfile.TemporaryDirectory() as d, mock.patch.object(k8slog, "stamp", lambda ns: "T"):
        paths = [Path(d, "chunk.log"), Path(d, "lines.log")]
        at_once, by_line = (K8sLog(str(p), size_max=size_max, global_max=global_max) for p in paths)
        for stream, data in chunks:
            at_once.write(stream, data)
            by_line._write_lines(f"T {stream} ".encode(), data)
            assert paths[0].read_bytes() == paths[1].read_bytes()
            assert (at_once.written, at_once.total) == (by_line.written, by_line.total)
        at_once.close()
        by_line.close()


def test_k8s_log_reopen_truncates(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    log = K8sLog(str(path))
    log.write("stdout", b"old\n")
    os.rename(path, tmp_path / "rotated")
    log.reopen()
    log.write("stdout", b"new\n")
    log.close()
    assert read_log(path) == [("stdout", "F", "new")]
    assert read_log(tmp_path / "rotated") == [("stdout", "F", "old")]


class Recorder:
    def __init__(self) -> None:
        self.input: list[bytes] = []
        self.ended = 0
        self.blocked: list[bool] = []


def server(tmp_path: Path, loop: Loop, rec: Recorder) -> AttachServer:
    return AttachServer(
        loop,
        str(tmp_path),
        on_input=rec.input.append,
        on_input_end=lambda: setattr(rec, "ended", rec.ended + 1),
        on_blocked=rec.blocked.append,
    )


def client(tmp_path: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(str(tmp_path / "attach"))
    return c


def spin(loop: Loop, until: object, rounds: int = 200) -> None:
    """Run loop iterations (each bounded by a 10 ms timer) until ``until()`` is true."""
    for _ in range(rounds):
        if until():  # type: ignore[operator]
            return
        loop.call_later(0.01, lambda: None)
        loop._once()
    raise AssertionError("the loop never got there")


def test_attach_packets_input_and_back_pressure(tmp_path: Path) -> None:
    loop, rec = Loop(), Recorder()
    srv = server(tmp_path, loop, rec)
    assert (tmp_path / "attach").stat().st_mode & 0o777 == 0o700
    c = client(tmp_path)
    spin(loop, lambda: srv.clients)
    srv.broadcast(STDOUT, b"out")
    srv.broadcast(STDERR, b"err")
    assert c.recv(8193) == b"\x02out" and c.recv(8193) == b"\x03err"
    c.send(b"typed")
    spin(loop, lambda: rec.input)
    assert rec.input == [b"typed"]
    chunk = b"x" * 8192
    sent = 0
    while not rec.blocked:  # a client that does not read: the server says it is blocked
        srv.broadcast(STDOUT, chunk)
        sent += 1
    assert rec.blocked == [True] and srv.blocked()
    got = 0
    while got < sent:
        assert c.recv(8193) == b"\x02" + chunk
        got += 1
        if srv.blocked():
            loop.call_later(0.01, lambda: None)
            loop._once()
    assert rec.blocked[-1] is False and not srv.blocked()
    c.shutdown(socket.SHUT_WR)
    spin(loop, lambda: rec.ended)
    srv.close()
    assert c.recv(8193) == b""  # EOF once the server closed
    c.close()
    loop.close()


def test_attach_drops_a_client_that_left(tmp_path: Path) -> None:
    loop, rec = Loop(), Recorder()
    srv = server(tmp_path, loop, rec)
    c = client(tmp_path)
    spin(loop, lambda: srv.clients)
    c.close()
    srv.broadcast(STDOUT, b"nobody")  # EPIPE/ECONNRESET: dropped, nothing raised
    spin(loop, lambda: not srv.clients or not srv.clients[0].reading)
    srv.broadcast(STDOUT, b"still nobody")
    assert srv.clients == []
    srv.close()
    loop.close()


def test_ctl_and_winsz_fifos(tmp_path: Path) -> None:
    sizes: list[tuple[int, int]] = []
    reopened: list[bool] = []
    log = Log()
    ctl = make_fifo(str(tmp_path), "ctl")
    winsz = make_fifo(str(tmp_path), "winsz")
    try:
        reader = CtlReader(
            ctl, lambda c, r: sizes.append((c, r)), lambda: reopened.append(True), log
        )
        reader.feed(b"1 30 100\n2 0 0\n0 0 0\n9 1 1\n")
        assert sizes == [(100, 30)] and reopened == [True]
        WinszReader(winsz, lambda c, r: sizes.append((c, r)), log).feed(b"40 120\n")
        assert sizes[-1] == (120, 40)
        again = make_fifo(str(tmp_path), "ctl")  # an old FIFO is replaced, as conmon's
        os.close(again)
    finally:
        os.close(ctl)
        os.close(winsz)


def test_the_harness_notices_a_monitor_that_outlives_its_container(tmp_path: Path) -> None:
    pm = PrivatePodman()
    fake = subprocess.Popen(["sleep", "1000"])
    try:
        piddir = pm.runroot / "vfs-containers" / "x" / "userdata"
        piddir.mkdir(parents=True)
        (piddir / "conmon.pid").write_text(str(fake.pid))
        pm.container_ids = lambda: []  # type: ignore[method-assign]
        assert pm.remove_all(timeout=0.1) == [fake.pid]
        fake.wait(timeout=10)
        assert not alive(fake.pid)
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()
        shutil.rmtree(pm.base)


@pytest.mark.parametrize("size", [0, 1, 8192])
def test_broadcast_sizes(tmp_path: Path, size: int) -> None:
    loop, rec = Loop(), Recorder()
    srv = server(tmp_path, loop, rec)
    c = client(tmp_path)
    spin(loop, lambda: srv.clients)
    srv.broadcast(STDOUT, b"y" * size)
    assert c.recv(8193) == b"\x02" + b"y" * size
    srv.close()
    c.close()
    loop.close()


@pytest.mark.parametrize("size", [10, 200_000])
def test_an_edge_output_reads_a_pty_to_its_end(size: int) -> None:
    """A pty master's ``Output`` is edge-triggered: the slave's last close wakes the loop
    once, so the reads go on past short ones to EIO (shell/loop.py ``drained``). 200 kB
    are more than the pty holds: the child writes them while the loop reads."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    sent = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    code = "import os, sys; os.write(1, sys.stdin.buffer.read())"  # one write, then exit
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=slave)
    os.close(slave)
    assert writer.stdin is not None
    writer.stdin.write(sent)
    writer.stdin.close()
    if size < 4096:  # the pty holds it all: bytes and hangup come as one wake-up
        writer.wait(30)
    loop = Loop()
    got = bytearray()
    ended: list[Output] = []

    def end(output: Output) -> None:
        ended.append(output)
        loop.stop()

    try:
        out = Output(loop, master, "stdout", STDOUT, lambda o, data: got.extend(data), end, True)
        out.start()
        loop.call_later(10, loop.stop)  # a stall ends the wait, and the test fails
        loop.run()
    finally:
        loop.close()
        os.close(master)
        writer.wait(30)
    assert ended == [out] and bytes(got) == sent
