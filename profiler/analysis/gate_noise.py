"""The benchmark gate's noise model: the runs as matrices of log values (each benchmark's
minimum when it has rounds enough, else its median), each benchmark's run-to-run scale
(shrunk towards the pooled one, because history is short), the tails of the t that judges
them, the pooling of several head runs per benchmark, and the slow episodes of a head run.

Model (log space, benchmark b, run k): log value[b, k] = centre[b] + shift[k] + noise[b, k];
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
# A benchmark is judged on its minimum from this many rounds on (head and typical baseline):
# on a shared runner a contention episode slows a share of a run's rounds, which moves the
# median up to 2x while the minimum stays (benchmarks/gate_corpus); with fewer rounds the
# minimum is as noisy as the median and biased by the count of rounds, so the median it is.
MIN_ROUNDS_FOR_MIN = 5
# A head run's benchmark had a slow episode when its median/minimum ratio exceeds its usual
# (the baselines' median) by this much in log and by EPISODE_Z of that ratio's robust spread
EPISODE_LOG = math.log(1.10)
EPISODE_Z = 4.0


def robust_scale(values: np.ndarray) -> float:
    """Sample s.d. for few values (MAD is too coarse there), 1.4826 x MAD from 5 values on."""
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan
    if values.size < 5:
        return float(np.std(values, ddof=1))
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def t_unit(df: np.ndarray | float) -> np.ndarray:
    """A Student t's robust s.d. (`robust_scale` of it: 1.4826 x its MAD, the MAD being its 75%
    point) in units of its scale: a t's scale is that much smaller than its robust s.d."""
    return 1.4826 * sps.t.ppf(0.75, df)


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
    """The runs of one comparison as benchmarks x runs matrices of log values (NaN where a
    run lacks a benchmark), with the baselines' whole-run shifts and centres."""

    names: list[str]
    base: np.ndarray  # log values, benchmarks x baseline runs
    head: np.ndarray  # log values, benchmarks x head runs (re-runs last)
    head_excess: np.ndarray  # variance a head run's median has beyond a typical baseline's
    n_heads: int  # full head runs; the columns after them are re-runs
    k_total: int  # baseline runs
    k_b: np.ndarray  # baseline runs per benchmark
    present: np.ndarray  # benchmarks x head runs: which runs have the benchmark
    h_b: np.ndarray  # head runs per benchmark, >= 1: the first head run has every name
    shifts: np.ndarray  # whole-run shift of each baseline run
    centre: np.ndarray  # each benchmark's baseline centre, shifts removed
    dev: np.ndarray  # raw log change of each head run against the centre
    on_min: np.ndarray  # per benchmark: judged on its minimum (else its median)
    episodes: np.ndarray  # benchmarks x full head runs: a slow episode (`slow_episodes`)

    @property
    def n_bench(self) -> int:
        return len(self.names)

    @property
    def n_cols(self) -> int:
        return self.head.shape[1]


@dataclass
class _Matrices:
    """One side's runs as benchmarks x runs matrices, NaN where a run lacks a benchmark."""

    median: np.ndarray  # log median
    low: np.ndarray  # log minimum (NaN when 0)
    cv2: np.ndarray  # per-round variance of log time
    rounds: np.ndarray


def _matrices(runs: Sequence[BenchRun], names: list[str]) -> _Matrices:
    maps = [r.by_fullname() for r in runs]
    median, low, cv2, rounds = np.full((4, len(names), len(runs)), np.nan)
    for i, name in enumerate(names):
        for k, m in enumerate(maps):
            bench = m.get(name)
            if bench is not None and bench.median > 0:
                median[i, k] = math.log(bench.median)
                low[i, k] = math.log(bench.min) if bench.min > 0 else math.nan
                cv2[i, k] = round_variance(bench)
                rounds[i, k] = bench.rounds
    return _Matrices(median, low, cv2, rounds)


def judged_on_minimum(base: _Matrices, head: _Matrices, statistic: str) -> np.ndarray:
    """Which benchmarks are judged on their minimum: `statistic` "auto", rounds enough in
    the first head run and in the typical baseline run, and a minimum everywhere present."""
    if statistic != "auto":
        return np.zeros(head.median.shape[0], dtype=bool)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no baseline runs: all-NaN rows
        typical = np.nanmedian(base.rounds, axis=1) if base.rounds.shape[1] else head.rounds[:, 0]
    enough = (head.rounds[:, 0] >= MIN_ROUNDS_FOR_MIN) & (
        np.nan_to_num(typical) >= MIN_ROUNDS_FOR_MIN
    )
    complete = np.all(np.isfinite(base.low) | ~np.isfinite(base.median), axis=1) & np.all(
        np.isfinite(head.low) | ~np.isfinite(head.median), axis=1
    )
    return enough & complete


def slow_episodes(base: _Matrices, head: _Matrices) -> np.ndarray:
    """benchmarks x head runs: where a head run's median/minimum ratio lies far above the
    benchmark's usual (a share of its rounds ran slow while others did not: contention on a
    shared machine, not the code, which would move the minimum too)."""
    base_gap, head_gap = base.median - base.low, head.median - head.low
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        unknown = np.full(len(head_gap), np.nan)
        usual = np.nanmedian(base_gap, axis=1) if base_gap.shape[1] else unknown
        spread = _robust_scales(base_gap) if base_gap.shape[1] else unknown
        excess = head_gap - usual[:, None]
        far = np.maximum(EPISODE_LOG, EPISODE_Z * np.nan_to_num(spread))[:, None]
        return np.nan_to_num(excess, nan=-np.inf) > far


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
    heads: Sequence[BenchRun],
    reruns: Sequence[BenchRun],
    runs: list[BenchRun],
    names: list[str],
    statistic: str = "auto",
) -> Observations:
    """The matrices the gate judges: head runs then re-runs as columns of `head`, the
    baselines (oldest first) as columns of `base`, each benchmark's centre and change."""
    base_m = _matrices(runs, names)
    head_m = _matrices([*heads, *reruns], names)
    on_min = judged_on_minimum(base_m, head_m, statistic)
    base = np.where(on_min[:, None], base_m.low, base_m.median)
    head = np.where(on_min[:, None], head_m.low, head_m.median)
    shifts, centre = _run_shifts(base)
    present = np.isfinite(head)
    # the count of rounds changes a median's noise; a minimum's is not modelled that way
    excess = _head_excess(base_m.cv2, base_m.rounds, head_m.cv2, head_m.rounds)
    return Observations(
        names=names,
        base=base,
        head=head,
        head_excess=np.where(on_min[:, None], 0.0, excess),
        n_heads=len(heads),
        k_total=len(runs),
        k_b=np.sum(np.isfinite(base), axis=1),
        present=present,
        h_b=np.sum(present, axis=1),
        shifts=shifts,
        centre=centre,
        dev=head - centre[:, None],
        on_min=on_min,
        episodes=slow_episodes(base_m, head_m)[:, : len(heads)],
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
