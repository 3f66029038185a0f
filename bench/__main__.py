"""``python -m bench``: epollshim next to containerd-shim-runc-v2 and conmon, as ratios.

  python -m bench [--quick] [--only memory,start,throughput,idle,exit,kill,state,podman] [--out DIR]
                  [--containers 1,10,100] [--state-containers 100] [--state-calls 400]
                  [--rounds start=20,exit=10,...] [--no-write]

Everything runs in one process, against a private containerd and a private runc root under one
work dir; at the end everything we started is ended by pid or container id and the dir is
removed. See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time

from bench import idle, latency, memory, podman, report, state, throughput
from bench.common import (
    CONMON,
    EPOLL_V2,
    EPOLL_V2_GROUPED,
    GIB,
    RUNC_V2,
    RUNC_V2_GROUPED,
    SEED,
    Cell,
    LoadWatch,
    all_pids,
    cmdline,
    kill_pid,
    log,
    median,
)
from bench.subjects import Context

SCENARIOS = ("memory", "start", "throughput", "idle", "exit", "kill", "state", "podman")
# Alternating rounds per scenario (memory: see bench/memory.py for what a round reads; idle has
# its windows instead); --quick uses the second table, --rounds overrides either. podman-*:
# the parts of the podman scenario (bench/podman.py); podman-version counts calls per monitor.
# state: 15, because a streaming batch's p50 moves with whatever else the machine runs (round
# ratios 0.8-1.7x in one run): the median's interval is the 4th to 12th of 15 round ratios
# (2nd to 8th of 9 before): the scenario took 159 s in a full run, 127 s with 9.
ROUNDS = {"memory": 3, "start": 20, "throughput": 3, "exit": 20, "kill": 20, "state": 15}
ROUNDS |= {"podman-memory": 2, "podman-run": 20, "podman-log": 5, "podman-version": 200}
QUICK_ROUNDS = {"memory": 3, "start": 5, "throughput": 1, "exit": 3, "kill": 3, "state": 3}
QUICK_ROUNDS |= {"podman-memory": 1, "podman-run": 5, "podman-log": 1, "podman-version": 50}
SHIM_SOCKETS = "/run/containerd/s"
HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller N, 5 s idle")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    p.add_argument(
        "--containers", help="memory: the container counts N (default 1,10,100; quick 1,10)"
    )
    p.add_argument(
        "--state-containers", type=int, help="state: containers in the shim (100; quick 20)"
    )
    p.add_argument("--state-calls", type=int, help="state: calls per batch (400; quick 100)")
    p.add_argument("--rounds", default="", help="per scenario, e.g. start=30,exit=20")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    unknown = only - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.only = [s for s in SCENARIOS if s in only]  # always in this order
    counts = args.containers or ("1,10" if args.quick else "1,10,100")
    try:
        args.containers = sorted({int(n) for n in counts.split(",") if n})
        rounds = dict(QUICK_ROUNDS if args.quick else ROUNDS)
        for item in filter(None, args.rounds.split(",")):
            name, _, n = item.partition("=")
            if name not in rounds:
                p.error(f"--rounds: no rounds for {name!r} (one of {', '.join(rounds)})")
            rounds[name] = int(n)
    except ValueError as e:
        p.error(str(e))
    if not args.containers or min(args.containers) < 1 or min(rounds.values()) < 1:
        p.error("container counts and rounds must be at least 1")
    args.rounds = rounds
    if args.state_containers is None:
        args.state_containers = 20 if args.quick else 100
    if args.state_calls is None:
        args.state_calls = 100 if args.quick else 400
    if args.state_containers < 2:
        p.error("--state-containers: at least 2 (one streams, the others are asked)")
    return args


def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("python -m bench: needs root (containerd, runc, conmon)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    began = time.monotonic()
    load = LoadWatch()
    code_before = report.source_version()
    ctx = Context(tempfile.mkdtemp(prefix="epollshim-bench-"), args.quick)
    results: dict[str, object] = {}
    try:
        if args.only != ["podman"]:  # podman alone needs no containerd
            try:
                ctx.start_containerd()
            except Exception as e:
                log(f"private containerd failed: {ctx.ctd_error or e}")
        results = measure(ctx, args)
    finally:
        log("cleaning up")
        cleanup(ctx)
        load.stop()
    rows, notes = build_rows(results, args)
    notes.append(f"run took {time.monotonic() - began:.0f} s{' (--quick)' if args.quick else ''}")
    notes.append(load_note(load, results.get("spans") or {}))  # type: ignore[arg-type]
    code_after = report.source_version()
    if code_after != code_before:
        notes.append(
            f"the code under test changed during the run: {code_before} at the start, "
            f"{code_after} at the end (the package is installed editable)"
        )
    print()
    print(report.text_table(rows))
    print()
    for n in notes:
        print(f"- {n}")
    if not args.no_write:
        write(rows, notes, args)
    return 0


def measure(ctx: Context, args: argparse.Namespace) -> dict[str, object]:
    quick, rounds = args.quick, args.rounds
    results: dict[str, object] = {}
    v2 = (RUNC_V2, EPOLL_V2)
    for scenario in args.only:
        began = time.monotonic()
        try:
            if scenario == "memory":
                results["memory"] = memory.run(ctx, args.containers, rounds["memory"])
            elif scenario == "start":
                results["start"] = latency.start_latency(ctx, v2, rounds["start"])
            elif scenario == "throughput":
                results["throughput"] = throughput.run(
                    ctx, (RUNC_V2, EPOLL_V2, CONMON, SEED), rounds["throughput"], sizes(quick)
                )
            elif scenario == "idle":
                watched = (RUNC_V2, EPOLL_V2, CONMON, SEED)
                results["idle"] = idle.run(ctx, watched, idle_seconds(quick))
            elif scenario == "exit":
                results["exit"] = latency.exit_latency(ctx, v2, rounds["exit"])
            elif scenario == "kill":
                results["kill"] = latency.kill_latency(ctx, v2, rounds["kill"])
            elif scenario == "state":
                results["state"] = state.run(
                    ctx, args.state_containers, rounds["state"], args.state_calls
                )
            elif scenario == "podman":
                results["podman"] = podman.run(ctx.work, rounds, podman_log_bytes(quick))
        except Exception as e:  # a scenario records its own errors; this is a bug in it
            log(f"{scenario}: failed: {type(e).__name__}: {e}")
        ended = time.monotonic()
        results.setdefault("spans", {})[scenario] = (began, ended)  # type: ignore[index]
        log(f"{scenario}: {ended - began:.0f} s")
    return results


def load_note(load: LoadWatch, spans: dict[str, tuple[float, float]]) -> str:
    """The 1-min load average over the run and per scenario (median, max) against the CPUs."""
    cpus = os.cpu_count() or 1
    every = [x for _, x in load.samples]
    if not every:
        return "no load average sampled"
    parts = []
    for name, (t0, t1) in spans.items():
        xs = load.between(t0, t1)
        if xs:
            parts.append(f"{name} {median(xs):.1f}/{max(xs):.1f}")
    busy = max(every) > cpus
    return (
        f"1-min load average over the run (sampled every 5 s), median/max: "
        f"{median(every):.1f}/{max(every):.1f} on {cpus} CPUs"
        + (f"; per scenario: {', '.join(parts)}" if parts else "")
        + (" (above the CPU count: other work shared the machine)" if busy else "")
    )


def idle_seconds(quick: bool) -> int:
    return 5 if quick else 30


def build_rows(results: dict, args: argparse.Namespace) -> tuple[list[report.Row], list[str]]:  # type: ignore[type-arg]
    R = report.Row
    rows: list[report.Row] = []
    notes: list[str] = []
    mem = results.get("memory")
    if mem:
        rows += _memory_rows(mem, args.containers)
        shims = {f"{k[0]} N={k[1]}": v.get("shims") for k, v in mem.items() if v.get("shims")}
        notes.append(f"memory: most shim processes counted at once: {shims}")
    start = results.get("start")
    if start:
        rows.append(_latency_row("start: ctr run --rm true", start, 1.05))
    tp = results.get("throughput")
    if tp:
        for mode in throughput.MODES:
            size = f"{sizes(args.quick)[mode] >> 20} MiB"
            pairs = ((EPOLL_V2, RUNC_V2, True), (SEED, CONMON, False))
            for ours, anchor, targeted in pairs if mode != "file" else pairs[:1]:
                rows.append(
                    R(
                        f"stdout {mode} {size}",
                        "MB/s",
                        ".0f",
                        ours,
                        tp[(ours, mode)]["rate"],
                        anchor,
                        tp[(anchor, mode)]["rate"],
                        ("ratio", 1.0, ">=") if targeted else None,
                    )
                )
                rows.append(
                    R(
                        f"shim CPU, stdout {mode}",
                        "s/GiB",
                        ".3f",
                        ours,
                        tp[(ours, mode)]["cpu"],
                        anchor,
                        tp[(anchor, mode)]["cpu"],
                        ("ratio", 0.5, "<=") if targeted else None,
                    )
                )
        for (name, mode), v in tp.items():
            short = [x for x in v["lost"] if x]
            if short:
                notes.append(
                    f"throughput {name} {mode}: output ended early in {len(short)} of "
                    f"{len(v['lost'])} runs (up to {max(short)} bytes lost at the end)"
                )
            if v["errors"]:
                notes.append(f"throughput {name} {mode}: failed runs: {'; '.join(v['errors'])}")
        notes.append(
            "throughput, seed form: non-tty, the container writes into the stdout FIFO itself "
            "(the shim moves no byte); conmon copies into a k8s-file log on tmpfs."
        )
    idl = results.get("idle")
    if idl:
        window = idle_seconds(args.quick) / idle.WINDOWS
        for ours, anchor, targeted in ((EPOLL_V2, RUNC_V2, True), (SEED, CONMON, False)):
            rows.append(
                R(
                    f"idle wake-ups in {window * idle.WINDOWS:g} s",
                    "switches",
                    ".0f",
                    ours,
                    idl[ours]["wakeups"],
                    anchor,
                    idl[anchor]["wakeups"],
                    ("value", 0, "<=") if targeted else None,
                )
            )
        th = {k: v.get("threads") for k, v in idl.items() if v.get("threads")}
        notes.append(
            f"idle: the total over {idle.WINDOWS} consecutive windows of {window:.3g} s, each "
            f"window a sample; threads per shim: {th}"
        )
    ex = results.get("exit")
    if ex:
        rows.append(_latency_row("exit -> ctr run returns", ex, 1.0))
    kl = results.get("kill")
    if kl:
        rows.append(_latency_row("ctr task kill -s KILL -> ctr run returns", kl, 1.0))
    st = results.get("state")
    if st:
        rows += _state_rows(st, args.state_containers, args.state_calls)
        for (name, mode), v in st.items():
            if v["rate"] and mode != "quiet":
                lo, hi = min(v["rate"]), max(v["rate"])
                notes.append(f"state {name} {mode}: the stream ran at {lo:.0f}-{hi:.0f} MB/s")
            if v["errors"]:
                notes.append(f"state {name} {mode}: failed batches: {'; '.join(v['errors'])}")
    pm = results.get("podman")
    if pm:
        rows += _podman_rows(pm, args.quick)
        notes += _podman_notes(pm, args)
    spans = results.get("spans")
    if spans:
        took = ", ".join(f"{k} {t1 - t0:.0f} s" for k, (t0, t1) in spans.items())
        notes.append(f"time per scenario: {took}")
    return rows, notes


# Targets: issue 9 where it sets one (RssAnon of an ungrouped shim <= 1.8x, start <= 1.05x,
# exit and SIGKILL <= 1x, State p50/p99 <= 1x), else the bench's earlier ones.
Target = tuple[str, float, str] | None


def _memory_rows(mem: dict, counts: list[int]) -> list[report.Row]:  # type: ignore[type-arg]
    """Per metric and N: ungrouped vs runc-v2, grouped vs runc-v2 (from N = 10: one shim per
    container is what runc-v2 users without pods get), grouped vs grouped, seed vs conmon."""
    rows = []
    bounds = {"anon": 1.8, "pss": 2.0}
    for key, label in (("anon", "RssAnon"), ("pss", "Pss")):
        for n in counts:
            pairs: list[tuple[str, str, Target]] = [
                (EPOLL_V2, RUNC_V2, ("ratio", bounds[key], "<=")),
                (EPOLL_V2_GROUPED, RUNC_V2, ("ratio", 0.25, "<=") if n >= 10 else None),
                (EPOLL_V2_GROUPED, RUNC_V2_GROUPED, None),
            ]
            if n <= memory.DIRECT_MAX:
                pairs.append((SEED, CONMON, None))
            for ours, anchor, target in pairs:
                rows.append(
                    report.Row(
                        f"{label} per container, N={n}",
                        "MB",
                        ".2f",
                        ours,
                        mem[(ours, n)][key],
                        anchor,
                        mem[(anchor, n)][key],
                        target,
                    )
                )
    return rows


def _state_rows(st: dict, n: int, calls: int) -> list[report.Row]:  # type: ignore[type-arg]
    """State call latency, epollshim-v2 grouped vs runc-v2 grouped, per mode, p50 and p99."""
    rows = []
    what = {"quiet": "quiet", "pipe": "1 streams, pipe", "tty": "1 streams, tty"}
    for mode in state.MODES:
        ours, anchor = st[(EPOLL_V2_GROUPED, mode)], st[(RUNC_V2_GROUPED, mode)]
        for q in ("p50", "p99"):
            rows.append(
                report.Row(
                    f"State {q}, {n} in 1 shim, {what[mode]}",
                    "ms",
                    ".3f",
                    EPOLL_V2_GROUPED,
                    ours[q],
                    RUNC_V2_GROUPED,
                    anchor[q],
                    None if mode == "quiet" else ("ratio", 1.0, "<="),
                    # one batch per subject per round; a failed batch leaves a round unpaired
                    paired=not (ours["errors"] or anchor["errors"]),
                )
            )
    return rows


def _podman_rows(pm: dict, quick: bool) -> list[report.Row]:  # type: ignore[type-arg]
    """epollshim-conmon vs conmon under podman. Issue 11 sets no target; the rows borrow the
    bench's for the same quantity against runc-v2 (memory 1.8x / 2x, start 1.05x, rate 1x,
    CPU 0.5x), so that the interval is read against a line; --version is information."""
    ours, anchor = podman.OURS, podman.CONMON
    size = f"{podman_log_bytes(quick) >> 20} MiB"
    spec: list[tuple[str, str, str, str, float, Target]] = [
        ("anon", f"podman: RssAnon per monitor, {podman.IDLE} idle", "MB", ".2f", 1, None),
        ("pss", f"podman: Pss per monitor, {podman.IDLE} idle", "MB", ".2f", 1, None),
        ("run", "podman run --rm IMAGE true", "ms", ".0f", 1000, ("ratio", 1.05, "<=")),
        ("rate", f"podman: k8s-file log, {size} of 100-byte lines", "MB/s", ".0f", 1, None),
        ("cpu", "podman: monitor CPU, k8s-file log", "s/GiB", ".3f", 1, None),
        ("version", "monitor --version", "ms", ".2f", 1000, None),
    ]
    targets: dict[str, Target] = {
        "anon": ("ratio", 1.8, "<="),
        "pss": ("ratio", 2.0, "<="),
        "rate": ("ratio", 1.0, ">="),
        "cpu": ("ratio", 0.5, "<="),
    }
    rows = []
    for key, metric, unit, fmt, scale, target in spec:
        rows.append(
            report.Row(
                metric,
                unit,
                fmt,
                ours,
                _scaled(pm[(ours, key)], scale),
                anchor,
                _scaled(pm[(anchor, key)], scale),
                targets.get(key, target),
            )
        )
    return rows


def _podman_notes(pm: dict, args: argparse.Namespace) -> list[str]:  # type: ignore[type-arg]
    r = args.rounds
    return [
        f"podman: rounds memory {r['podman-memory']} (x{podman.IDLE} monitors), run "
        f"{r['podman-run']}, log {r['podman-log']}, --version {r['podman-version']} calls per "
        "monitor, monitors alternating; podman 4.3 with a private store (vfs, cgroupfs); issue "
        "11 sets no targets: the rows borrow the bench's for the same quantity",
        "podman log: the monitor's own utime+stime (/proc/PID/stat, not its children's), read "
        "every 20 ms until it exits, the last reading kept (it misses at most the monitor's last "
        "20 ms, after the log is complete); MB/s of the log file's growth (payload + the "
        "k8s-file prefixes) between its first and last change",
        podman.launcher_note(),
    ]


def _scaled(c: Cell, k: float) -> Cell:
    if not c.ok or k == 1:
        return c
    assert c.value is not None
    return Cell(c.value * k, [x * k for x in c.samples])


def podman_log_bytes(quick: bool) -> int:
    return (64 if quick else 256) << 20


def sizes(quick: bool) -> dict[str, int]:
    """Bytes per throughput run: 1 GiB through a pipe or into a file://, 256 MiB through a pty."""
    if quick:
        return {"pipe": 256 << 20, "tty": 64 << 20, "file": 256 << 20}
    return {"pipe": GIB, "tty": 256 << 20, "file": GIB}


def _latency_row(metric: str, cells: dict[str, Cell], bound: float) -> report.Row:
    """epollshim-v2 vs runc-v2 in milliseconds, the ratio bounded by ``bound``."""
    ours, anchor = _ms(cells[EPOLL_V2]), _ms(cells[RUNC_V2])
    target = ("ratio", bound, "<=")
    return report.Row(metric, "ms", ".1f", EPOLL_V2, ours, RUNC_V2, anchor, target, paired=True)


def _ms(c: Cell) -> Cell:
    if not c.ok:
        return c
    assert c.value is not None
    return Cell(c.value * 1000, [x * 1000 for x in c.samples])


def write(rows: list[report.Row], notes: list[str], args: argparse.Namespace) -> None:
    """bench.md and bench.png for a full run; a subset or a --quick run gets its own names
    (bench-memory-state.md, bench-quick.md) so that it never replaces the last full run."""
    os.makedirs(args.out, exist_ok=True)
    stem = "bench"
    if list(args.only) != list(SCENARIOS):
        stem += "-" + "-".join(args.only)
    if args.quick:
        stem += "-quick"
    png = None
    try:
        png = report.chart(rows, os.path.join(args.out, stem + ".png"))
    except ImportError as e:
        notes.append(f"no chart: {e} (pip install -e '.[bench]')")
    md = report.markdown(rows, report.machine(), notes, os.path.basename(png) if png else None)
    path = os.path.join(args.out, stem + ".md")
    with open(path, "w") as f:
        f.write(md)
    log(f"wrote {path}{' and ' + png if png else ''}")


# -- clean-up --------------------------------------------------------------------------------


def cleanup(ctx: Context) -> None:
    """containerd and its shims (the harness), then the children we started that still run
    (by their Popen), anything whose argv names our work dir (seed shims, ``epollshim run``,
    conmon, ctr), runc state in our root, mounts, the dir itself, and the shim sockets our
    containerd's shims would have used (named from our socket, namespace and ids), if stale.
    Sockets of other containerds are never touched."""
    sockets = our_sockets(ctx)
    with contextlib.suppress(Exception):
        ctx.stop()
    for child in ctx.children:
        if child.poll() is None:
            child.kill()
            child.wait()
    mine = os.fsencode(ctx.work)
    for pid in all_pids():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(mine in arg for arg in cmdline(pid)):
                kill_pid(pid)
    with contextlib.suppress(Exception):
        ctx.stop_runc()
    from epollshim.tools.containerd import mounts_under, unmount

    for _ in range(3):
        for point in mounts_under(ctx.work):
            with contextlib.suppress(OSError):
                unmount(point)
    shutil.rmtree(ctx.work, ignore_errors=True)
    for path in sockets:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode) and not _listening(path):
                os.unlink(path)
                log(f"removed the stale shim socket {path}")
    for name in _listdir("/dev/shm"):  # conmon logs (ConmonSubject.log_dir)
        if name.startswith(os.path.basename(ctx.work) + "-"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join("/dev/shm", name))
    left = sorted(p for p in sockets if os.path.lexists(p))
    if left:
        log(f"shim sockets of ours still there (a shim still listens?): {left}")


def our_sockets(ctx: Context) -> set[str]:
    """The sockets shims of our containerd bind: sha256 of ``<address>/<namespace>/<id>`` for
    every container and group id we used (runc-v2's convention, which epollshim follows)."""
    if ctx.ctd is None:
        return set()
    address, namespace = ctx.ctd.address, ctx.ctd.namespace
    out = set()
    for name in ctx.socket_ids:
        joined = os.path.normpath("/".join((address, namespace, name)))
        out.add(os.path.join(SHIM_SOCKETS, hashlib.sha256(joined.encode()).hexdigest()))
    return out


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
