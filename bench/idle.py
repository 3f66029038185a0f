"""Scenario 4: how often an idle shim wakes up.

One ``sleep 3600`` container per subject, all started together and watched over the same
windows: after a short settle, the sum of voluntary + involuntary context switches over all
threads of the shim (/proc/PID/task/*/status) is read at the start and at the end of each of
``WINDOWS`` consecutive windows. Each switch is one wake-up (or a preemption while awake); a
shim with no timers makes none. Every window is a sample, so the figure has a spread.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import CONMON, SEED, BenchError, Cell, context_switches, log, threads
from bench.subjects import IDLE, ConmonSubject, Context, CtrSubject, SeedSubject

SETTLE = 2.0
WINDOWS = 6


def run(ctx: Context, names: tuple[str, ...], seconds: float) -> dict[str, dict[str, Any]]:
    """{subject: {"wakeups": Cell (the total; samples: each window's), "threads": int}}."""
    pids: dict[str, int] = {}
    errors: dict[str, str] = {}
    stops: list[Any] = []
    try:
        for name in names:
            try:
                if name == SEED:
                    seed = SeedSubject(ctx)
                    c = seed.start(IDLE)
                    stops.append(lambda seed=seed, c=c: seed.stop(c))
                    pids[name] = c.shim_pid
                elif name == CONMON:
                    cm = ConmonSubject(ctx)
                    k = cm.start(IDLE)
                    stops.append(lambda cm=cm, k=k: cm.stop(k))
                    pids[name] = k.pid
                else:
                    s = CtrSubject(ctx, name)
                    ids = s.start_idle(1)
                    stops.append(lambda s=s, ids=ids: s.stop_idle(ids))
                    pids[name] = s.shim_of(ids[0])
            except Exception as e:
                errors[name] = Cell.failed(e).error
                log(f"idle {name}: n/a ({errors[name]})")
        time.sleep(SETTLE)
        counts: dict[str, list[int]] = {name: [] for name in pids}
        before: dict[str, int] = {}
        for name, pid in pids.items():
            try:
                before[name] = context_switches(pid)
            except OSError:  # one subject's shim died: the others are still measured
                errors[name] = "the shim ended before the first window"
        for _ in range(WINDOWS):
            time.sleep(seconds / WINDOWS)
            for name, pid in pids.items():
                if name in errors:
                    continue
                try:
                    now = context_switches(pid)
                except OSError:
                    errors[name] = "the shim ended during the window"
                    continue
                counts[name].append(now - before[name])
                before[name] = now
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            got = counts.get(name, [])
            if name not in errors and len(got) == WINDOWS:
                # the figure is the total; the windows are its samples (a verdict of <= 0
                # needs every window at 0)
                total = sum(got)
                out[name] = {"wakeups": Cell(total, got), "threads": threads(pids[name])}
                log(f"idle {name}: {sum(got)} context switches in {seconds:g} s ({got})")
            else:
                out[name] = {"wakeups": Cell(error=errors.get(name, "not measured"))}
        return out
    finally:
        for stop in stops:
            try:
                stop()
            except (BenchError, OSError) as e:
                log(f"idle: clean-up: {e}")
