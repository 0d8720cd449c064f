"""Comparing two profiles: which functions got slower, with a significance test on the counts.

The two profiles have different numbers of samples, so each function is compared by its share
of its profile. A function "got slower" when its self share grew: a caller whose callee got
slower grows in total share too, but not in self share, so only the function that changed is
flagged. The test suits counts from two Poisson processes of different lengths: conditional on
the function's samples in both profiles, those in the head are binomial with the head's share
of all samples (the exact conditional test for two Poisson rates). A function's own
comprehensions, lambdas and nested functions (`price_quote.<locals>.<genexpr>`) count as its
self time: they are its body, and splitting them off would split one change into two weaker
ones. p-values are corrected for
testing many functions at once (Benjamini-Hochberg), and a change must also be large enough
(`min_change_pp`) to be flagged: with hundreds of thousands of samples, a 0.1-point change is
"significant" but not worth a page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom, false_discovery_control, norm

from hotpath.profiler.model import Frame, Profile, function_stats


@dataclass(frozen=True)
class FunctionChange:
    function: str
    file: str
    base_share: float  # self share in the base profile, 0..1
    head_share: float
    base_total_share: float  # inclusive share, 0..1
    head_total_share: float
    change_pp: float  # head_share - base_share, in percentage points
    total_change_pp: float
    ms_per_cpu_s: float  # the self change in milliseconds per second of CPU
    p_value: float  # after Benjamini-Hochberg correction
    flagged: bool  # a significant slowdown of at least min_change_pp

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    base_samples: int
    head_samples: int
    functions: list[FunctionChange]  # flagged first (largest change first), then by |change|

    @property
    def flagged(self) -> list[FunctionChange]:
        return [f for f in self.functions if f.flagged]


def compare(
    base: Profile,
    head: Profile,
    *,
    alpha: float = 0.01,
    min_change_pp: float = 1.0,
    dispersion: float = 1.0,
) -> Comparison:
    n_base, n_head = base.total, head.total
    if n_base == 0 or n_head == 0:
        raise ValueError(
            f"cannot compare: the {'base' if n_base == 0 else 'head'} profile has no samples"
        )
    base_stats = {(s.name, s.file): s for s in function_stats(fold_inner_functions(base))}
    head_stats = {(s.name, s.file): s for s in function_stats(fold_inner_functions(head))}
    keys = sorted(base_stats.keys() | head_stats.keys())
    rows = []
    head_self, both_self = [], []
    for key in keys:
        b, h = base_stats.get(key), head_stats.get(key)
        b_self, h_self = (b.self_weight if b else 0), (h.self_weight if h else 0)
        b_total, h_total = (b.total_weight if b else 0), (h.total_weight if h else 0)
        head_self.append(h_self)
        both_self.append(b_self + h_self)
        rows.append((key, b_self / n_base, h_self / n_head, b_total / n_base, h_total / n_head))
    raw_p = conditional_poisson_p(
        np.array(head_self), np.array(both_self), n_head / (n_base + n_head), dispersion
    )
    adjusted = false_discovery_control(raw_p, method="bh") if len(raw_p) else []
    changes = []
    for (key, b_share, h_share, b_total, h_total), p in zip(rows, adjusted, strict=True):
        change = 100 * (h_share - b_share)
        changes.append(
            FunctionChange(
                function=key[0],
                file=key[1],
                base_share=b_share,
                head_share=h_share,
                base_total_share=b_total,
                head_total_share=h_total,
                change_pp=change,
                total_change_pp=100 * (h_total - b_total),
                ms_per_cpu_s=10 * change,
                p_value=float(p),
                flagged=bool(p < alpha and change >= min_change_pp),
            )
        )
    changes.sort(
        key=lambda c: (not c.flagged, -c.change_pp if c.flagged else -abs(c.change_pp), c.function)
    )
    return Comparison(n_base, n_head, changes)


def conditional_poisson_p(
    k: np.ndarray, n: np.ndarray, p: float, dispersion: float = 1.0
) -> np.ndarray:
    """Two-sided p-values of k ~ Binomial(n, p), all functions at once (vectorised, so
    30,000 functions take milliseconds): twice the smaller tail, capped at 1.

    With `dispersion` > 1 (samples vary more than a binomial would, see
    `estimate_dispersion`) the counts are scaled down by it, as in a quasi-binomial model."""
    k, n = k / dispersion, n / dispersion
    lower = (
        binom.cdf(np.floor(k), np.floor(n), p)
        if dispersion == 1
        else norm.cdf((k + 0.5 - n * p) / np.sqrt(np.maximum(n * p * (1 - p), 1e-12)))
    )
    upper = (
        binom.sf(np.floor(k) - 1, np.floor(n), p)
        if dispersion == 1
        else norm.sf((k - 0.5 - n * p) / np.sqrt(np.maximum(n * p * (1 - p), 1e-12)))
    )
    return np.where(n > 0, np.minimum(1.0, 2 * np.minimum(lower, upper)), 1.0)


def estimate_dispersion(windows: list[Profile], min_share: float = 0.01) -> float:
    """How much more a function's share varies from window to window than binomial sampling
    explains: the median over functions of Pearson's statistic per degree of freedom, at
    least 1. A process whose functions speed up and slow down with the machine's load has a
    dispersion well above 1, and its changes need to be that much larger to be flagged.
    Needs two windows or more; 1.0 otherwise."""
    windows = [w for w in windows if w.total]
    if len(windows) < 2:
        return 1.0
    per_window = [
        {(s.name, s.file): s.self_weight for s in function_stats(fold_inner_functions(w))}
        for w in windows
    ]
    totals = np.array([w.total for w in windows], dtype=float)
    keys = set().union(*per_window)
    ratios = []
    for key in keys:
        counts = np.array([pw.get(key, 0) for pw in per_window], dtype=float)
        share = counts.sum() / totals.sum()
        if share < min_share:
            continue
        expected = totals * share
        pearson = ((counts - expected) ** 2 / (expected * (1 - share))).sum()
        ratios.append(pearson / (len(windows) - 1))
    return max(1.0, float(np.median(ratios))) if ratios else 1.0


def fold_inner_functions(profile: Profile) -> Profile:
    """The same profile with each inner function (`outer.<locals>.inner`) counted as its
    outer function: renamed, and merged with the outer's frame right above it. A sample
    whose stack was torn (py-spy's non-blocking reads can miss the outer frame) still lands
    on the outer function."""
    folded = profile.empty_like()
    for stack, weight in profile.samples.items():
        kept: list[Frame] = []
        for frame in stack:
            outer, sep, _ = frame.name.partition(".<locals>.")
            if sep:
                frame = Frame(outer, frame.file)
            if kept and kept[-1].function_key == frame.function_key and sep:
                continue
            kept.append(frame)
        folded.samples[tuple(kept)] += weight
    return folded
