"""Scenario ``podman``: epollshim-conmon beside Debian's conmon, both under podman 4.3.

One private podman store (``epollshim.tools.podman.PrivatePodman``: own --root, --runroot,
--tmpdir under our work dir, vfs, cgroupfs, file events, --network none); every podman call
names its monitor with ``--conmon``. The two monitors alternate within every part (order
reversed every other round):

* ``memory``: 10 idle containers (``podman run -d IMAGE sleep``) per round and monitor; 1 s
  after the 10th, RssAnon (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) of each
  monitor process (``podman inspect --format {{.State.ConmonPid}}``): each monitor is a sample.
  The containers are removed before the other monitor's turn.
* ``run``: wall time of ``podman run --rm IMAGE true``, one sample per round after a warm-up.
* ``log``: the container writes ``log_bytes`` of 100-byte lines (``yes ... | head -c``) to stdout,
  which the monitor writes into the k8s-file log (``podman run -d``, then ``podman wait``).
  Every 20 ms we read the log file's size and the monitor's utime+stime from /proc/PID/stat
  (its own, not its children's) until the monitor exits; the last reading before it exits is
  the CPU figure (it misses at most the monitor's last 20 ms, after the log is complete). The
  rate is the log's growth between its first and its last change. A run counts only if the
  log holds at least ``log_bytes`` and ``podman wait`` says 0.
* ``version``: ``MONITOR --version`` wall time (spawn to exit, output read through a pipe as
  podman reads it), ``--rounds podman-version=N`` calls per monitor alternating call by
  call, median.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import time
from collections.abc import Callable

from bench.common import GIB, MB, BenchError, Cell, cpu_seconds, log, pss_kb, status_kb
from epollshim.tools.podman import (
    DEBIAN_CONMON,
    IMAGE,
    RUN_OPTS,
    PrivatePodman,
    alive,
    our_monitor,
)

OURS = "epollshim-conmon"
CONMON = "conmon"
PARTS = ("memory", "run", "log", "version")
IDLE = 10
LINE = "x" * 99  # yes adds the newline: 100-byte lines
POLL = 0.02


def monitors() -> dict[str, str]:
    return {CONMON: DEBIAN_CONMON, OURS: our_monitor()}


def launcher_note() -> str:
    """What the installed launcher runs: ``make dev``/CI rewrite it, and it names the source
    tree it imports (``sys.path.insert(0, DIR)``), which may not be this checkout."""
    path = our_monitor()
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        return f"podman: no launcher at {path}: {e}"
    m = re.search(r"sys\.path\.insert\(0,'\"'\"'([^']*)'\"'\"'\)", text)
    where = m.group(1) if m else "the installed package"
    lean = "answers --version in /bin/sh" if text.startswith("#!/bin/sh") else "no sh fast path"
    return f"podman: {path} ({lean}) runs epollshim from {where}"


def _order(names: tuple[str, ...], i: int) -> tuple[str, ...]:
    return names if i % 2 == 0 else names[::-1]


def _inspect(pm: PrivatePodman, cid: str, fmt: str) -> str:
    return pm.ok("inspect", "--format", fmt, cid).strip()


def _memory_round(pm: PrivatePodman, monitor: str) -> tuple[list[float], list[float]]:
    ids = []
    try:
        for _ in range(IDLE):
            ids.append(pm.ok("run", "-d", *RUN_OPTS, IMAGE, "sleep", "3600", monitor=monitor))
        pids = [int(_inspect(pm, cid.strip(), "{{.State.ConmonPid}}")) for cid in ids]
        time.sleep(1)
        anon = [status_kb(p, "RssAnon") / 1000 for p in pids]
        pss = [pss_kb(p) / 1000 for p in pids]
        return anon, pss
    finally:
        pm.remove_all()


def _run_once(pm: PrivatePodman, monitor: str) -> float:
    argv = pm.argv("run", "--rm", *RUN_OPTS, IMAGE, "true", monitor=monitor)
    began = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - began
    if r.returncode != 0:
        raise BenchError(f"podman run --rm: {r.returncode}: {r.stderr.strip()}")
    return took


def _log_once(pm: PrivatePodman, monitor: str, size: int) -> tuple[float, float]:
    """(MB/s, monitor CPU s/GiB) of one container writing ``size`` bytes to its log."""
    script = f"yes {LINE} | head -c {size}"
    cid = pm.ok(
        "run", "-d", "--log-driver", "k8s-file", *RUN_OPTS, IMAGE, "sh", "-c", script,
        monitor=monitor,
    ).strip()  # fmt: skip
    try:
        pid = int(_inspect(pm, cid, "{{.State.ConmonPid}}"))
        path = _inspect(pm, cid, "{{.HostConfig.LogConfig.Path}}")
        cpu = cpu_seconds(pid)
        last_size, first_t, last_t, first_size = 0, 0.0, 0.0, 0
        deadline = time.monotonic() + 600
        while True:
            try:
                cpu = cpu_seconds(pid)
            except OSError:
                break  # the monitor is gone: the previous reading is its last
            if not alive(pid):
                break
            now = time.monotonic()
            with contextlib.suppress(OSError):
                cur = os.stat(path).st_size
                if cur != last_size:
                    if not first_t:
                        first_t, first_size = now, cur
                    last_t, last_size = now, cur
            if now > deadline:
                raise BenchError("the log container ran for more than 600 s")
            time.sleep(POLL)
        code = pm.ok("wait", cid).strip()
        final = os.stat(path).st_size
        if code != "0":
            raise BenchError(f"the log container exited {code}")
        if final < size:
            raise BenchError(f"the log holds {final} bytes, fewer than the {size} written")
        if last_t <= first_t:
            raise BenchError("the log grew in one step: no rate")
        rate = (last_size - first_size) / (last_t - first_t) / MB
        return rate, cpu / (size / GIB)
    finally:
        pm("rm", "-f", "-t", "0", cid)


def _version_once(path: str) -> float:
    began = time.monotonic()
    r = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True)
    took = time.monotonic() - began
    if r.returncode != 0 or b"conmon version" not in r.stdout:
        raise BenchError(f"{path} --version: {r.returncode}: {r.stdout[:80]!r}")
    return took


def run(work: str, rounds: dict[str, int], log_bytes: int) -> dict[tuple[str, str], Cell]:
    """Cells keyed (monitor, metric): anon, pss (MB), run (s), rate (MB/s), cpu (s/GiB),
    version (s)."""
    mons = monitors()
    names = (CONMON, OURS)
    samples: dict[tuple[str, str], list[float]] = {
        (n, m): [] for n in names for m in ("anon", "pss", "run", "rate", "cpu", "version")
    }
    errors: dict[tuple[str, str], str] = {}
    pm = PrivatePodman(work)

    def attempt(name: str, metric: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (BenchError, RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
            errors[(name, metric)] = f"{type(e).__name__}: {e}"
            log(f"podman {metric} {name}: {e}")

    def keep(name: str, metric: str, fn: Callable[[], float]) -> Callable[[], None]:
        return lambda: samples[(name, metric)].append(fn())

    try:
        pm.load_image()
        for i in range(rounds["podman-memory"]):
            for name in _order(names, i):

                def mem(name: str = name) -> None:
                    anon, pss = _memory_round(pm, mons[name])
                    samples[(name, "anon")] += anon
                    samples[(name, "pss")] += pss

                attempt(name, "anon", mem)
            log(f"podman memory round {i + 1}")
        for name in names:  # warm-up, not counted
            attempt(name, "run", functools.partial(_run_once, pm, mons[name]))
        for i in range(rounds["podman-run"]):
            for name in _order(names, i):
                attempt(
                    name, "run", keep(name, "run", functools.partial(_run_once, pm, mons[name]))
                )
        log("podman run --rm done")
        for i in range(rounds["podman-log"]):
            for name in _order(names, i):

                def one(name: str = name) -> None:
                    rate, cpu = _log_once(pm, mons[name], log_bytes)
                    samples[(name, "rate")].append(rate)
                    samples[(name, "cpu")].append(cpu)

                attempt(name, "rate", one)
            log(f"podman log round {i + 1}")
        for i in range(rounds["podman-version"]):  # calls per monitor, alternating
            for name in _order(names, i):
                attempt(
                    name,
                    "version",
                    keep(name, "version", functools.partial(_version_once, mons[name])),
                )
    finally:
        pm.close()
    out: dict[tuple[str, str], Cell] = {}
    for key, xs in samples.items():
        metric = "anon" if key[1] == "pss" else "rate" if key[1] == "cpu" else key[1]
        err = errors.get((key[0], metric))
        out[key] = Cell.of(xs) if xs else Cell.failed(err or "no samples")
    return out
