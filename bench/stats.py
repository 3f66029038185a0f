"""The spread of a figure and what it allows: the interval of a median, percentiles.

The verdict rule (bench/README.md, "When a row gets a verdict") rests on ``median_interval``:
a distribution-free confidence interval for the median of n samples, read off the sorted
samples themselves (order statistics), so it assumes nothing about the shape of the noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

CONFIDENCE = 0.95  # aimed at; with fewer than 6 samples the full range is all there is
MIN_SAMPLES = 3  # fewer on either side of a row: no verdict


def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / (1 << n)


def order_rank(n: int, confidence: float = CONFIDENCE) -> int:
    """The largest k >= 1 such that [x_(k), x_(n+1-k)] covers the median with at least
    ``confidence`` (each tail holds the median with probability P(Bin(n, 1/2) <= k-1));
    1 (the full range) when even that falls short, as it does for n <= 5 at 95%."""
    tail = (1 - confidence) / 2
    k = 1
    while k + 1 <= (n + 1) // 2 and binom_cdf_half(k, n) <= tail:
        k += 1
    return k


def coverage(n: int, k: int) -> float:
    """The confidence of [x_(k), x_(n+1-k)] for the median of n samples."""
    return 1 - 2 * binom_cdf_half(k - 1, n)


def median_interval(samples: Sequence[float]) -> tuple[float, float, float]:
    """(low, high, confidence) around the median of ``samples`` (at least one)."""
    xs = sorted(samples)
    n = len(xs)
    k = order_rank(n)
    return xs[k - 1], xs[n - k], coverage(n, k)


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank: a value that was actually observed."""
    xs = sorted(samples)
    if not xs:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(xs)))
    return xs[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)
