"""Scenario 1: private memory per container with N = 1, 10, 100 idle containers.

For each subject, start ``sleep 3600`` containers one after another, and each time the count
reaches one of the N asked for, let the shims settle and read RssAnon (/proc/PID/status) and
Pss (/proc/PID/smaps_rollup) of the shim processes serving them. Only the shims are counted:
not containerd, not ctr or our supervisor, not runc (gone once the container runs), not the
containers. Subjects run one after another, in alternating order over the rounds, with
nothing else of ours running; each ends its containers before the next starts.

Samples (each figure is their median, see bench/README.md for the verdict rule):

* one shim per container (runc-v2, epollshim-v2, conmon, the seed form): every shim is a
  sample, its own RssAnon and Pss being that container's cost. One round at N already gives
  N samples, so a later round goes only as far as the counts that still have fewer than
  ``ENOUGH`` samples (N = 1 is measured every round, N = 100 once);
* one shim for all (the grouped subjects): the shim's total / N, one sample per round, so they
  reach the largest N in every round.

Pss shares each page among the processes that map it, so it falls as N grows (one copy of the
interpreter's or the Go binary's text among more shims) and it moves when other processes on
the machine map the same files (other Python processes, other Go shims).
"""

from __future__ import annotations

import functools
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
GROUPED = (RUNC_V2_GROUPED, EPOLL_V2_GROUPED)
DIRECT = (CONMON, SEED)  # information rows: measured only up to DIRECT_MAX containers
DIRECT_MAX = 10
ENOUGH = 20  # per-shim samples at one N after which later rounds stop short of that N
SETTLE = 1.0  # seconds between reaching a count and reading the shims

Sample = tuple[list[float], list[float], int]  # anon MB, pss MB (per sample), shims counted


def _read(pids: list[int], n: int, grouped: bool) -> Sample:
    if not pids:
        raise BenchError("no shim process found")
    anon = [status_kb(p, "RssAnon") / 1024 for p in pids]
    pss = [pss_kb(p) / 1024 for p in pids]
    if grouped:
        return [sum(anon) / n], [sum(pss) / n], len(pids)
    if len(pids) != n:
        raise BenchError(f"{len(pids)} shims for {n} containers")
    return anon, pss, len(pids)


class _Ctr:
    """Containers through containerd; ``grow(n)`` starts containers until there are n."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.s = CtrSubject(ctx, name)
        self.s.check()
        if self.s.shim_pids():
            raise BenchError("shims of an earlier round are still running")
        self.grouped = name in GROUPED
        self.ids: list[str] = []

    def grow(self, n: int) -> list[int]:
        self.ids += self.s.start_idle(n - len(self.ids))
        return self.s.shim_pids()

    def close(self) -> None:
        self.s.stop_idle(self.ids)


class _Direct:
    """Shims we start ourselves (seed form, conmon), one per container."""

    grouped = False

    def __init__(self, subject: SeedSubject | ConmonSubject, pid_of: Callable[[Any], int]) -> None:
        self.subject = subject
        self.pid_of = pid_of
        self.started: list[Any] = []

    def grow(self, n: int) -> list[int]:
        while len(self.started) < n:
            self.started.append(self.subject.start(IDLE))
        return [self.pid_of(c) for c in self.started]

    def close(self) -> None:
        for c in self.started:
            self.subject.stop(c)


def _counts_for(
    name: str, counts: list[int], r: int, have: dict[tuple[str, int], Sample]
) -> list[int]:
    """The counts subject ``name`` is read at in round r (ascending)."""
    todo = [n for n in counts if name not in DIRECT or n <= DIRECT_MAX]
    if name in GROUPED or r == 0:
        return todo
    return [n for n in todo if len(have[(name, n)][0]) < ENOUGH]


def run(
    ctx: Context, counts: list[int], rounds: int, subjects: tuple[str, ...] = SUBJECTS
) -> dict[tuple[str, int], dict[str, Any]]:
    """{(subject, N): {"anon": Cell MB/container, "pss": Cell, "shims": count}}."""
    counts = sorted(set(counts))
    makers: dict[str, Callable[[], _Ctr | _Direct]] = {
        CONMON: lambda: _Direct(ConmonSubject(ctx), lambda c: c.pid),
        SEED: lambda: _Direct(SeedSubject(ctx), lambda c: c.shim_pid),
    }
    for name in (RUNC_V2, EPOLL_V2, RUNC_V2_GROUPED, EPOLL_V2_GROUPED):
        makers[name] = functools.partial(_Ctr, ctx, name)
    have: dict[tuple[str, int], Sample] = {(s, n): ([], [], 0) for s in subjects for n in counts}
    errors: dict[str, str] = {}
    for r in range(rounds):
        order = subjects if r % 2 == 0 else tuple(reversed(subjects))
        for name in order:
            todo = _counts_for(name, counts, r, have)
            if name in errors or not todo:
                continue
            began = time.monotonic()
            try:
                subject = makers[name]()
                try:
                    for n in todo:
                        pids = subject.grow(n)
                        time.sleep(SETTLE)
                        anon, pss, k = _read(pids, n, subject.grouped)
                        a, p, _ = have[(name, n)]
                        have[(name, n)] = (a + anon, p + pss, max(k, have[(name, n)][2]))
                        log(
                            f"memory {name} N={n}: {sum(anon) / len(anon):.2f} MB anon, "
                            f"{sum(pss) / len(pss):.2f} MB pss per container ({k} shims)"
                        )
                finally:
                    subject.close()
            except Exception as e:
                errors[name] = Cell.failed(e).error
                log(f"memory {name}: n/a ({errors[name]})")
            log(f"memory {name}: round {r + 1} took {time.monotonic() - began:.0f} s")
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for (name, n), (anon, pss, k) in have.items():
        if not anon:
            err = errors.get(name, "not measured")
            out[(name, n)] = {"anon": Cell(error=err), "pss": Cell(error=err)}
            continue
        out[(name, n)] = {"anon": Cell.of(anon), "pss": Cell.of(pss), "shims": k}
    return out
