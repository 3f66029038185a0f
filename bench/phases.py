"""``python -m bench.phases``: where ``ctr run --rm IMAGE ID true`` spends its time, per shim.

The start row of ``make bench`` gives one number per shim; this splits it into phases from
the kernel's own process events, so a difference is placed before anyone optimises it.
``perf record -a`` (sched_process_exec/exit, system wide, timestamps in CLOCK_MONOTONIC)
runs while ``ctr run --rm`` alternates between runc-v2 and epollshim-v2 in our private
containerd (the bench's ``Context``: own socket, root, namespace and runc root, cleaned up at
the end). Each run is cut at the same milestones for both shims:

  ctr exec -> shim ``start`` exec -> ``start`` exits -> runc create exec -> create exits
  -> runc start exec -> ``true`` exits -> runc delete exec -> delete exits
  -> shim ``delete`` exec -> it exits -> ``ctr`` exits

and each phase is the median over runs (with the range of the middle half). perf adds a
little to every exec and exit, alike for both shims: compare phases, not the total with
``make bench``'s. Needs ``perf`` (Debian: linux-perf) and root.

  python -m bench.phases [--runs 12] [--out bench/results/phases.md]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench.common import EPOLL_V2, RUNC_V2, log, median, new_id
from bench.report import source_version
from bench.subjects import Context, CtrSubject

EVENTS = "sched:sched_process_exec,sched:sched_process_exit"
LINE = re.compile(
    r"\s*(?P<comm>.+?)\s+(?P<pid>\d+)/\d+\s+(?P<t>[\d.]+):\s+(?P<ev>\S+):\s*(?P<rest>.*)"
)
# (milestone, the phase that ends there)
PHASES = (
    ("shim start exec", "containerd: create the container, run the shim's start"),
    ("shim start exit", "shim start (interpreter or Go start-up, socket, daemon)"),
    ("runc create exec", "daemon ready, Create received, runc create spawned"),
    ("runc create exit", "runc create"),
    ("runc start exec", "Create answered, Start received, runc start spawned"),
    ("true exit", "runc start, the container runs true"),
    ("runc delete exec", "exit reaped and published, Wait answered, Delete received"),
    ("runc delete exit", "runc delete"),
    ("shim delete exec", "Delete answered, Shutdown, containerd runs the shim's delete"),
    ("shim delete exit", "shim delete"),
    ("ctr exit", "containerd removes the task and container, ctr returns"),
)


class Event:
    __slots__ = ("comm", "exe", "exit", "pid", "t")

    def __init__(self, t: float, pid: int, comm: str, exe: str, exit: bool) -> None:
        self.t, self.pid, self.comm, self.exe, self.exit = t, pid, comm, exe, exit


def read_events(data: str) -> list[Event]:
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,time,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m is None:
            continue
        rest = m["rest"]
        if m["ev"].endswith("exec"):
            exe = rest.split()[0].removeprefix("filename=")
            events.append(Event(float(m["t"]), int(m["pid"]), m["comm"], exe, False))
        elif m["ev"].endswith("exit") and "group_dead=true" in rest:  # a process, not a thread
            events.append(Event(float(m["t"]), int(m["pid"]), m["comm"], "", True))
    return events


def milestones(events: list[Event], began: float) -> dict[str, float]:
    """Milestone -> seconds after ``began`` for one run (missing ones are left out)."""
    exit_of: dict[int, float] = {}
    for e in events:
        if e.exit:
            exit_of.setdefault(e.pid, e.t)
    execs = [e for e in events if not e.exit]
    shims = [e for e in execs if os.path.basename(e.exe).startswith("containerd-shim-")]
    runcs = [e for e in execs if os.path.basename(e.exe) == "runc"]
    found: dict[str, float | None] = {}
    if shims:
        found["shim start exec"] = shims[0].t
        found["shim start exit"] = exit_of.get(shims[0].pid)
        found["shim delete exec"] = shims[-1].t
        found["shim delete exit"] = exit_of.get(shims[-1].pid)
    for name, e in zip(("runc create", "runc start", "runc delete"), runcs, strict=False):
        found[name + " exec"] = e.t
        found[name + " exit"] = exit_of.get(e.pid)
    for e in execs:
        if e.exe.endswith("/true"):
            found["true exit"] = exit_of.get(e.pid)
        if e.exe.endswith("/ctr"):
            found["ctr exit"] = exit_of.get(e.pid)
    return {k: v - began for k, v in found.items() if v is not None}


def quartiles(xs: list[float]) -> tuple[float, float]:
    s = sorted(xs)
    return s[len(s) // 4], s[(3 * len(s)) // 4]


def table(per: dict[str, list[dict[str, float]]]) -> str:
    names = list(per)
    head = "| phase (ends at) | " + " | ".join(f"{n} (ms)" for n in names) + " | difference |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    previous = "ctr exec"
    for milestone, what in PHASES:
        cells, medians = [], []
        for n in names:
            spans = [
                (run[milestone] - run.get(previous, 0.0)) * 1000
                for run in per[n]
                if milestone in run and (previous == "ctr exec" or previous in run)
            ]
            if not spans:
                cells.append("n/a")
                continue
            lo, hi = quartiles(spans)
            medians.append(median(spans))
            cells.append(f"{median(spans):.1f} <sub>{lo:.1f}-{hi:.1f}</sub>")
        diff = f"{medians[1] - medians[0]:+.1f}" if len(medians) == 2 else ""
        lines.append(f"| {what} ({milestone}) | " + " | ".join(cells) + f" | {diff} |")
        previous = milestone
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=12, help="measured runs per shim (default 12)")
    p.add_argument("--out", default="", help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    if shutil.which("perf") is None:
        print("bench.phases: needs perf (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="epollshim-phases-")
    ctx = Context(work, quick=True)
    data = os.path.join(work, "perf.data")
    windows: list[tuple[str, float]] = []
    perf: subprocess.Popen[bytes] | None = None
    try:
        ctx.start_containerd()
        subjects = [CtrSubject(ctx, RUNC_V2), CtrSubject(ctx, EPOLL_V2)]
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", data, "-e", EVENTS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # perf attaches to every CPU before the first run
        for i in range(args.runs + 1):  # run 0 warms both up
            for s in subjects if i % 2 == 0 else reversed(subjects):
                cid = new_id("p")
                began = time.clock_gettime(time.CLOCK_MONOTONIC)
                r = s.ctr(*s.run_args(cid, ["true"]), timeout=60)
                if r.returncode != 0:
                    log(f"phases {s.name}: ctr run failed: {r.stderr.strip()}")
                elif i:
                    windows.append((s.name, began))
        time.sleep(0.2)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
        events = read_events(data)
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
            perf.wait()
        ctx.stop()
        shutil.rmtree(work, ignore_errors=True)
    per: dict[str, list[dict[str, float]]] = {RUNC_V2: [], EPOLL_V2: []}
    starts = sorted(windows, key=lambda w: w[1])
    for k, (name, began) in enumerate(starts):
        end = starts[k + 1][1] if k + 1 < len(starts) else float("inf")
        run = milestones([e for e in events if began <= e.t < end], began)
        if run:
            per[name].append(run)
    text = table(per)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            load = os.getloadavg()[0]
            f.write(
                f"# `ctr run --rm IMAGE ID true`, phase by phase\n\n"
                f"- {when}, commit {source_version()}, {args.runs} runs per shim, alternating; "
                f"1-min load {load:.1f} "
                f"at the end\n- each cell: median ms <sub>middle half of the runs</sub>; "
                f"difference: epollshim-v2 minus runc-v2\n\n{text}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
