"""How sure the benchmark gate is of each benchmark's change: the pooled change of the head
runs with its standard error, one-sided t tests in each direction, Benjamini-Hochberg
q-values in families, a re-run suspect's re-runs on their own, and the smallest slowdown the
runs at hand would find (`detectable`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_contention import (
    Contention,
    floor_p,
    precedence_p,
    precedence_resolution,
)
from hotpath.profiler.analysis.gate_noise import (
    MAX_DF,
    Noise,
    Observations,
    Pool,
    t_unit,
    tail_df,
)
from hotpath.profiler.analysis.gate_shift import RunShift

CONFIRM_P = 0.03  # a suspect's re-runs alone must show its change at this one-sided level
# re-runs are judged by the precedence test where the runs it will have can pass this level
# with one baseline run out of place (the strict level of an interim look,
# `gate_confirm.EARLY_SHARE` x CONFIRM_P), else by the noise model's t test
PRECEDENCE_LEVEL = 0.1 * CONFIRM_P
POWER = 0.8  # of the `detectable` change
# tails of a benchmark's calm run-to-run noise: t(4) holds the false-alarm bar on the real
# corpus (gate_noise_fit.py fits t(3.1) on its fast side, shift errors of busy runs included)
CALM_DF = MAX_DF


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """q-values: reject at FDR alpha where q <= alpha (step-up, monotone)."""
    p = np.asarray(p_values, dtype=float)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(n)
    q[order] = np.minimum(ranked, 1.0)
    return q


@dataclass
class Evidence:
    """Per benchmark (arrays in the order of `Observations.names`): its change in log space
    and everything a verdict and its evidence text are made of."""

    effect: np.ndarray  # pooled log change of the head runs, whole-run shift removed
    se: np.ndarray  # its standard error
    baseline_se: np.ndarray  # the part of `se` no head re-run can reduce
    p: np.ndarray  # one-sided p in the direction of the change
    q: np.ndarray  # its Benjamini-Hochberg q within its family
    t_crit: np.ndarray  # two-sided 95% quantile of the t, for the interval
    rerun_counts: np.ndarray  # confirmation re-runs that have the benchmark
    rerun_effect: np.ndarray  # log change of the re-runs alone (NaN without re-runs)
    rerun_se: np.ndarray  # ... its standard error
    rerun_p: np.ndarray  # ... and one-sided p in its own direction
    detectable: np.ndarray  # log slowdown these runs find with probability `POWER`
    confirming: np.ndarray  # judged as re-run suspects (their own BH family, re-runs alone)
    # re-run benchmarks judged by the precedence test, and its count of runs beyond the other
    # side's fastest in the direction of the change (`gate_contention.precedence_p`)
    precedence: np.ndarray
    beyond: np.ndarray
    centre: np.ndarray  # baseline centre (log seconds)
    removed: float  # whole-run shift removed from every head run alike
    var_b: np.ndarray  # run-to-run variance, the shift's uncertainty included
    h_b: np.ndarray  # head runs pooled
    k_b: np.ndarray  # baseline runs
    contended: float = 0.0  # share of the baselines' benchmark-runs contended (beyond calm tails)


def significance(
    obs: Observations,
    noise: Noise,
    shift: RunShift,
    suspected: Collection[str],
    config: GateConfig,
    rounds: int | None = None,
    busy: Contention | None = None,
) -> Evidence:
    """Pool each benchmark's head runs (re-runs included) after their shifts, test the change
    against the benchmark's noise, and measure what the re-runs show on their own. `rounds`:
    the re-run rounds there will be at most (default: those at hand), which decides how a
    re-run suspect is judged (`_by_precedence`); `busy` the history's contention
    (`gate_contention.contention`; None: not modelled, `GateConfig.contention` off)."""
    pooled = Pool(obs.dev - shift.adjust[None, :], shift.adjust_var, obs.head_excess,
                  shift.var_b, obs.k_b)  # fmt: skip
    effect, se, _ = pooled.over(np.arange(obs.n_cols))
    df = tail_df(noise.scale_df, obs.h_b)
    # scales from 5 runs on are robust s.d.s (1.4826 MAD); a t's scale is smaller than its
    # robust s.d. by `t_unit`: in the t's own units the standard errors are that much smaller
    unit = np.where(obs.k_b >= 5, t_unit(df), 1.0)
    se = se / unit
    rerun_counts = np.sum(obs.present[:, obs.n_heads :], axis=1)
    # re-run benchmarks the precedence test judges: the suspects and the controls (chosen for
    # looking unchanged, so a change their re-runs show is no winner's curse)
    by_rank, rank_slow, rank_fast, ranks = _by_precedence(obs, shift, rerun_counts > 0, rounds)
    suspect = np.array([n in suspected for n in obs.names])
    confirming = (suspect & (rerun_counts > 0)) | by_rank
    rerun_effect, rerun_se, rerun_df, rerun_p = _reruns_alone(pooled, obs, noise, unit)
    t_stat = effect / se
    p_slow, p_fast = sps.t.sf(t_stat, df), sps.t.cdf(t_stat, df)
    contended = 0.0
    if busy is not None:
        # a contended run cannot carry a slowdown: the fastest run must show it too
        one_run_se = np.sqrt(shift.var_b + pooled.baseline_var()) / np.where(
            obs.k_b >= 5, t_unit(CALM_DF), 1.0
        )
        floor_slow, floor_fast = floor_p(pooled.effects, one_run_se, CALM_DF, busy)
        p_slow, p_fast = np.maximum(p_slow, floor_slow), np.maximum(p_fast, floor_fast)
        r_slow, r_fast = floor_p(pooled.effects[:, obs.n_heads :], one_run_se, CALM_DF, busy)
        rerun_p = np.maximum(rerun_p, np.where(rerun_effect > 0, r_slow, r_fast))
        contended = busy.suite_eps
    p_slow, p_fast = np.where(by_rank, rank_slow, p_slow), np.where(by_rank, rank_fast, p_fast)
    rerun_p = np.where(by_rank, np.where(effect > 0, rank_slow, rank_fast), rerun_p)
    beyond = np.where(effect > 0, *ranks)
    p, q = _tested(effect, p_slow, p_fast, confirming, config.per_benchmark)
    family_size = np.where(
        confirming, max(int(confirming.sum()), 1), max(int((~confirming).sum()), 1)
    )
    found = detectable(se, df, config.level / np.where(config.per_benchmark, 1, family_size))
    # a re-run suspect must also show it on its re-runs alone
    found = np.where(
        confirming,
        np.maximum(found, detectable(np.nan_to_num(rerun_se, nan=np.inf), rerun_df, CONFIRM_P)),
        found,
    )
    return Evidence(
        effect=effect,
        se=se,
        baseline_se=np.sqrt(pooled.baseline_var()),
        p=p,
        q=q,
        t_crit=sps.t.ppf(0.975, df),
        rerun_counts=rerun_counts,
        rerun_effect=rerun_effect,
        rerun_se=rerun_se,
        rerun_p=rerun_p,
        detectable=found,
        centre=obs.centre,
        removed=shift.removed,
        var_b=shift.var_b,
        h_b=obs.h_b,
        k_b=obs.k_b,
        contended=contended,
        confirming=confirming,
        precedence=by_rank,
        beyond=beyond,
    )


def _by_precedence(
    obs: Observations, shift: RunShift, rerun: np.ndarray, rounds: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(judged by it, p slower, p faster, (t slower, t faster)) of the precedence test of
    each re-run benchmark's re-runs alone against its baseline runs, each run with the shift
    the gate removes from it (none where the history is contended, `gate_shift._kept`): no
    noise scale is assumed, so neither a contended history (runs slowed unevenly, a busy
    machine only slows) nor a noise that is no t (two modes) misleads it. It judges a re-run
    benchmark whose K baseline runs and `rounds` re-runs (default: those at hand) can pass
    `PRECEDENCE_LEVEL` with one baseline run out of place (`precedence_resolution`), decided
    before any re-run (K >= 20 with 3 re-runs, 15 with 4, 10 with 5, 8 with 6); the t test
    of `_reruns_alone` the others: with fewer runs the precedence test is too coarse."""
    reruns = obs.head[:, obs.n_heads :] - shift.adjust[None, obs.n_heads :]
    base = obs.base if shift.kept else obs.base - obs.shifts[None, :]
    rounds = reruns.shape[1] if rounds is None else rounds
    p_slow, p_fast, t_slow, t_fast = precedence_p(reruns, base)
    resolves = precedence_resolution(obs.k_b, max(rounds, 1)) <= PRECEDENCE_LEVEL
    return rerun & resolves, p_slow, p_fast, (t_slow, t_fast)


def _tested(
    effect: np.ndarray,
    p_slow: np.ndarray,
    p_fast: np.ndarray,
    confirming: np.ndarray,
    per_benchmark: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(p, q): one-sided in each direction, each with its own BH, because the gate asks
    "slower?" and improvements are a separate family. The re-run suspects form their own
    families beside the benchmarks not re-run: their re-runs are independent of the screen
    that chose them (and must show the change on their own too, see `gate_judge`).
    `per_benchmark` (`GateConfig.control`): no correction, q = p."""
    slower = effect > 0
    p = np.where(slower, p_slow, p_fast)
    if per_benchmark:
        return p, p.copy()
    q = np.ones(effect.size)
    for family in (~confirming, confirming):
        if family.any():
            q[family] = np.where(
                slower[family],
                benjamini_hochberg(p_slow[family]),
                benjamini_hochberg(p_fast[family]),
            )
    return p, q


def _reruns_alone(
    pooled: Pool, obs: Observations, noise: Noise, unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log change, se, t degrees of freedom, one-sided p) of the confirmation re-runs on
    their own, free of the head run that chose the suspects; NaN change without re-runs."""
    rerun_effect, rerun_se, rerun_h = pooled.over(np.arange(obs.n_heads, obs.n_cols))
    rerun_se = rerun_se / unit
    with np.errstate(all="ignore"):
        rerun_t = np.nan_to_num(rerun_effect / rerun_se)
    rerun_df = tail_df(noise.scale_df, np.maximum(rerun_h, 1))
    rerun_p = np.where(rerun_effect > 0, sps.t.sf(rerun_t, rerun_df), sps.t.cdf(rerun_t, rerun_df))
    return rerun_effect, rerun_se, rerun_df, rerun_p


def detectable(se: np.ndarray, df: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    """Log slowdown found with probability `POWER` by a one-sided t at `level` (a regression's
    p must pass BH, which for the first of m benchmarks is alpha/m: the level used is that,
    so the figure is what one regression among m unchanged benchmarks needs)."""
    return (sps.t.isf(level, df) + sps.t.ppf(POWER, df)) * se
