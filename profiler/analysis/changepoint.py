"""Change points in a benchmark's history: E-divisive means with a permutation test.

The method is E-divisive of Matteson & James, "A Nonparametric Approach for Multiple Change
Point Analysis of Multivariate Data", JASA 109(505), 2014, as used for performance histories
by MongoDB's signal-processing-algorithms, Datastax's Hunter and Apache Otava:

- for a segment Z, the split tau maximises the scaled energy distance between X = Z[:tau]
  and Y = Z[tau:], q(tau) = m n / (m + n) * (2 E|X - Y|^a - E|X - X'|^a - E|Y - Y'|^a), with
  a = 1 (any 0 < a < 2 detects any change of distribution, not only of the mean);
- the best split over all current segments is kept if a permutation test says so: the
  segment is shuffled `permutations` times, and the p-value is the share of shuffles whose
  best q is at least the observed one (with the usual +1 in numerator and denominator);
- this repeats (divisive, i.e. recursive bisection) until the best split is not significant.

As in those tools, the second segment always runs to the end of its parent segment (the
original paper also searches its end point, kappa; for histories of a few hundred points this
makes no practical difference and costs a factor n). A slow drift across many small merges has
no single step, but the energy distance still separates its early and late parts, so it
yields a change point near the middle of the drift, which the caller attributes to a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

DEFAULT_ALPHA = 1.0


@dataclass(frozen=True)
class ChangePoint:
    """The series changes at `index`: points [.., index) before, [index, ..) after."""

    index: int
    p_value: float
    q: float  # the energy statistic of the split
    mean_before: float  # mean of the segment between the previous change point and this one
    mean_after: float  # mean of the segment between this change point and the next

    @property
    def relative_change(self) -> float:
        return (self.mean_after - self.mean_before) / self.mean_before if self.mean_before else 0.0


def e_divisive(
    values: Sequence[float] | NDArray[np.float64],
    *,
    significance: float = 0.01,
    permutations: int = 199,
    min_size: int = 3,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    max_change_points: int | None = None,
) -> list[ChangePoint]:
    """The significant change points of `values`, in order of index.

    `significance` is the p-value below which a split is kept; in a stationary series the
    chance of any false change point is about `significance` (the first test decides).
    """
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not np.all(np.isfinite(z)):
        raise ValueError("values must be finite")
    if not 0 < alpha < 2:
        raise ValueError("alpha must be in (0, 2)")
    if min_size < 2:
        raise ValueError("min_size must be at least 2")
    rng = np.random.default_rng(seed)
    found: list[tuple[int, float, float]] = []  # (index, p-value, q)
    segments = [(0, len(z))]
    while max_change_points is None or len(found) < max_change_points:
        best: tuple[float, int, int, int] | None = None  # (q, tau, start, end)
        for start, end in segments:
            split = _best_split(z[start:end], min_size, alpha)
            if split is not None and (best is None or split[1] > best[0]):
                best = (split[1], start + split[0], start, end)
        if best is None:
            break
        q, tau, start, end = best
        p_value = _permutation_p_value(
            z[start:end], q, permutations, min_size, alpha, rng, significance
        )
        if p_value >= significance:
            break
        found.append((tau, p_value, q))
        segments.remove((start, end))
        segments += [(start, tau), (tau, end)]
    return _with_means(z, sorted(found))


def _best_split(
    segment: NDArray[np.float64], min_size: int, alpha: float
) -> tuple[int, float] | None:
    n = len(segment)
    if n < 2 * min_size:
        return None
    distances = np.abs(segment[:, None] - segment[None, :]) ** alpha
    q = _q_by_split(distances, distances.sum(1), min_size, np.arange(n))
    best = int(np.argmax(q))
    return min_size + best, float(q[best])


def _q_by_split(
    distances: NDArray[np.float64],
    row_sums: NDArray[np.float64],
    min_size: int,
    order: NDArray[np.intp],
) -> NDArray[np.float64]:
    """q(tau) for every tau in [min_size, n - min_size] of the series taken in `order`.

    Only two sums per point are needed: its distances to all points (`row_sums`) and to the
    points before it in `order`; their prefix sums give the pairs within X, within Y and
    between. A permutation then costs one masked sum, not a shuffled copy of the matrix.
    """
    n = len(distances)
    position = np.empty(n, dtype=np.intp)
    position[order] = np.arange(n)
    to_earlier = (distances * (position[None, :] < position[:, None])).sum(1)[order]
    rows = row_sums[order]
    tau = np.arange(min_size, n - min_size + 1)
    within_x = 2 * np.cumsum(to_earlier)[tau - 1]  # ordered pairs inside X
    x_rows = np.cumsum(rows)[tau - 1]  # X against everything
    between = x_rows - within_x
    within_y = rows.sum() - 2 * x_rows + within_x
    m, k = tau.astype(np.float64), (n - tau).astype(np.float64)
    energy = 2 * between / (m * k) - within_x / (m * (m - 1)) - within_y / (k * (k - 1))
    return m * k / n * energy


def _permutation_p_value(
    segment: NDArray[np.float64],
    observed: float,
    permutations: int,
    min_size: int,
    alpha: float,
    rng: np.random.Generator,
    significance: float,
) -> float:
    """The permutation p-value; stops early once it cannot fall below `significance` (the
    value returned then is a lower bound, already not significant)."""
    enough = significance * (permutations + 1)
    distances = np.abs(segment[:, None] - segment[None, :]) ** alpha
    row_sums = distances.sum(1)
    at_least = 0
    for _ in range(permutations):
        order = rng.permutation(len(segment))
        # A tiny tolerance so ties from float rounding count as "at least as large".
        if _q_by_split(distances, row_sums, min_size, order).max() >= observed * (1 - 1e-12):
            at_least += 1
            if at_least + 1 >= enough:
                break
    return (at_least + 1) / (permutations + 1)


def _with_means(z: NDArray[np.float64], found: list[tuple[int, float, float]]) -> list[ChangePoint]:
    bounds = [0, *(index for index, _, _ in found), len(z)]
    means = [float(z[a:b].mean()) for a, b in pairwise(bounds)]
    return [
        ChangePoint(index, p_value, q, means[i], means[i + 1])
        for i, (index, p_value, q) in enumerate(found)
    ]
