"""The benchmark gate's noise model: the runs as matrices of log medians, each benchmark's
run-to-run scale (shrunk towards the pooled one, because history is short), the tails of the
t that judges them, and the pooling of several head runs per benchmark.

Model (log space, benchmark b, run k): log median[b, k] = centre[b] + shift[k] + noise[b, k];
`gate.py`'s docstring says why each part is estimated the way it is."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from hotpath.profiler.formats.pytest_benchmark import BenchRun, BenchStats

PRIOR_SIGMA = 0.04  # log-scale run-to-run noise of one benchmark when history cannot tell
PRIOR_SHIFT_SIGMA = 0.03  # log-scale spread of whole-run shifts when history cannot tell
PRIOR_DF = 3.0  # pseudo-runs the pooled scale is worth when shrinking per-benchmark scales
MAX_DF = 4.0  # heavy tails: never judge one run with a t of more degrees of freedom than this
TAIL_DF_PER_RUN = 4.0  # ... and H pooled runs with at most this many per run
MIN_FOR_SHIFT = 8  # common benchmarks needed to estimate a whole-run shift
LOW_CONFIDENCE_RUNS = 3  # fewer baseline runs than this: say so
MAD_EFFICIENCY = 0.37  # of 1.4826 x MAD against the sample s.d., for normal noise
HUBER_K = 1.5  # head runs further than this many run-to-run scales from the pool are clipped
HUBER_STEPS = 10


def robust_scale(values: np.ndarray) -> float:
    """Sample s.d. for few values (MAD is too coarse there), 1.4826 x MAD from 5 values on."""
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan
    if values.size < 5:
        return float(np.std(values, ddof=1))
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _robust_scales(rows: np.ndarray) -> np.ndarray:
    """`robust_scale` of each row (NaN = absent), in one pass over the matrix."""
    finite = np.isfinite(rows)
    count = finite.sum(axis=1)
    out = np.full(rows.shape[0], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with fewer than 2 values
        few = (count >= 2) & (count < 5)
        if few.any():
            out[few] = np.nanstd(rows[few], axis=1, ddof=1)
        many = count >= 5
        if many.any():
            part = rows[many]
            centre = np.nanmedian(part, axis=1)
            out[many] = 1.4826 * np.nanmedian(np.abs(part - centre[:, None]), axis=1)
    return out


def round_variance(bench: BenchStats) -> float:
    """Per-round variance of log time, cv^2, from IQR / 1.349 when written (one slow outlier
    round must not blow up the stddev); NaN when a run cannot tell (one round)."""
    if bench.rounds < 2 or bench.median <= 0:
        return math.nan
    spread = bench.iqr / 1.349 if bench.iqr is not None else bench.stddev
    return (spread / bench.median) ** 2


@dataclass
class Observations:
    """The runs of one comparison as benchmarks x runs matrices of log medians (NaN where a
    run lacks a benchmark), with the baselines' whole-run shifts and centres."""

    names: list[str]
    base: np.ndarray  # log medians, benchmarks x baseline runs
    head: np.ndarray  # log medians, benchmarks x head runs (re-runs last)
    head_excess: np.ndarray  # variance a head run's median has beyond a typical baseline's
    n_heads: int  # full head runs; the columns after them are re-runs
    k_total: int  # baseline runs
    k_b: np.ndarray  # baseline runs per benchmark
    present: np.ndarray  # benchmarks x head runs: which runs have the benchmark
    h_b: np.ndarray  # head runs per benchmark, >= 1: the first head run has every name
    shifts: np.ndarray  # whole-run shift of each baseline run
    centre: np.ndarray  # each benchmark's baseline centre, shifts removed
    dev: np.ndarray  # raw log change of each head run against the centre

    @property
    def n_bench(self) -> int:
        return len(self.names)

    @property
    def n_cols(self) -> int:
        return self.head.shape[1]


def _log_medians(
    runs: Sequence[BenchRun], names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log medians, per-round variances, rounds), benchmarks x runs, NaN where absent."""
    maps = [r.by_fullname() for r in runs]
    logs, cv2, rounds = np.full((3, len(names), len(runs)), np.nan)
    for i, name in enumerate(names):
        for k, m in enumerate(maps):
            bench = m.get(name)
            if bench is not None and bench.median > 0:
                logs[i, k] = math.log(bench.median)
                cv2[i, k] = round_variance(bench)
                rounds[i, k] = bench.rounds
    return logs, cv2, rounds


def _head_excess(
    base_cv2: np.ndarray, base_rounds: np.ndarray, head_cv2: np.ndarray, head_rounds: np.ndarray
) -> np.ndarray:
    """A head run with fewer rounds than the baselines' typical count has a noisier median:
    pi/2 * cv^2 * (1/rounds - 1/typical rounds) more variance, with the per-round spread cv
    from history (its median over runs; a run's own IQR can be 100x its usual)."""
    n_names = base_cv2.shape[0]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no spread known
        has_runs = base_cv2.shape[1] > 0
        cv2 = np.nanmedian(base_cv2, axis=1) if has_runs else np.full(n_names, np.nan)
        cv2 = np.where(np.isfinite(cv2), cv2, np.nanmedian(head_cv2, axis=1))
        typical = np.nanmedian(base_rounds, axis=1) if has_runs else np.full(n_names, np.nan)
        typical = np.where(np.isfinite(typical), typical, head_rounds[:, 0])
        excess = math.pi / 2 * cv2[:, None] * (1 / head_rounds - 1 / typical[:, None])
    return np.nan_to_num(np.maximum(excess, 0.0))


def _run_shifts(base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift of each baseline run, centre of each benchmark), alternating medians."""
    shifts = np.zeros(base.shape[1])
    centre = np.nanmedian(base, axis=1)  # every row has a value: names come from the runs
    if base.shape[0] >= MIN_FOR_SHIFT and base.shape[1] > 1:
        for _ in range(3):
            shifts = np.nan_to_num(np.nanmedian(base - centre[:, None], axis=0))
            shifts -= np.median(shifts)
            centre = np.nanmedian(base - shifts[None, :], axis=1)
    return shifts, centre


def observe(
    heads: Sequence[BenchRun], reruns: Sequence[BenchRun], runs: list[BenchRun], names: list[str]
) -> Observations:
    """The matrices the gate judges: head runs then re-runs as columns of `head`, the
    baselines (oldest first) as columns of `base`, each benchmark's centre and change."""
    base, base_cv2, base_rounds = _log_medians(runs, names)
    head, head_cv2, head_rounds = _log_medians([*heads, *reruns], names)
    shifts, centre = _run_shifts(base)
    present = np.isfinite(head)
    return Observations(
        names=names,
        base=base,
        head=head,
        head_excess=_head_excess(base_cv2, base_rounds, head_cv2, head_rounds),
        n_heads=len(heads),
        k_total=len(runs),
        k_b=np.sum(np.isfinite(base), axis=1),
        present=present,
        h_b=np.sum(present, axis=1),
        shifts=shifts,
        centre=centre,
        dev=head - centre[:, None],
    )


@dataclass
class Noise:
    """Each benchmark's run-to-run variance (log scale) and what its estimate is worth."""

    pooled_var: float  # the typical benchmark's, from all benchmarks or assumed
    pooled_note: str  # where `pooled_var` comes from, for the low-confidence warning
    var_b: np.ndarray  # per benchmark, shrunk towards `pooled_var`
    scale_df: np.ndarray  # degrees of freedom the per-benchmark estimate is worth


def benchmark_noise(obs: Observations) -> Noise:
    """Each benchmark's run-to-run variance: its own scale over the baselines (whole-run shifts
    removed) shrunk towards the pooled scale with `PRIOR_DF` pseudo-runs, because K is small.
    Without enough measured benchmarks the pooled scale is the prior `PRIOR_SIGMA` or, when
    larger, half the head-vs-baseline variance across benchmarks (most do not change)."""
    resid = obs.base - obs.shifts[None, :] - obs.centre[:, None]
    scales = _robust_scales(resid)
    df_b = np.maximum(obs.k_b - 1, 0).astype(float)
    measured = np.isfinite(scales) & (df_b > 0)
    if measured.sum() >= 3:
        # median of s^2 underestimates sigma^2 for a chi-square with few df: rescale
        dfm = float(np.median(df_b[measured]))
        pooled_var = float(np.median(scales[measured] ** 2)) / (sps.chi2.median(dfm) / dfm)
        pooled_var = max(pooled_var, 1e-6)
        pooled_note = f"pooled from {int(measured.sum())} benchmarks"
    else:
        pooled_var = PRIOR_SIGMA**2
        pooled_note = "prior"
        if obs.n_bench >= MIN_FOR_SHIFT:
            # with one baseline run, the head-vs-baseline spread across benchmarks (most do not
            # change) measures twice the run-to-run variance on this machine
            spread = robust_scale(obs.dev[:, 0]) ** 2 / 2
            if spread > pooled_var:
                pooled_var, pooled_note = spread, "head-vs-baseline spread across benchmarks"
    var_b = np.where(
        measured,
        (PRIOR_DF * pooled_var + df_b * np.nan_to_num(scales) ** 2) / (PRIOR_DF + df_b),
        pooled_var,
    )
    # what the scale estimate is worth in degrees of freedom: a MAD (5 runs on) has the
    # efficiency of a sample s.d. from ~37% as many runs
    efficiency = np.where(obs.k_b >= 5, MAD_EFFICIENCY, 1.0)
    scale_df = np.where(measured, PRIOR_DF + df_b * efficiency, PRIOR_DF)
    return Noise(pooled_var, pooled_note, var_b, scale_df)


def tail_df(scale_df: np.ndarray, head_runs: np.ndarray) -> np.ndarray:
    """Degrees of freedom of the t: those of the scale estimate, but at most `MAX_DF` per head
    run pooled. One run's noise is heavy-tailed (t(4)-like), so a single run is never judged
    with a lighter tail than t(4), the tail benchmarks/gate_accuracy.py assumes; the clipped
    mean of H runs has lighter tails, validated by that study's false-alarm rate."""
    return np.minimum(scale_df, np.maximum(MAX_DF, TAIL_DF_PER_RUN * head_runs))


@dataclass
class Pool:
    """Head runs pooled per benchmark: a Huber M-estimate of their mean, with the benchmark's
    own run-to-run scale (known from history), so one wild run cannot carry a verdict; with
    one or two runs it is the plain mean. Its variance is taken as scale^2 / H."""

    effects: np.ndarray  # log change of each head run after its shift, NaN where absent
    adjust_var: np.ndarray  # variance of each head run's removed shift
    head_excess: np.ndarray  # variance of a head run's median beyond a baseline's
    var_b: np.ndarray  # run-to-run variance per benchmark
    k_b: np.ndarray  # baseline runs per benchmark

    def over(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(effect, se, head runs) over the head-run columns `cols`; NaN where none."""
        values = self.effects[:, cols]
        present = np.isfinite(values)
        h = np.sum(present, axis=1)
        scale = np.sqrt(self.var_b)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows without a run: NaN
            centre = np.nanmedian(values, axis=1) if cols.size else np.full(len(h), np.nan)
            for _ in range(HUBER_STEPS):
                low, high = centre - HUBER_K * scale, centre + HUBER_K * scale
                centre = np.nanmean(np.clip(values, low[:, None], high[:, None]), axis=1)
            hh = np.maximum(h, 1)
            shift_var = np.sum(np.where(present, self.adjust_var[None, cols], 0.0), axis=1) / hh**2
            within = np.where(present, self.head_excess[:, cols], 0.0)
            var = self.var_b / hh + self.baseline_var() + shift_var
            se = np.sqrt(var + np.sum(within, axis=1) / hh**2)
        return np.where(h > 0, centre, np.nan), se, h

    def baseline_var(self) -> np.ndarray:
        """The variance of the baseline centre, what no number of head runs removes: a median
        of the baselines, pi/2 times the variance of a mean."""
        return self.var_b * math.pi / 2 / np.maximum(self.k_b, 1)
