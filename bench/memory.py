"""Scenario 1: private memory per container with N idle containers.

For each subject, start N ``sleep 3600`` containers, let the shims settle, then sum RssAnon
(/proc/PID/status) and Pss (/proc/PID/smaps_rollup) over the shim processes serving them and
divide by N. Only the shims are counted: not containerd, not ctr or our supervisor, not runc
(gone once the container runs), not the containers. Subjects run one after another, in
alternating order over the rounds, with nothing else of ours running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    CONMON,
    EPOLL_V2,
    EPOLL_V2_GROUPED,
    RUNC_V2,
    RUNC_V2_GROUPED,
    SEED,
    BenchError,
    Cell,
    log,
    pss_kb,
    status_kb,
)
from bench.subjects import IDLE, ConmonSubject, Context, CtrSubject, SeedSubject

SUBJECTS = (RUNC_V2, EPOLL_V2, RUNC_V2_GROUPED, EPOLL_V2_GROUPED, CONMON, SEED)
SETTLE = 1.0  # seconds between the last start and the reading


def _measure(pids: list[int], n: int) -> tuple[float, float, int]:
    if not pids:
        raise BenchError("no shim process found")
    anon = sum(status_kb(p, "RssAnon") for p in pids)
    pss = sum(pss_kb(p) for p in pids)
    return anon / n / 1024, pss / n / 1024, len(pids)


def _ctr_round(ctx: Context, name: str, n: int) -> tuple[float, float, int]:
    s = CtrSubject(ctx, name)
    s.check()
    if s.shim_pids():
        raise BenchError("shims of an earlier round are still running")
    ids = s.start_idle(n)
    try:
        time.sleep(SETTLE)
        return _measure(s.shim_pids(), n)
    finally:
        s.stop_idle(ids)


def _direct_round(
    subject: SeedSubject | ConmonSubject, pid_of: Callable[[Any], int], n: int
) -> tuple[float, float, int]:
    """n idle containers through a shim we start ourselves (seed form, conmon)."""
    started = []
    try:
        for _ in range(n):
            started.append(subject.start(IDLE))
        time.sleep(SETTLE)
        return _measure([pid_of(c) for c in started], n)
    finally:
        for c in started:
            subject.stop(c)


def run(ctx: Context, n: int, rounds: int, subjects: tuple[str, ...] = SUBJECTS) -> dict[str, dict]:
    """{subject: {"anon": Cell MB/container, "pss": Cell, "shims": count}}."""
    rounders: dict[str, Callable[[], tuple[float, float, int]]] = {
        CONMON: lambda: _direct_round(ConmonSubject(ctx), lambda c: c.pid, n),
        SEED: lambda: _direct_round(SeedSubject(ctx), lambda c: c.shim_pid, n),
    }
    for name in (RUNC_V2, EPOLL_V2, RUNC_V2_GROUPED, EPOLL_V2_GROUPED):
        rounders[name] = lambda name=name: _ctr_round(ctx, name, n)
    samples: dict[str, list[tuple[float, float, int]]] = {s: [] for s in subjects}
    errors: dict[str, str] = {}
    for r in range(rounds):
        order = subjects if r % 2 == 0 else tuple(reversed(subjects))
        for name in order:
            if name in errors:
                continue
            try:
                samples[name].append(rounders[name]())
                a, p, k = samples[name][-1]
                log(f"memory {name}: {a:.2f} MB anon, {p:.2f} MB pss per container ({k} shims)")
            except Exception as e:
                errors[name] = Cell.failed(e).error
                log(f"memory {name}: n/a ({errors[name]})")
    out: dict[str, dict] = {}
    for name in subjects:
        if name in errors and not samples[name]:
            out[name] = {"anon": Cell(error=errors[name]), "pss": Cell(error=errors[name])}
            continue
        out[name] = {
            "anon": Cell.of(a for a, _, _ in samples[name]),
            "pss": Cell.of(p for _, p, _ in samples[name]),
            "shims": max(k for _, _, k in samples[name]),
        }
    return out
