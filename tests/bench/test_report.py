"""The bench's verdict rule (bench/README.md, "When a row gets a verdict"): intervals of medians
from order statistics, and the ratio's interval unpaired or round by round. Pure: no processes."""

from __future__ import annotations

import pytest

from bench.common import Cell
from bench.report import Row
from bench.stats import median_interval, order_rank


def row(ours: list[float], anchor: list[float], bound: float = 1.0, paired: bool = False) -> Row:
    return Row(
        "m", "ms", ".1f", "ours", Cell.of(ours), "anchor", Cell.of(anchor), ("ratio", bound, "<="),
        paired=paired,
    )  # fmt: skip


@pytest.mark.parametrize(("n", "k"), [(3, 1), (5, 1), (6, 1), (8, 1), (9, 2), (20, 6), (100, 40)])
def test_order_ranks_the_readme_quotes(n: int, k: int) -> None:
    assert order_rank(n) == k


def test_median_interval_reads_sorted_samples() -> None:
    lo, hi, conf = median_interval([float(x) for x in range(20, 0, -1)])
    assert (lo, hi) == (6.0, 15.0)
    assert conf >= 0.95


# A machine whose load drifts from round to round (common to both subjects in a round): ours
# is 10% slower than the anchor in every round.
DRIFT = [10.0, 14.0, 9.0, 16.0, 11.0, 13.0, 8.0, 15.0]
SLOWER = [x * 1.1 for x in DRIFT]


def test_unpaired_ratio_interval_is_the_least_favourable_combination() -> None:
    r = row(SLOWER, DRIFT)
    o_lo, o_hi, _ = median_interval(SLOWER)
    a_lo, a_hi, _ = median_interval(DRIFT)
    assert r.interval() == pytest.approx((o_lo / a_hi, o_hi / a_lo))
    assert r.verdict() == "within noise"  # the drift hides a 10% difference
    assert r.interval_text().endswith("paired") is False


def test_paired_rows_read_the_ratio_round_by_round() -> None:
    r = row(SLOWER, DRIFT, paired=True)
    assert r.round_ratios() == pytest.approx([1.1] * len(DRIFT))
    assert r.ratio() == pytest.approx(1.1)
    assert r.interval() == pytest.approx((1.1, 1.1))
    assert r.verdict() == "FALL SHORT"
    assert r.interval_text() == "1.10-1.10 paired"
    assert row(DRIFT, SLOWER, paired=True).verdict() == "PASS"


def test_paired_interval_is_the_median_interval_of_the_round_ratios() -> None:
    ratios = [0.9, 1.3, 1.05, 1.2, 0.95, 1.1, 1.15, 1.25]
    r = row([a * q for a, q in zip(DRIFT, ratios, strict=True)], DRIFT, paired=True)
    lo, hi, _ = median_interval(ratios)
    assert r.interval() == pytest.approx((lo, hi))  # 8 rounds: the full range, 0.9-1.3
    assert r.verdict() == "within noise"


@pytest.mark.parametrize(
    ("ours", "anchor"),
    [
        (SLOWER[:-1], DRIFT),  # a round missing on one side: the rounds no longer line up
        (SLOWER, [0.0, *DRIFT[1:]]),  # an anchor round measured 0: no ratio for it
    ],
)
def test_paired_rows_fall_back_to_the_unpaired_rule(ours: list[float], anchor: list[float]) -> None:
    r = row(ours, anchor, paired=True)
    assert r.round_ratios() is None
    unpaired = row(ours, anchor)
    assert r.interval() == unpaired.interval()
    assert r.ratio() == unpaired.ratio()


def test_no_verdict_below_three_samples() -> None:
    assert row([1.0, 1.0], [2.0, 2.0], paired=True).verdict() == "no verdict (n<3)"
