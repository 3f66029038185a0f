"""``python -m bench``: epollshim next to containerd-shim-runc-v2 and conmon, as ratios.

  python -m bench [--quick] [--only memory,start,throughput,idle,exit] [--out DIR]
                  [--containers N] [--no-write]

Everything runs in one process, against a private containerd and a private runc root under one
work dir; at the end everything we started is ended by pid or container id and the dir is
removed. See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time

from bench import idle, latency, memory, report, throughput
from bench.common import (
    CONMON,
    EPOLL_V2,
    EPOLL_V2_GROUPED,
    GIB,
    RUNC_V2,
    RUNC_V2_GROUPED,
    SEED,
    Cell,
    all_pids,
    cmdline,
    kill_pid,
    log,
)
from bench.subjects import Context

SCENARIOS = ("memory", "start", "throughput", "idle", "exit")
SHIM_SOCKETS = "/run/containerd/s"
HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, 256 MiB, 5 s idle")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    p.add_argument("--containers", type=int, default=10, help="idle containers (memory)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
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
    load_before = os.getloadavg()[0]
    sockets_before = set(_listdir(SHIM_SOCKETS))
    ctx = Context(tempfile.mkdtemp(prefix="epollshim-bench-"), args.quick)
    results: dict[str, object] = {}
    try:
        try:
            ctx.start_containerd()
        except Exception as e:
            log(f"private containerd failed: {ctx.ctd_error or e}")
        results = measure(ctx, args)
    finally:
        log("cleaning up")
        cleanup(ctx, sockets_before)
    rows, notes = build_rows(results, args)
    notes.append(f"run took {time.monotonic() - began:.0f} s{' (--quick)' if args.quick else ''}")
    load_after, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (above the CPU count: other work shared the machine)"
    notes.append(
        f"1-min load average {load_before:.1f} at the start, {load_after:.1f} at the end "
        f"on {cpus} CPUs{busy if max(load_before, load_after) > cpus else ''}"
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
    quick = args.quick
    results: dict[str, object] = {}
    v2 = (RUNC_V2, EPOLL_V2)
    if "memory" in args.only:
        n = args.containers
        results["memory"] = memory.run(ctx, n, 1 if quick else 2)
    if "start" in args.only:
        results["start"] = latency.start_latency(ctx, v2, 5 if quick else 20)
    if "throughput" in args.only:
        results["throughput"] = throughput.run(
            ctx, (RUNC_V2, EPOLL_V2, CONMON, SEED), 1 if quick else 3, sizes(quick)
        )
    if "idle" in args.only:
        results["idle"] = idle.run(ctx, (RUNC_V2, EPOLL_V2, CONMON, SEED), 5 if quick else 30)
    if "exit" in args.only:
        results["exit"] = latency.exit_latency(ctx, v2, 3 if quick else 10)
    return results


def build_rows(results: dict, args: argparse.Namespace) -> tuple[list[report.Row], list[str]]:  # type: ignore[type-arg]
    R = report.Row
    rows: list[report.Row] = []
    notes: list[str] = []
    mem = results.get("memory")
    if mem:
        n = args.containers
        pairs: tuple[tuple[str, str, tuple[str, float, str] | None], ...] = (
            (EPOLL_V2, RUNC_V2, ("ratio", 2.0, "<=")),
            (EPOLL_V2_GROUPED, RUNC_V2, ("ratio", 0.25, "<=")),
            (EPOLL_V2_GROUPED, RUNC_V2_GROUPED, None),  # (info)
            (SEED, CONMON, None),  # (info)
        )
        for key, label in (("anon", "RssAnon"), ("pss", "Pss")):
            m = f"{label} per container, {n} idle"
            for ours, anchor, target in pairs:
                rows.append(
                    R(m, "MB", ".2f", ours, mem[ours][key], anchor, mem[anchor][key], target)
                )
        shims = {k: v.get("shims") for k, v in mem.items() if v.get("shims")}
        notes.append(f"memory: shim processes counted per subject: {shims}")
    start = results.get("start")
    if start:
        rows.append(_latency_row("start: ctr run --rm true", start, 1.05))
    tp = results.get("throughput")
    if tp:
        for mode in throughput.MODES:
            size = f"{sizes(args.quick)[mode] >> 20} MiB"
            pairs = ((EPOLL_V2, RUNC_V2, True), (SEED, CONMON, False))
            for ours, anchor, targeted in pairs:
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
        secs = 5 if args.quick else 30
        for ours, anchor, targeted in ((EPOLL_V2, RUNC_V2, True), (SEED, CONMON, False)):
            rows.append(
                R(
                    f"idle wake-ups in {secs} s",
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
        notes.append(f"idle: threads per shim: {th}")
    ex = results.get("exit")
    if ex:
        rows.append(_latency_row("exit -> ctr run returns", ex, 1.0))
    return rows, notes


def sizes(quick: bool) -> dict[str, int]:
    """Bytes per throughput run: 1 GiB through a pipe, 256 MiB through a pty (~10 s each)."""
    return {"pipe": 256 << 20, "tty": 64 << 20} if quick else {"pipe": GIB, "tty": 256 << 20}


def _latency_row(metric: str, cells: dict[str, Cell], bound: float) -> report.Row:
    """epollshim-v2 vs runc-v2 in milliseconds, the ratio bounded by ``bound``."""
    ours, anchor = _ms(cells[EPOLL_V2]), _ms(cells[RUNC_V2])
    return report.Row(metric, "ms", ".1f", EPOLL_V2, ours, RUNC_V2, anchor, ("ratio", bound, "<="))


def _ms(c: Cell) -> Cell:
    if not c.ok:
        return c
    assert c.value is not None
    return Cell(c.value * 1000, [x * 1000 for x in c.samples])


def write(rows: list[report.Row], notes: list[str], args: argparse.Namespace) -> None:
    os.makedirs(args.out, exist_ok=True)
    png = None
    try:
        png = report.chart(rows, os.path.join(args.out, "bench.png"))
    except ImportError as e:
        notes.append(f"no chart: {e} (pip install -e '.[bench]')")
    md = report.markdown(rows, report.machine(), notes, os.path.basename(png) if png else None)
    path = os.path.join(args.out, "bench.md")
    with open(path, "w") as f:
        f.write(md)
    log(f"wrote {path}{' and ' + png if png else ''}")


# -- clean-up --------------------------------------------------------------------------------


def cleanup(ctx: Context, sockets_before: set[str]) -> None:
    """containerd and its shims (the harness), then anything whose argv names our work dir
    (seed shims, ``epollshim run``, conmon), runc state in our root, mounts, the dir itself,
    and shim sockets that appeared during the run and that nobody listens on."""
    with contextlib.suppress(Exception):
        ctx.stop()
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
    for name in set(_listdir(SHIM_SOCKETS)) - sockets_before:
        path = os.path.join(SHIM_SOCKETS, name)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode) and not _listening(path):
                os.unlink(path)
    for name in _listdir("/dev/shm"):  # conmon logs (ConmonSubject.log_dir)
        if name.startswith(os.path.basename(ctx.work) + "-"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join("/dev/shm", name))


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
