"""Scenario 3: stdout throughput, non-tty and tty, and the shim's CPU seconds per GiB.

The container runs ``dd if=/dev/zero bs=1M count=1024`` (1 GiB, 1 MiB writes).

* containerd subjects: ``ctr run --rm [-t]``; ctr's stdout is a pipe we splice to /dev/null
  (non-tty) or a pty whose master we read (tty: ``ctr -t`` insists on a terminal). Path:
  container -> pipe or pty -> shim -> FIFO -> ctr -> us.
* ``epollshim seed``: ``epollshim run [--tty]`` with its stdout a pipe to us. Non-tty, the
  container writes straight into the stdout FIFO (the seed protocol hands the FIFO over; the
  shim moves no byte); tty, the shim copies pty master -> FIFO.
* ``conmon``: the container's pipe or pty -> conmon -> a ``k8s-file`` log on tmpfs; progress is
  the log's size (its ~0.5% framing makes it reach 1 GiB a little early).
* ``file`` mode, v2 subjects only: ``ctr run --rm --log-uri file://LOG`` with LOG on tmpfs, so
  the shim itself copies the container's pipes into the file (ctr moves nothing); progress is
  the file's size.

Rate and CPU are taken between the first byte seen and the last: rate = bytes / time, CPU =
delta of utime+stime (/proc/PID/stat, all threads) of the shim process over the same span,
read while it still runs. Start-up and tear-down are outside both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    CONMON,
    EPOLL_V2,
    GIB,
    MB,
    RUNC_V2,
    SEED,
    BenchError,
    Cell,
    cpu_seconds,
    log,
    new_id,
)
from bench.subjects import ConmonSubject, Context, CtrSubject, SeedSubject

MODES = ("pipe", "tty", "file")
FILE_SUBJECTS = (RUNC_V2, EPOLL_V2)  # file:// is a runtime v2 stdio URI


def dd_command(size: int) -> list[str]:
    return ["sh", "-c", f"dd if=/dev/zero bs=1048576 count={size >> 20} 2>/dev/null"]


class Span:
    """First-byte to last-byte bookkeeping: bytes, seconds, shim CPU seconds."""

    def __init__(self, total: int, shim_pid: Callable[[], int]) -> None:
        self.total = total
        self.shim_pid = shim_pid
        self.got = 0
        self.pid = 0
        self.t0 = self.cpu0 = self.t_last = 0.0
        self.b0 = 0
        self.lost = 0  # bytes that never arrived (the output ended early)

    def add(self, n: int) -> bool:
        """Count n more bytes; True once the total has arrived."""
        self.got += n
        self.t_last = time.monotonic()
        if not self.pid:
            self.pid = self.shim_pid()
            self.cpu0 = cpu_seconds(self.pid)
            self.t0 = time.monotonic()
            self.b0 = self.got
        if self.got < self.total:
            return False
        self.t1 = time.monotonic()
        self.cpu1 = cpu_seconds(self.pid)
        return True

    def ended_early(self) -> bool:
        """EOF before the total: keep the run if most of it came (some shims lose the tail)."""
        if not self.pid or self.got < self.total * 0.9:
            return False
        self.lost = self.total - self.got
        self.t1 = self.t_last
        try:
            self.cpu1 = cpu_seconds(self.pid)
        except OSError:  # the shim has ended already: its last CPU reading is gone
            return False
        return True

    def result(self) -> tuple[float, float]:
        moved = self.got - self.b0
        if moved <= 0 or self.t1 <= self.t0:
            raise BenchError("nothing measured")
        return moved / (self.t1 - self.t0) / MB, (self.cpu1 - self.cpu0) / moved * GIB


def _drain(fd: int, span: Span, use_splice: bool) -> None:
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        while True:
            try:
                n = os.splice(fd, sink, 1 << 20) if use_splice else len(os.read(fd, 1 << 20))
            except OSError:  # EIO: a pty master whose slave side is gone
                n = 0
            if n == 0:
                if span.ended_early():
                    return
                raise BenchError(f"output ended after {span.got} of {span.total} bytes")
            if span.add(n):
                return
    finally:
        os.close(sink)


def _finish(proc: subprocess.Popen[bytes], fd: int) -> None:
    """Read whatever is left until EOF, then reap the client."""
    with contextlib.suppress(OSError):
        while os.read(fd, 1 << 20):
            pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ctr_once(s: CtrSubject, tty: bool, size: int) -> tuple[float, float, int]:
    cid = new_id("t")
    argv = s.ctr_argv(*s.run_args(cid, dd_command(size), tty=tty))
    if tty:
        fd, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        stdio = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        fd, slave = os.pipe()
        stdio = {"stdin": subprocess.DEVNULL, "stdout": slave, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(argv, start_new_session=True, **stdio)  # type: ignore[call-overload]
    os.close(slave)
    try:
        span = Span(size, lambda: s.shim_of(cid))
        _drain(fd, span, use_splice=not tty)
        _finish(proc, fd)
        if proc.returncode != 0:
            raise BenchError(f"ctr run exited with {proc.returncode}")
        return (*span.result(), span.lost)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(fd)
        s.ctr("task", "delete", "--force", cid)
        s.ctr("containers", "delete", cid)


def seed_once(s: SeedSubject, tty: bool, size: int) -> tuple[float, float, int]:
    r, w = os.pipe()
    try:
        c = s.start(dd_command(size), tty=tty, stdout=w)
    finally:
        os.close(w)
    try:
        span = Span(size, lambda: c.shim_pid)
        _drain(r, span, use_splice=True)
        _finish(c.proc, r)
        return (*span.result(), span.lost)
    finally:
        os.close(r)
        s.stop(c)


def _follow(path: str, span: Span) -> tuple[float, float, int]:
    """Watch the file at ``path`` grow until ``span`` has its total (120 s at most)."""
    deadline = time.monotonic() + 120
    last = 0
    while time.monotonic() < deadline:
        try:
            now = os.stat(path).st_size
        except FileNotFoundError:
            now = 0
        if now > last and span.add(now - last):
            return (*span.result(), 0)
        last = now
        time.sleep(0.002)
    raise BenchError(f"the log reached only {last} bytes")


def conmon_once(s: ConmonSubject, tty: bool, size: int) -> tuple[float, float, int]:
    c = s.start(dd_command(size), tty=tty)
    try:
        return _follow(c.log, Span(size, lambda: c.pid))
    finally:
        s.stop(c)


def file_once(s: CtrSubject, size: int, log_dir: str = "/dev/shm") -> tuple[float, float, int]:
    """``ctr run --rm --log-uri file://`` into a file on tmpfs (its disk cost is not compared)."""
    cid = new_id("f")
    path = os.path.join(log_dir, f"{os.path.basename(s.ctx.work)}-{cid}.log")
    args = s.run_args(cid, dd_command(size))
    at = args.index(s.ctx.image)
    argv = s.ctr_argv(*args[:at], "--log-uri", f"file://{path}", *args[at:])
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        result = _follow(path, Span(size, lambda: s.shim_of(cid)))
        if proc.wait(timeout=60) != 0:
            raise BenchError(f"ctr run exited with {proc.returncode}")
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        s.ctr("task", "delete", "--force", cid)
        s.ctr("containers", "delete", cid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def run(
    ctx: Context,
    names: tuple[str, ...],
    rounds: int,
    sizes: dict[str, int],
    modes: tuple[str, ...] = MODES,
) -> dict[tuple[str, str], dict[str, Any]]:
    """{(subject, mode): {"rate": Cell MB/s, "cpu": Cell CPU s/GiB, "lost": [bytes], "errors"}}.

    A run whose output ends early but after 90% of it still counts (rate and CPU over what
    arrived); the missing bytes are reported, since losing output is a finding in itself.

    ``sizes``: bytes per run for each mode (a pty moves ~30-70 MB/s here, so tty runs are
    shorter than pipe runs; CPU is reported per GiB either way).
    """

    def once(name: str, mode: str) -> tuple[float, float, int]:
        tty = mode == "tty"
        size = sizes[mode]
        if mode == "file":
            return file_once(CtrSubject(ctx, name), size)
        if name == SEED:
            return seed_once(SeedSubject(ctx), tty, size)
        if name == CONMON:
            return conmon_once(ConmonSubject(ctx), tty, size)
        return ctr_once(CtrSubject(ctx, name), tty, size)

    keys = [
        (name, mode) for mode in modes for name in names if mode != "file" or name in FILE_SUBJECTS
    ]
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {k: [] for k in keys}
    errors: dict[tuple[str, str], list[str]] = {k: [] for k in keys}
    for r in range(rounds):
        for key in keys if r % 2 == 0 else reversed(keys):
            if len(errors[key]) >= 2:  # failed twice: stop spending time on it
                continue
            try:
                samples[key].append(once(*key))
                rate, cpu, lost = samples[key][-1]
                short = f" (output short by {lost} bytes)" if lost else ""
                log(f"throughput {key[0]} {key[1]}: {rate:.0f} MB/s, {cpu:.2f} CPU s/GiB{short}")
            except Exception as e:
                errors[key].append(Cell.failed(e).error)
                log(f"throughput {key[0]} {key[1]}: n/a ({errors[key][-1]})")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        got = samples[key]
        if got:
            out[key] = {
                "rate": Cell.of(x for x, _, _ in got),
                "cpu": Cell.of(y for _, y, _ in got),
                "lost": [z for _, _, z in got],
                "errors": errors[key],
            }
        else:
            err = errors[key][-1] if errors[key] else "not run"
            out[key] = {"rate": Cell(error=err), "cpu": Cell(error=err), "lost": [], "errors": []}
    return out
