"""Scenarios 2, 5 and 5b: start, exit and kill latency through containerd.

* Start: wall time of ``ctr run --rm --runtime R IMAGE ID true`` (ctr's own start-up, the
  shim's ``start``, create/start, the exit, the delete and the container removal), median of
  N, subjects alternating run by run after one warm-up run each.
* Exit: ``ctr run IMAGE ID sleep 1``; we find the container's init (the ``sleep`` child of
  the shim, a subreaper), open a pidfd on it and time from the pidfd turning readable (the
  kernel's word that the process exited: exact, no clock shared with the container needed)
  to ``ctr run`` returning (containerd's TaskExit event, Wait answered, task deleted).
  The container record is removed afterwards, outside the timing.
* Kill: ``ctr run IMAGE ID sleep 600``; once its init runs, the time from spawning
  ``ctr task kill --signal SIGKILL ID`` to ``ctr run`` returning (137): ctr's start-up,
  containerd's Kill to the shim, the shim's ``runc kill``, the reap, TaskExit, Wait and
  the task's delete. The ``ctr task kill`` process is the same binary for both shims.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

from bench.common import BenchError, Cell, children_named, log, new_id, wait_for
from bench.subjects import Context, CtrSubject


def _start_once(s: CtrSubject) -> float:
    cid = new_id("l")
    argv = s.ctr_argv(*s.run_args(cid, ["true"]))
    began = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - began
    if r.returncode != 0:
        s.ctr("task", "delete", "--force", cid)
        s.ctr("containers", "delete", cid)
        raise BenchError(f"ctr run: {r.stderr.strip() or r.returncode}")
    return took


def _exit_once(s: CtrSubject) -> float:
    return _until_returned(s, "x", ["sleep", "1"], None)


def _kill_once(s: CtrSubject) -> float:
    return _until_returned(s, "k", ["sleep", "600"], ["task", "kill", "--signal", "SIGKILL"])


def _until_returned(s: CtrSubject, prefix: str, argv: list[str], kill: list[str] | None) -> float:
    """Time from the container's exit (natural: ``kill`` None) or from spawning
    ``ctr KILL... ID`` to ``ctr run`` returning with the container's status."""
    cid = new_id(prefix)
    run = s.ctr_argv(*s.run_args(cid, argv, rm=False))
    proc = subprocess.Popen(
        run, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        shim = s.shim_of(cid)
        name = argv[0]
        init = wait_for(f"the container's {name}", lambda: children_named(shim, name), 5)[0]
        if kill is None:
            fd = os.pidfd_open(init)
            try:
                p = select.poll()
                p.register(fd, select.POLLIN)
                if not p.poll(10_000):
                    raise BenchError("the container did not exit within 10 s")
                began = time.monotonic()
            finally:
                os.close(fd)
            expected = 0
        else:
            began = time.monotonic()
            killer = s.ctr(*kill, cid, timeout=30)
            if killer.returncode != 0:
                raise BenchError(f"ctr {' '.join(kill)}: {killer.stderr.strip()}")
            expected = 128 + 9
        proc.wait(timeout=30)
        returned = time.monotonic()
        if proc.returncode != expected:
            assert proc.stderr is not None
            err = proc.stderr.read().decode().strip()
            raise BenchError(f"ctr run: exit {proc.returncode}, not {expected}: {err}")
        return returned - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        s.ctr("task", "delete", "--force", cid)
        s.ctr("containers", "delete", cid)


def _alternate(ctx: Context, names: tuple[str, ...], n: int, once, what: str) -> dict[str, Cell]:  # type: ignore[no-untyped-def]
    subjects = {name: CtrSubject(ctx, name) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for i in range(n + 1):  # round 0 is the warm-up
        order = names if i % 2 == 0 else tuple(reversed(names))
        for name in order:
            if name in errors:
                continue
            try:
                t = once(subjects[name])
            except Exception as e:
                errors[name] = Cell.failed(e).error
                log(f"{what} {name}: n/a ({errors[name]})")
                continue
            if i:
                samples[name].append(t)
    out = {}
    for name in names:
        out[name] = Cell.of(samples[name]) if samples[name] else Cell(error=errors[name])
        value = out[name].value
        if value is not None:
            log(f"{what} {name}: median {value * 1000:.1f} ms of {n}")
    return out


def start_latency(ctx: Context, names: tuple[str, ...], n: int) -> dict[str, Cell]:
    return _alternate(ctx, names, n, _start_once, "start")


def exit_latency(ctx: Context, names: tuple[str, ...], n: int) -> dict[str, Cell]:
    return _alternate(ctx, names, n, _exit_once, "exit")


def kill_latency(ctx: Context, names: tuple[str, ...], n: int) -> dict[str, Cell]:
    return _alternate(ctx, names, n, _kill_once, "kill")
