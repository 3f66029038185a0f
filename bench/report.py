"""The table: medians side by side, ratios with their interval, targets and the verdict the
interval allows (PASS / FALL SHORT / within noise); Markdown + PNG.

matplotlib is imported here, in ``chart``, only when the chart is drawn.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from typing import Any

from bench.common import Cell
from bench.stats import MIN_SAMPLES, median_interval


class Row:
    """One comparison: ours vs an anchor, with an optional target on the ratio (or value)."""

    __slots__ = (
        "anchor",
        "anchor_name",
        "fmt",
        "metric",
        "ours",
        "ours_name",
        "paired",
        "target",
        "unit",
    )

    def __init__(
        self,
        metric: str,
        unit: str,
        fmt: str,
        ours_name: str,
        ours: Cell,
        anchor_name: str,
        anchor: Cell,
        target: tuple[str, float, str] | None = None,
        *,
        paired: bool = False,
    ) -> None:
        self.metric = metric
        self.unit = unit
        self.fmt = fmt
        self.ours_name = ours_name
        self.ours = ours
        self.anchor_name = anchor_name
        self.anchor = anchor
        # ("ratio" | "value", bound, "<=" | ">=")
        self.target = target
        # sample i of each side comes from round i of the same alternating rounds
        self.paired = paired

    def round_ratios(self) -> list[float] | None:
        """Ours / anchor round by round, for a paired row whose two sides have a sample in
        every round (equal counts) and an anchor that never measured 0; else None."""
        o, a = self.ours, self.anchor
        if not self.paired or not (o.ok and a.ok) or len(o.samples) != len(a.samples):
            return None
        if not a.samples or min(a.samples) <= 0:
            return None
        return [x / y for x, y in zip(o.samples, a.samples, strict=True)]

    def ratio(self) -> float | None:
        """The median of the round ratios (paired), else the ratio of the medians."""
        rounds = self.round_ratios()
        if rounds is not None:
            return statistics.median(rounds)
        if not (self.ours.ok and self.anchor.ok) or not self.anchor.value:
            return None
        assert self.ours.value is not None
        return self.ours.value / self.anchor.value

    def value_text(self, cell: Cell) -> str:
        if not cell.ok:
            return f"n/a (error: {cell.error})"
        return format(cell.value, self.fmt)

    def ratio_text(self) -> str:
        r = self.ratio()
        if r is None:
            if self.anchor.ok and self.anchor.value == 0 and self.ours.ok:
                return "0 vs 0" if self.ours.value == 0 else "inf"
            return "n/a"
        return f"{r:.2f}x"

    def target_text(self) -> str:
        if self.target is None:
            return "(info)"
        kind, bound, op = self.target
        return f"{op} {bound:g}x" if kind == "ratio" else f"{op} {bound:g} {self.unit}"

    def interval(self) -> tuple[float, float] | None:
        """The interval the verdict is read from: for a value target, our median's; for a
        paired row, the median round ratio's; else the ratio's from the interval of each
        side's median at their least favourable (``bench.stats``). None when a side has no
        figure or fewer than ``MIN_SAMPLES`` samples."""
        sides = (
            [self.ours]
            if self.target and self.target[0] == "value"
            else [
                self.ours,
                self.anchor,
            ]
        )
        if not all(c.ok and len(c.samples) >= MIN_SAMPLES for c in sides):
            return None
        rounds = self.round_ratios() if len(sides) == 2 else None
        if rounds is not None:
            lo, hi, _ = median_interval(rounds)
            return lo, hi
        o_lo, o_hi, _ = median_interval(self.ours.samples)
        if len(sides) == 1:
            return o_lo, o_hi
        a_lo, a_hi, _ = median_interval(self.anchor.samples)
        if a_hi <= 0:
            return None  # the anchor measured 0: no ratio
        return o_lo / a_hi, (o_hi / a_lo if a_lo > 0 else math.inf)

    def interval_text(self) -> str:
        iv = self.interval()
        if iv is None or self.target is None:
            return ""
        lo, hi = iv
        if self.target[0] == "value":
            return f"{format(lo, self.fmt)}-{format(hi, self.fmt)}"
        return f"{lo:.2f}-{hi:.2f}" + (" paired" if self.round_ratios() is not None else "")

    def verdict(self) -> str:
        """PASS / FALL SHORT only when the whole interval is on one side of the target."""
        if self.target is None:
            return ""
        if (self.ratio() if self.target[0] == "ratio" else self.ours.value) is None:
            return "n/a"
        iv = self.interval()
        if iv is None:
            return f"no verdict (n<{MIN_SAMPLES})"
        _, bound, op = self.target
        lo, hi = iv
        eps = 1e-12
        if op == "<=":
            good, bad = hi <= bound + eps, lo > bound + eps
        else:
            good, bad = lo >= bound - eps, hi < bound - eps
        return "PASS" if good else "FALL SHORT" if bad else "within noise"


COLORS = {"PASS": "tab:green", "FALL SHORT": "tab:red"}

HEADER = (
    "metric",
    "epollshim",
    "value",
    "anchor",
    "value",
    "ratio",
    "interval",
    "target",
    "verdict",
)


def cells(row: Row) -> tuple[str, ...]:
    return (
        f"{row.metric} ({row.unit})",
        row.ours_name,
        row.value_text(row.ours),
        row.anchor_name,
        row.value_text(row.anchor),
        row.ratio_text(),
        row.interval_text(),
        row.target_text(),
        row.verdict(),
    )


def _n(cell: Cell) -> str:
    return f" n={len(cell.samples)}" if cell.ok else ""


def text_table(rows: list[Row]) -> str:
    table: list[list[str]] = [list(HEADER)]
    for row in rows:
        c = list(cells(row))
        c[2] += _n(row.ours)
        c[4] += _n(row.anchor)
        table.append(c)
    widths = [min(max(len(t[i]) for t in table), 44) for i in range(len(HEADER))]
    lines = []
    for i, t in enumerate(table):
        lines.append("  ".join(c[:44].ljust(w) for c, w in zip(t, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spread(row: Row, cell: Cell) -> str:
    """`` <sub>n=20 · 95%: 265-295 · 230-357</sub>`` under a median of several samples: n,
    the interval of the median with its confidence, and the range of the samples."""
    if not cell.ok or len(cell.samples) < 2:
        return f" <sub>n={len(cell.samples)}</sub>" if cell.ok and cell.samples else ""
    f = row.fmt
    lo, hi, conf = median_interval(cell.samples)
    interval = f"{format(lo, f)}-{format(hi, f)}"
    span = f"{format(min(cell.samples), f)}-{format(max(cell.samples), f)}"
    out = f" <sub>n={len(cell.samples)} · {conf:.0%}: {interval}"
    return out + (f" · {span}" if span != interval else "") + "</sub>"


def markdown_table(rows: list[Row]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        c = [esc(x) for x in cells(r)]
        c[2] += spread(r, r.ours)
        c[4] += spread(r, r.anchor)
        c[-1] = f"**{c[-1]}**" if c[-1] else ""
        out.append("| " + " | ".join(c) + " |")
    return "\n".join(out)


def machine() -> dict[str, str]:
    def version(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "epollshim": source_version(),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "shims' interpreter": shim_interpreter(),
        "containerd": version(["containerd", "--version"]),
        "runc": version(["runc", "--version"]),
        "conmon": version(["conmon", "--version"]),
        "podman": version(["podman", "--version"]),
    }


def shim_interpreter() -> str:
    """The interpreter line of the v2 shim's launcher (install-launchers may choose another
    build than the bench's own), with that interpreter's version."""
    launcher = shutil.which("containerd-shim-epollshim-v2")
    try:
        with open(launcher or "", "rb") as f:
            first = f.readline().decode(errors="replace").strip()
        python = first.removeprefix("#!").split()[0]
        r = subprocess.run([python, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"
    return f"{first.removeprefix('#!')} ({r.stdout.strip() or r.stderr.strip()})"


def source_version() -> str:
    """The commit the measured code is at, and whether epollshim/ had uncommitted changes (the
    package is installed editable: the shims run the working tree)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--", "epollshim"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not head:
        return "?"
    if not dirty:
        return head
    return f"{head} + uncommitted changes in epollshim/ (its *.py files hash to {tree_hash()})"


def tree_hash() -> str:
    """A short hash of every ``epollshim/**/*.py`` file's path and contents: the code the shims
    run, so that a change during a run shows (other work may edit the tree meanwhile)."""
    import hashlib

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "epollshim")
    h = hashlib.sha256()
    for d, _dirs, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(d, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            h.update(os.path.relpath(path, root).encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:12]


def markdown(rows: list[Row], meta: dict[str, Any], notes: list[str], chart: str | None) -> str:
    lines = ["# epollshim bench", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", markdown_table(rows), ""]
    if chart:
        lines += [f"![ratios]({chart})", ""]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def chart(rows: list[Row], path: str) -> str | None:
    """A horizontal bar per row with a ratio target: the ratio (log scale), its interval
    (whiskers), the target line; green PASS, red FALL SHORT, grey within noise / no verdict."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    data = [(r, r.ratio()) for r in rows if r.target and r.target[0] == "ratio"]
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.5))
    floor = 0.05  # a ratio of 0 (no CPU at all) is drawn at the left edge
    for i, (r, ratio) in enumerate(data):
        assert r.target is not None
        _, bound, op = r.target
        if ratio is None:
            ax.text(floor, i, " n/a", va="center", color="grey", fontsize=8)
        else:
            color = COLORS.get(r.verdict(), "tab:grey")
            ax.barh(i, max(ratio, floor), left=0, color=color, alpha=0.8)
            iv = r.interval()
            right = max(ratio, floor)
            if iv is not None:  # the interval the verdict was read from
                lo, hi = max(iv[0], floor), min(iv[1], 1e3)
                ax.plot([lo, hi], [i, i], color="black", lw=1)
                ax.plot([lo, lo], [i - 0.15, i + 0.15], color="black", lw=1)
                ax.plot([hi, hi], [i - 0.15, i + 0.15], color="black", lw=1)
                right = max(right, hi)
            ax.text(right, i, f" {ratio:.2f}x", va="center", fontsize=8)
        ax.plot([bound, bound], [i - 0.42, i + 0.42], color="black", lw=2.5)
        ax.text(bound, i - 0.44, f" target {op}{bound:g}", fontsize=6.5, va="bottom")
    ax.set_yticks(range(len(data)))
    ax.set_yticklabels([f"{r.metric} ({r.ours_name})" for r, _ in data], fontsize=8)
    ax.set_xscale("log")
    ticks = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    highs = [min(iv[1], 1e3) for iv in (r.interval() for r, _ in data) if iv]
    ax.set_xlim(floor * 0.9, max(8.0, *(x * 1.5 for _, x in data if x), *highs))
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(
        "epollshim / anchor in the same run (log scale); whiskers = interval; black mark = target"
    )
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
