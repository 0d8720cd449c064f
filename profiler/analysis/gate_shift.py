"""The benchmark gate's whole-run shift: what moves every benchmark of a run alike (a busier
CI runner, a warmer CPU). Each head run's shift is measured (on all its benchmarks; a re-run's
on its controls) and then either removed as noise or, when the head runs as a whole moved far
beyond the spread of earlier runs' shifts, kept as a real change with that spread added to
every benchmark's uncertainty."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_noise import (
    LOW_CONFIDENCE_RUNS,
    MAX_DF,
    MIN_FOR_SHIFT,
    PRIOR_DF,
    PRIOR_SHIFT_SIGMA,
    Noise,
    Observations,
)

MIN_CONTROLS = 3  # controls needed to estimate a re-run's own shift


@dataclass
class RunShift:
    """How the whole-run shift enters the comparison."""

    removed: float  # removed from every head run alike, shown in the evidence (0: none)
    adjust: np.ndarray  # log shift removed from each head run's values
    adjust_var: np.ndarray  # variance of that estimate, per head run
    var_b: np.ndarray  # run-to-run variance per benchmark, the shift's uncertainty added
    run_shift: float | None = None  # relative change of the full head runs as a whole
    warnings: list[str] = field(default_factory=list)


def whole_run_shift(
    obs: Observations, noise: Noise, suspected: Collection[str], config: GateConfig
) -> RunShift:
    """Noise (remove it) or real (keep the mean over the runs that measure it, remove each
    run's deviation from it, widen the intervals)? Re-runs measure theirs on the controls and
    so help to tell: a real change is in every run, a slow runner only in its own."""
    if obs.n_bench < MIN_FOR_SHIFT:
        # too few benchmarks to measure a shift: assume the prior spread of shifts
        var_b = noise.var_b + PRIOR_SHIFT_SIGMA**2 * (1 / obs.h_b + 1 / max(obs.k_total, 1))
        return RunShift(0.0, np.zeros(obs.n_cols), np.zeros(obs.n_cols), var_b)
    tau, tau_df = _spread_of_shifts(obs)
    adjust, adjust_var, measures = _measured_shifts(obs, noise, suspected, tau)
    head_shift = float(np.mean(adjust[: obs.n_heads]))  # the full head runs
    # runs on one machine shortly after each other may share their shift, so more runs are
    # not taken as more evidence that a shift is real
    shift_se = tau * math.sqrt(1 + 1 / obs.k_total)
    out = RunShift(0.0, adjust, adjust_var, noise.var_b, run_shift=math.expm1(head_shift))
    real, p_shift = _beyond_spread(head_shift, shift_se, tau_df, config)
    measured_reruns = measures & (np.arange(obs.n_cols) >= obs.n_heads)
    if real and measured_reruns.any():
        # a change of the code is in the re-runs too; a slow runner only in its own run
        rerun_shift = float(np.mean(adjust[measured_reruns]))
        same_way = (rerun_shift > 0) == (head_shift > 0)
        real = _beyond_spread(rerun_shift, shift_se, tau_df, config)[0] and same_way
        if not real:
            out.warnings.append(
                f"the head run(s) were {math.expm1(head_shift):+.1%} vs history as a whole, "
                f"the re-runs {math.expm1(rerun_shift):+.1%} on their controls: a whole-run "
                "shift of the machine, removed from each run"
            )
    if real:
        out.warnings.append(
            f"the whole run is {math.expm1(head_shift):+.1%} vs its history, beyond the "
            f"run-to-run spread of whole runs (p={p_shift:.2g}): judged as a real change "
            "(or a different machine), each benchmark on its raw change"
        )
        out.var_b = noise.var_b + tau**2 * (1 / obs.h_b + 1 / obs.k_total)
        out.adjust = adjust - head_shift
        if obs.n_cols == 1:
            out.adjust_var[:] = 0.0  # nothing removed
    else:
        out.removed = head_shift
        if abs(head_shift) >= 0.01:
            out.warnings.append(
                f"the whole run is {math.expm1(head_shift):+.1%} vs baseline, within the "
                "run-to-run spread of whole runs: removed before judging each benchmark"
            )
    return out


def _spread_of_shifts(obs: Observations) -> tuple[float, float]:
    """(s.d. of the baselines' whole-run shifts, its degrees of freedom): measured from
    `LOW_CONFIDENCE_RUNS` baseline runs on, else the prior; never below 0.1%."""
    if obs.k_total >= LOW_CONFIDENCE_RUNS:
        tau = float(np.std(obs.shifts, ddof=1))
        tau_df: float = obs.k_total - 1
    else:
        tau, tau_df = PRIOR_SHIFT_SIGMA, PRIOR_DF
    return max(tau, 1e-3), tau_df


def _measured_shifts(
    obs: Observations, noise: Noise, suspected: Collection[str], tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shift, its variance, measured?) of each head run. A full head run's shift is the
    median change over its benchmarks (robust to a few real regressions); a re-run's is the
    median over its controls, so it need not have run as fast as the head run. A re-run
    without `MIN_CONTROLS` controls is assumed to share the head runs' mean shift, with the
    spread of whole-run shifts as its variance."""
    n_heads, n_cols = obs.n_heads, obs.n_cols
    adjust = np.zeros(n_cols)
    adjust_var = np.zeros(n_cols)
    # the median of n values, each of variance pooled_var * (1 + 1/K)
    per_value = math.pi / 2 * noise.pooled_var * (1 + 1 / obs.k_total)
    adjust[:n_heads] = np.nanmedian(obs.dev[:, :n_heads], axis=0)
    adjust_var[:] = per_value / obs.n_bench
    measures = np.zeros(n_cols, dtype=bool)
    measures[:n_heads] = True
    unsuspected = np.array([n not in suspected for n in obs.names])
    for j in range(n_heads, n_cols):
        ref = np.isfinite(obs.dev[:, j]) & unsuspected
        if ref.sum() >= MIN_CONTROLS:
            adjust[j] = float(np.median(obs.dev[ref, j]))
            adjust_var[j] = per_value / int(ref.sum())
            measures[j] = True
    head_shift = float(np.mean(adjust[:n_heads]))
    # no controls: assume the re-run ran like the head runs, within the spread of shifts
    adjust[~measures] = head_shift
    adjust_var[~measures] = tau**2
    return adjust, adjust_var, measures


def _beyond_spread(
    value: float, shift_se: float, tau_df: float, config: GateConfig
) -> tuple[bool, float]:
    """(real?, two-sided p): a log shift is taken as real when it is beyond the run-to-run
    spread of whole runs (p <= alpha, a t with at most `MAX_DF` degrees of freedom) and at
    least the minimum effect."""
    p_value = 2 * sps.t.sf(abs(value) / shift_se, min(tau_df, MAX_DF))
    big = abs(math.expm1(value)) >= config.min_effect
    return p_value <= config.alpha and big, float(p_value)
