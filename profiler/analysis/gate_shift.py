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
    kept: bool = False  # no shift removed from any run, the baselines' included (`_kept`)


def whole_run_shift(
    obs: Observations,
    noise: Noise,
    suspected: Collection[str],
    config: GateConfig,
    contended: bool = False,
) -> RunShift:
    """Noise (remove it) or real (keep the mean over the runs that measure it, remove each
    run's deviation from it, widen the intervals)? Re-runs measure theirs on the controls and
    so help to tell: a real change is in every run, a slow runner only in its own. With
    re-runs of a `contended` history, neither: see `_kept`."""
    if obs.n_bench < MIN_FOR_SHIFT:
        # too few benchmarks to measure a shift: assume the prior spread of shifts
        var_b = noise.var_b + PRIOR_SHIFT_SIGMA**2 * (1 / obs.h_b + 1 / max(obs.k_total, 1))
        return RunShift(0.0, np.zeros(obs.n_cols), np.zeros(obs.n_cols), var_b)
    tau, tau_df = _spread_of_shifts(obs)
    if contended and obs.n_cols > obs.n_heads:
        return _kept(obs, noise, tau)
    adjust, adjust_var, measures = _measured_shifts(obs, noise, suspected, tau)
    head_shift = float(np.mean(adjust[: obs.n_heads]))  # the full head runs
    # runs on one machine shortly after each other may share their shift, so more runs are
    # not taken as more evidence that a shift is real
    shift_se = tau * math.sqrt(1 + 1 / obs.k_total)
    out = RunShift(0.0, adjust, adjust_var, noise.var_b, run_shift=math.expm1(head_shift))
    real, p_shift = _beyond_spread(head_shift, shift_se, tau_df, config)
    reruns = measures & (np.arange(obs.n_cols) >= obs.n_heads)
    if reruns.any():
        # a change of the code is in every run, a slow runner only in its own: the head runs
        # and the re-runs that measured their own shift decide together, so a head run inside
        # the spread does not hide a shift all re-runs show, nor one beyond it stand alone;
        # the head runs and the re-runs must each show it (re-runs on a busier runner do not)
        together = float(np.mean(adjust[measures]))
        rerun_shift = float(np.mean(adjust[reruns]))
        alone = real
        real, p_shift = _beyond_spread(together, shift_se, tau_df, config)
        shown = [math.copysign(1, together) * math.expm1(x) for x in (head_shift, rerun_shift)]
        real = real and min(shown) >= config.min_effect
        if real:
            head_shift = together
        elif alone:
            out.warnings.append(
                f"the head run(s) were {math.expm1(head_shift):+.1%} vs history as a whole, "
                f"the re-runs {math.expm1(rerun_shift):+.1%}: a whole-run "
                "shift of the machine, removed from each run"
            )
    if real:
        who = "the head run(s) and re-runs are" if reruns.any() else "the whole run is"
        out.warnings.append(
            f"{who} {math.expm1(head_shift):+.1%} vs history, beyond the run-to-run "
            f"spread of whole runs (p={p_shift:.2g}): judged as a real change "
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


def _kept(obs: Observations, noise: Noise, tau: float) -> RunShift:
    """Re-runs of a contended history: every run is judged as measured, no whole-run shift
    removed, its spread added to each benchmark's uncertainty. On a busy shared machine a
    run's "shift" (the median change of its benchmarks) is mostly a slow episode that hit its
    benchmarks unevenly (gate_contention); removing it makes the benchmarks it missed look
    fast and takes a change to most of the suite for the machine's. A busy machine only
    slows, so the re-runs are judged on their fastest (`gate_contention.precedence_p`)."""
    shifts = np.nanmedian(obs.dev[:, : obs.n_heads], axis=0)
    head_shift = float(np.mean(shifts))
    zeros = np.zeros(obs.n_cols)
    var_b = noise.var_b + tau**2 * (1 / obs.h_b + 1 / obs.k_total)
    note = (
        f"contended history: whole-run shifts are slow episodes here, none removed (the head "
        f"run was {math.expm1(head_shift):+.1%} vs history); each benchmark judged on its "
        "runs as measured"
    )
    return RunShift(0.0, zeros, zeros.copy(), var_b, math.expm1(head_shift), [note], kept=True)


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
        held = np.isfinite(obs.dev[:, j])
        ref = held & unsuspected
        if ref.sum() < MIN_CONTROLS and held.sum() >= MIN_FOR_SHIFT:
            ref = held  # a small suite's re-run holds it nearly whole: like a full head run
        if ref.sum() >= MIN_CONTROLS:
            adjust[j] = float(np.median(obs.dev[ref, j]))
            adjust_var[j] = per_value / int(ref.sum())
            measures[j] = True
    # not measured: assume the re-run ran like the re-runs that were (made next to it), else
    # like the head runs, within the spread of shifts
    measured = measures[n_heads:]
    like = adjust[n_heads:][measured] if measured.any() else adjust[:n_heads]
    adjust[~measures] = float(np.mean(like))
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
