"""Contention: the one-sided noise of a shared machine, and tests that survive it.

On a shared CI runner, some runs of a benchmark come out much slower than its others, by
+20% to +200%, while the code is the same: another job held the CPU for part of the run.
Measured on real suites (tests/data/gate_corpus, benchmarks/gate_real.py), such runs are not
the tail of a symmetric law: they only ever slow a benchmark down, they come in bursts (many
benchmarks of one run), and they hit long rounds and single-shot benchmarks hardest, whose
minimum moves too. A symmetric t fitted to the calm runs calls them regressions.

Model, per benchmark b, for the log change x of one head run against its baseline centre
(the baselines' median, whole-run shift removed; robust, so a few contended runs hardly move
it or the scale):

    x = calm noise                      with probability 1 - eps[b]
    x = calm noise + contention         with probability eps[b],  contention ~ Exp(mean mu)

* `eps[b]`: the benchmark's baseline runs beyond `CONTENDED_Z` calm scales (and 5%), less
  what its calm tails make there in 19 histories of 20 (one chance exceedance is not a busy
  machine), shrunk towards the whole suite's share (`EPS_WEIGHT` pseudo-runs: contention hits
  runs, so the suite's other benchmarks tell about this one), itself shrunk towards a small
  prior (`EPS_PRIOR` over `EPS_PRIOR_CELLS` cells), so a short calm history is not taken as
  proof that the machine is never busy.
* `mu`: the mean log excess of those slow baseline runs, shrunk towards `MU_PRIOR`.
* `follow`: how often a contended baseline run is followed by a contended one (bursts): H
  runs made one after the other give contention fewer than H chances to miss them all.

Tests with H head runs of the benchmark (effects after each run's shift):
* slower: the FASTEST head run is still slow. Under the model a run is at least x slower
  with probability S(x) = (1 - eps) T_sf(x / se) + eps exp(-x / mu), so all H are with
  S(x_min) to the power of `effective_runs`: contention in one run does not carry the
  verdict, a code change (in every run) does, and with a calm history (eps ~ 0) it is the
  calm t test.
* faster: contention only slows, so the fastest run being this fast has, at most,
  p = 1 - (1 - T_cdf(x_min / se))^H under calm noise alone.
The gate takes the larger of this p and its pooled t test's (`gate_significance`), so a
verdict needs both the pooled change and the runs' floor to show it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln

from hotpath.profiler.analysis.gate_noise import t_unit

CONTENDED_Z = 3.0  # a baseline run this many calm scales slow is a contended run ...
CONTENDED_MIN = np.log(1.05)  # ... and at least this slow
EPS_WEIGHT = 10.0  # pseudo-runs of the suite's share behind each benchmark's share
FOLLOW_PRIOR_CELLS = 5.0  # pseudo-pairs behind the chance that contention follows itself
EPS_PRIOR = 0.02  # prior share of contended runs ...
EPS_PRIOR_CELLS = 20.0  # ... worth this many benchmark-runs against the suite's
MU_PRIOR = np.log(1.5)  # prior mean log excess of a contended run ...
MU_PRIOR_CELLS = 3.0  # ... worth this many contended cells
# from this share of contended baseline benchmark-runs the history is "contended": the report
# says so, and re-runs are judged as measured (`gate_shift`)
CONTENDED_SUITE = 0.03


@dataclass
class Contention:
    eps: np.ndarray  # per benchmark: chance that one run of it is contended
    mu: float  # mean log excess of a contended run
    suite_eps: float  # the suite's share of contended baseline runs (beyond calm tails)
    follow: float  # chance that the run after a contended one is contended too
    cells: int  # baseline benchmark-runs behind it


def contention(resid: np.ndarray, var_b: np.ndarray, df: float) -> Contention:
    """From the baselines' residuals (benchmarks x runs, oldest first, whole-run shifts and
    medians removed, NaN where absent), each benchmark's run-to-run variance (robust, so the
    few contended runs hardly move it) and the t's degrees of freedom of calm noise."""
    present = np.isfinite(resid)
    runs = present.sum(axis=1).astype(float)
    with np.errstate(all="ignore"):
        z = resid / np.sqrt(var_b)[:, None]
    slow = present & (np.nan_to_num(z) > CONTENDED_Z) & (np.nan_to_num(resid) > CONTENDED_MIN)
    # what calm tails put beyond the line (z is in robust s.d.s, a t's are wider than its scale)
    calm_share = float(sps.t.sf(CONTENDED_Z * t_unit(df), df))
    # a benchmark's own slow runs count only beyond what its calm tails make in 19 of 20
    # histories: one chance exceedance in 15 runs is not a busy machine
    own = np.maximum(slow.sum(axis=1) - sps.binom.ppf(0.95, runs, calm_share), 0.0)
    cells = int(present.sum())
    beyond = max(float(slow.sum()) - calm_share * cells, 0.0)
    suite_eps = (beyond + EPS_PRIOR * EPS_PRIOR_CELLS) / (cells + EPS_PRIOR_CELLS)
    eps = (own + EPS_WEIGHT * suite_eps) / (runs + EPS_WEIGHT)
    excess = resid[slow]
    mu = (float(np.sum(excess)) + MU_PRIOR * MU_PRIOR_CELLS) / (excess.size + MU_PRIOR_CELLS)
    # bursts: of the contended runs followed by another run, how many the next is contended
    pairs = slow[:, :-1] & present[:, 1:]
    both = pairs & slow[:, 1:]
    follow = (float(both.sum()) + suite_eps * FOLLOW_PRIOR_CELLS) / (
        float(pairs.sum()) + FOLLOW_PRIOR_CELLS
    )
    return Contention(np.clip(eps, 0.0, 0.9), mu, suite_eps, follow, cells)


def effective_runs(runs: np.ndarray, model: Contention) -> np.ndarray:
    """How many independent chances H runs made one after the other give contention to miss
    all of them: a contended run is followed by another with probability `follow`, not eps,
    so each further run adds (1 - follow) / (1 - eps) of an independent one (Markov chain)."""
    gain = np.clip((1 - model.follow) / np.maximum(1 - model.eps, 1e-9), 0.0, 1.0)
    return np.where(runs > 0, 1 + (runs - 1) * gain, 0)


def floor_p(
    effects: np.ndarray, se: np.ndarray, df: float, model: Contention
) -> tuple[np.ndarray, np.ndarray]:
    """(p slower, p faster) per benchmark from the fastest of its runs in `effects`
    (benchmarks x runs, NaN where absent, log changes against the baseline centre);
    p = 1 where a benchmark has no run."""
    present = np.isfinite(effects)
    h = present.sum(axis=1)
    if effects.shape[1] == 0:
        ones = np.ones(effects.shape[0])
        return ones, ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without a run
        fastest = np.nanmin(np.where(present, effects, np.nan), axis=1)
    x = np.nan_to_num(fastest, nan=0.0)
    z = x / se
    one_slow = (1 - model.eps) * sps.t.sf(z, df) + model.eps * np.exp(
        -np.maximum(x, 0.0) / model.mu
    )
    one_slow = np.where(x > 0, np.minimum(one_slow, 1.0), 1.0)
    runs = effective_runs(h, model)
    p_slow = np.where(h > 0, one_slow**runs, 1.0)
    p_fast = np.where(h > 0, 1 - (1 - sps.t.cdf(z, df)) ** h, 1.0)
    return p_slow, p_fast


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def precedence_p(
    runs: np.ndarray, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p slower, p faster, t slower, t faster) per benchmark of its `runs` against its
    baseline runs `base` (benchmarks x runs, log values, NaN where absent), free of any noise
    model: a busy machine only slows, so both directions compare the calm, fast ends.
    * slower: the t fastest baseline runs are all faster than the fastest of the R runs; with
      no change (all K + R runs exchangeable) the t fastest of them are all baselines with
      probability C(K, t) / C(K + R, t);
    * faster: t of the runs are faster than the fastest baseline run: C(R, t) / C(K + R, t).
    Ties count against the change; p = 1 where either side has no run."""
    r_in, b_in = np.isfinite(runs), np.isfinite(base)
    r, k = r_in.sum(axis=1), b_in.sum(axis=1)
    both = (r > 0) & (k > 0)
    fastest_run = np.where(r_in, runs, np.inf).min(axis=1, initial=np.inf)
    fastest_base = np.where(b_in, base, np.inf).min(axis=1, initial=np.inf)
    slow_t = np.sum(b_in & (base < fastest_run[:, None]), axis=1)
    fast_t = np.sum(r_in & (runs < fastest_base[:, None]), axis=1)
    p_slow = np.exp(_log_choose(k, slow_t) - _log_choose(k + r, slow_t))
    p_fast = np.exp(_log_choose(r, fast_t) - _log_choose(k + r, fast_t))
    return np.where(both, p_slow, 1.0), np.where(both, p_fast, 1.0), slow_t, fast_t


def precedence_resolution(baseline_runs: np.ndarray, runs: np.ndarray | int) -> np.ndarray:
    """What `precedence_p` can tell with K baseline runs and R runs: its p for a slowdown when
    all baseline runs but one (a contended one, say) are faster than the fastest run,
    K / C(K+R, K-1)."""
    k = np.asarray(baseline_runs, dtype=float)
    t = np.maximum(k - 1, 0)
    return np.exp(_log_choose(k, t) - _log_choose(k + runs, t))
