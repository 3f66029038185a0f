"""Scenario 6: how long a raw ttrpc ``State`` call waits, N containers in one shim, one streaming.

For each grouped subject (one shim for all its containers: runc-v2 grouped, epollshim-v2
grouped), N - 1 idle ``sleep`` containers are started once and stay up through the whole
scenario (both subjects' at the same time). We connect to the shim's socket (the ``address``
file containerd's bundle holds) with our own ttrpc client (``epollshim.tools.ttrpc_client``),
as containerd does, and time ``State`` calls for the idle containers in turn: from sending the
request to having the whole reply, one call at a time, ``PACE`` apart.

Modes, each a batch of calls per subject per round (subjects alternating, order reversed
every other round):

* ``quiet``: nothing else happens (N - 1 containers in the shim);
* ``pipe``: the N-th container, ``ctr run --rm`` in the same group, runs ``dd if=/dev/zero``
  into its stdout, which ctr passes on to a pipe we drain with ``cat`` (epollshim gives the
  container the FIFO itself, so its shim moves no byte; runc-v2's copies every one);
* ``tty``: the same with ``ctr run -t`` on a pty of ours: the shim relays the container's pty.

The streamer's rate during the batch (bytes ``cat`` read, from /proc/PID/io) is reported in
the notes: it shows the stream really ran while the calls were timed. Each batch gives a p50
and a p99; the table shows the median over the rounds of each, with their spread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from typing import Any

from bench.common import (
    EPOLL_V2_GROUPED,
    RUNC_V2_GROUPED,
    BenchError,
    Cell,
    alive,
    kill_pid,
    log,
    new_id,
)
from bench.stats import percentile
from bench.subjects import Context, CtrSubject
from bench.throughput import dd_command

MODES = ("quiet", "pipe", "tty")
SUBJECTS = (RUNC_V2_GROUPED, EPOLL_V2_GROUPED)
PACE = 0.002  # seconds between the reply to one call and the next request
WARM_UP = 10  # calls at the start of each batch that are not counted
STREAM = 1 << 40  # bytes asked of dd: it streams until killed
TASKS_DIR = "io.containerd.runtime.v2.task"


def _address(ctx: Context, cid: str) -> str:
    path = os.path.join(ctx.ctd.state, TASKS_DIR, ctx.ctd.namespace, cid, "address")
    with open(path) as f:
        address = f.read().strip()
    if not address.startswith("unix://"):
        raise BenchError(f"unexpected shim address {address!r}")
    return address.removeprefix("unix://")


class _Shim:
    """One grouped subject: its idle containers and a ttrpc connection to its one shim."""

    def __init__(self, ctx: Context, name: str, idle: int) -> None:
        from epollshim.tools.ttrpc_client import ShimConnection

        self.ctx = ctx
        self.s = CtrSubject(ctx, name)
        self.ids: list[str] = []
        self.conn: ShimConnection | None = None
        began = time.monotonic()
        try:
            self.ids = self.s.start_idle(idle)
            addresses = {_address(ctx, cid) for cid in self.ids}
            if len(addresses) != 1:
                raise BenchError(f"{idle} containers are served by {len(addresses)} shims")
            self.conn = ShimConnection(addresses.pop(), timeout=30)
        except BaseException:
            self.close()
            raise
        log(f"state {name}: {idle} idle containers in one shim ({time.monotonic() - began:.0f} s)")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.s.stop_idle(self.ids)

    def batch(self, calls: int) -> list[float]:
        """Seconds per State call, ``calls`` of them after ``WARM_UP`` uncounted ones."""
        from epollshim.v2.messages import StateRequest, StateResponse, TaskStatus

        assert self.conn is not None
        took: list[float] = []
        for i in range(WARM_UP + calls):
            cid = self.ids[i % len(self.ids)]
            began = time.perf_counter()
            reply = self.conn.call("State", StateRequest(id=cid))
            dt = time.perf_counter() - began
            state = reply.result(StateResponse)  # raises on an error reply
            if state.status != TaskStatus.RUNNING:
                raise BenchError(f"State {cid}: status {state.status}, not RUNNING")
            if i >= WARM_UP:
                took.append(dt)
            time.sleep(PACE)
        return took


class _Streamer:
    """``ctr run --rm [-t]`` of an endless dd in the subject's group, drained by ``cat``."""

    def __init__(self, s: CtrSubject, tty: bool) -> None:
        self.s = s
        self.cid = new_id("s")
        argv = s.ctr_argv(*s.run_args(self.cid, dd_command(STREAM), tty=tty))
        if tty:
            fd, other = pty.openpty()
            fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
            stdio: dict[str, Any] = {"stdin": other, "stdout": other, "stderr": other}
        else:
            fd, other = os.pipe()
            stdio = {"stdin": subprocess.DEVNULL, "stdout": other, "stderr": subprocess.DEVNULL}
        self.drain: subprocess.Popen[bytes] | None = None
        self.proc = subprocess.Popen(argv, start_new_session=True, **stdio)
        s.ctx.children.append(self.proc)
        os.close(other)
        try:
            ready, _, _ = select.select([fd], [], [], 30)
            if not ready or not os.read(fd, 1 << 16):
                raise BenchError("the streaming container wrote nothing within 30 s")
            self.drain = subprocess.Popen(
                ["cat"], stdin=fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            s.ctx.children.append(self.drain)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(fd)

    def read_bytes(self) -> int:
        """Bytes the drain has read so far (``rchar`` of /proc/PID/io)."""
        assert self.drain is not None
        with open(f"/proc/{self.drain.pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        raise BenchError("no rchar in /proc/PID/io")

    def stop(self) -> None:
        self.s.ctr("task", "kill", "-s", "SIGKILL", self.cid, timeout=30)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_pid(self.proc.pid)
            self.proc.wait()
        if self.drain is not None:
            try:
                self.drain.wait(timeout=10)  # EOF (pipe) or EIO (pty) once ctr is gone
            except subprocess.TimeoutExpired:
                kill_pid(self.drain.pid)
                self.drain.wait()
        # ctr run --rm deletes the container after the exit; make sure of it
        self.s.ctr("task", "delete", "--force", self.cid, timeout=30)
        self.s.ctr("containers", "delete", self.cid, timeout=30)
        if alive(self.proc.pid):
            kill_pid(self.proc.pid)


def _measure(shim: _Shim, mode: str, calls: int) -> tuple[list[float], float]:
    """(seconds per call, the stream's MB/s over the batch, 0 when quiet)."""
    if mode == "quiet":
        return shim.batch(calls), 0.0
    streamer = _Streamer(shim.s, tty=mode == "tty")
    try:
        b0, t0 = streamer.read_bytes(), time.monotonic()
        took = shim.batch(calls)
        b1, t1 = streamer.read_bytes(), time.monotonic()
        if not alive(streamer.proc.pid):
            raise BenchError("the streaming container ended during the batch")
        return took, (b1 - b0) / (t1 - t0) / 1e6
    finally:
        streamer.stop()


def run(
    ctx: Context, containers: int, rounds: int, calls: int, names: tuple[str, ...] = SUBJECTS
) -> dict[tuple[str, str], dict[str, Any]]:
    """{(subject, mode): {"p50": Cell ms, "p99": Cell ms, "rate": [MB/s], "errors": [...]}}."""
    keys = [(name, mode) for mode in MODES for name in names]
    p50: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    p99: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    rate: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    errors: dict[tuple[str, str], list[str]] = {k: [] for k in keys}
    shims: dict[str, _Shim] = {}
    try:
        for name in names:
            try:
                shims[name] = _Shim(ctx, name, containers - 1)
            except Exception as e:
                for mode in MODES:
                    errors[(name, mode)].append(Cell.failed(e).error)
                log(f"state {name}: n/a ({errors[(name, MODES[0])][-1]})")
        for r in range(rounds):
            for key in keys if r % 2 == 0 else reversed(keys):
                name, mode = key
                if name not in shims or len(errors[key]) >= 2:
                    continue
                try:
                    took, mbs = _measure(shims[name], mode, calls)
                except Exception as e:
                    errors[key].append(Cell.failed(e).error)
                    log(f"state {name} {mode}: n/a ({errors[key][-1]})")
                    continue
                ms = [t * 1000 for t in took]
                p50[key].append(percentile(ms, 50))
                p99[key].append(percentile(ms, 99))
                rate[key].append(mbs)
                streamed = f", stream {mbs:.0f} MB/s" if mode != "quiet" else ""
                log(
                    f"state {name} {mode}: p50 {p50[key][-1]:.3f} ms, "
                    f"p99 {p99[key][-1]:.3f} ms{streamed}"
                )
    finally:
        for shim in shims.values():
            with contextlib.suppress(Exception):
                shim.close()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        if p50[key]:
            out[key] = {
                "p50": Cell.of(p50[key]),
                "p99": Cell.of(p99[key]),
                "rate": rate[key],
                "errors": errors[key],
            }
        else:
            err = errors[key][-1] if errors[key] else "not run"
            out[key] = {"p50": Cell(error=err), "p99": Cell(error=err), "rate": [], "errors": []}
    return out
