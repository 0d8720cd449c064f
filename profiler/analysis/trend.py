"""Sustained growth in a series: Theil-Sen slope with its interval, Mann-Kendall significance.

Used for a process's RSS over time and for a function's held bytes over a memory capture.
Both are noisy in the same ways (garbage collection, allocator arenas, page-granular RSS,
bursts), so the slope is the median of pairwise slopes (robust to a few outliers and steps)
and significance comes from Kendall's tau between time and value (the Mann-Kendall test, with
ties handled), not from a least-squares fit that one spike can tilt. Growth is called only
when it is significant, its lower bound clears a floor, and it spans enough points and time:
a single step (a cache filled once) has a significant tau but a low bound near zero once the
plateau is long, and a short burst never has the span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.001  # one-sided Mann-Kendall level: a page-worthy claim, judged often
CONFIDENCE = 0.95  # Theil-Sen interval
MIN_POINTS = 10


@dataclass(frozen=True)
class Trend:
    slope_per_s: float  # Theil-Sen, value units per second
    low_per_s: float  # its CONFIDENCE interval
    high_per_s: float
    p_value: float  # one-sided, growth: Mann-Kendall via Kendall's tau
    points: int
    span_s: float
    growing: bool  # significant, lower bound above the floor, enough points and span

    @property
    def per_minute(self) -> float:
        return self.slope_per_s * 60


def trend(
    points: Sequence[tuple[float, float]],
    *,
    floor_per_s: float,
    alpha: float = ALPHA,
    min_points: int = MIN_POINTS,
    min_span_s: float = 0.0,
) -> Trend:
    """The trend of `points` (time in seconds, value); `growing` only when the growth is
    significant at `alpha`, its interval's lower bound is above `floor_per_s`, and there are
    at least `min_points` points over at least `min_span_s` seconds."""
    n = len(points)
    span = points[-1][0] - points[0][0] if n else 0.0
    if n < 3 or span <= 0:
        return Trend(0.0, 0.0, 0.0, 1.0, n, max(span, 0.0), False)
    times = [t for t, _ in points]
    values = [v for _, v in points]
    if len(set(values)) == 1:
        return Trend(0.0, 0.0, 0.0, 1.0, n, span, False)
    slope, _intercept, low, high = stats.theilslopes(values, times, alpha=CONFIDENCE)
    p = float(stats.kendalltau(times, values, alternative="greater").pvalue)
    growing = p < alpha and low > floor_per_s and n >= min_points and span >= min_span_s
    return Trend(float(slope), float(low), float(high), p, n, span, bool(growing))
