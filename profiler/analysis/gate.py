"""Statistics of the benchmark gate: is a pytest-benchmark run slower than its history?

Model (log space, per benchmark b and run k):

    log value[b, k] = centre[b] + shift[k] + noise[b, k]

* `value` is the benchmark's **minimum** when it has `MIN_ROUNDS_FOR_MIN` rounds or more (in
  the head run and in the typical baseline run), else its median (with one round, median,
  mean and minimum are the same time). Fitted to real suites run on a shared 2-core machine
  (tests/data/gate_corpus, benchmarks/gate_real.py): there a contention episode slows a share
  of one benchmark's rounds, so its median jumps (up to 2x) while its minimum holds, and a gate
  judging medians fails unchanged code. Each verdict names its statistic. A head run's
  benchmark whose median/minimum ratio lies far above its usual (`EPISODE_LOG`, `EPISODE_Z`
  robust s.d.) had a *slow episode*: the report lists them. `statistic = "median"` in
  `[tool.hotpath.gate]` restores the earlier gate.
* Contention (`gate_contention`): on a shared runner some runs of a benchmark are much
  slower (+20% to +200%) with the code unchanged, minimum included when its rounds are long
  or it has one: noise that only slows, comes in bursts and is no symmetric tail. Each p is
  the larger of the t test's below and that of the fastest head run under a mixture of calm
  noise and contended runs, whose share and size are measured on the baselines; the report
  says when the history is contended. `contention = False` (GateConfig, for the studies)
  leaves it out. A verdict must also hold in absolute time: after a whole-run shift was
  removed, a benchmark that only moved less than the rest is not called faster or slower
  the other way (a change to most of the suite looks like a slow or fast machine).

* `shift[k]` is what moves a whole run: a busier CI runner, a warmer CPU. It is estimated as
  the median over the run's benchmarks (robust to a few real regressions) and, while it stays
  within the spread of earlier runs' shifts, removed before each benchmark is judged. A mean
  shift of the full head runs far beyond that spread (p < alpha and >= the
  minimum effect) is not treated as noise: then only each head run's deviation from that mean
  is removed, and the spread of shifts is added to every benchmark's uncertainty instead.
  The test treats the mean like one run's shift: runs on one machine shortly after each other
  may share a shift, so more runs are not taken as more evidence that it is real. Re-runs must
  agree (a change of the code is in them too, a slow runner only in its own run).
* `noise[b, k]` has a per-benchmark scale, estimated from the K baseline runs (sample s.d.,
  or 1.4826 x MAD from 5 runs on) and shrunk towards the pooled scale of all benchmarks with
  `PRIOR_DF` pseudo-runs, because K is small. With one baseline run nothing is measured: the
  scale is the larger of the prior `PRIOR_SIGMA` and the head-vs-baseline spread across
  benchmarks (most benchmarks do not change), and the result is marked low confidence.
* Several head runs (repeated runs of the same head, and confirmation re-runs) are pooled per
  benchmark: the mean over its H head runs of log median minus that run's own shift, as a
  Huber M-estimate (runs further than `HUBER_K` run-to-run scales from the pool are pulled
  in; with one or two runs it is the plain mean), because one wild run of a t(4)-like noise
  would otherwise carry the pooled verdict. Their noise is independent, so the variance of the
  change is scale^2 x (1/H + pi/2 / K) (the baseline centre is a median of K runs), plus
  the uncertainty of each run's estimated shift.
  A confirmation re-run holds only the *suspects*
  and a few *controls* (the least changed benchmarks of the first verdicts); its shift is the
  median over the controls, so no assumption is made that it ran as fast as the head run.
  Without enough controls it is assumed to share the head runs' mean shift, with the spread
  of whole-run shifts added to its uncertainty.
* A head run with fewer rounds than the baselines' typical count has a noisier median: the
  difference pi/2 * cv^2 * (1/rounds - 1/typical rounds) is added to its variance, with the
  benchmark's per-round spread cv (IQR/1.349 over the median) taken from history, where it is
  the median over many runs. A run's own spread is not used: with 5 rounds, two slow outlier
  rounds made one re-run's IQR 100x its usual and its variance swamp six clean runs.
* Test: t = change / se, in the t's own units (a robust s.d. is `t_unit` times a t's scale),
  with a Student t whose degrees of freedom are those the scale
  estimate is worth (a MAD counts as a sample s.d. of `MAD_EFFICIENCY` as many runs), but at
  most `MAX_DF` for one head run, because run-to-run noise is heavy-tailed (karlicoss/cachew
  0008 vs 0009: on the slow side the 99th percentile of log ratios is 2.9 robust s.d., a
  normal law's is 2.3), and `TAIL_DF_PER_RUN` per run for pooled runs. One-sided p-values
  (slower; faster) go through Benjamini-Hochberg across the run's benchmarks, slowdowns and
  speedups as two families. A benchmark *regressed* when q <= alpha AND the change >= its
  minimum effect AND the absolute change >= the floor (sub-microsecond benchmarks); *improved*
  symmetrically. The 95% interval is t-based on the same se.
* Confirmation (two stages, as Perfherder retriggers or Pinpoint do): `suspects` screens the
  first verdicts loosely (one-sided p <= `SUSPECT_P` and a change of at least
  `SUSPECT_EFFECT_SHARE` of the minimum effect, either direction); the caller re-runs them and
  `compare` judges again with the re-runs pooled in. The re-run suspects form their own BH
  family (the benchmarks not re-run keep theirs): their re-runs are independent of the screen
  that chose them. The head run chose the suspects, so its own noise is part of why they were
  chosen (the winner's curse): a suspect is "confirmed" only when the pooled verdict is a
  regression or improvement AND its re-runs alone show the change in the same direction
  (one-sided p <= `CONFIRM_P`); else it is "not confirmed" and unchanged, which is also how a
  false alarm of the single run is cleared. `confirm_sequentially` re-runs round by round
  (`--confirm N`: up to N rounds) and lets settled suspects leave early; its docstring says
  why the looks do not add false alarms. The defaults (`SUSPECT_P` 0.3, `CONFIRM_P` 0.03,
  `CLEAR_Z`, `EARLY_SHARE`) were calibrated with benchmarks/gate_accuracy.py (seeds 1-3; its
  noise model is measured from real pytest-benchmark files and left alone) so that the gate
  with up to 6 re-runs stays well inside the 1% false-alarm budget per benchmark-run
  (0.3-0.6% over seeds 1-3): a looser screen, confirmation level or alpha spent more of the
  budget for one or two points more of 10% regressions found, since what limits detection is
  the noise of the noisiest benchmarks and of the K baseline runs, not the significance
  level (more re-runs alone do not lift it: 16 rounds found 88% of 10% regressions).
* Re-runs on real suites (issue 13, tests/data/gate_corpus, benchmarks/gate_real.py): where a
  benchmark's K baseline runs and the N re-run rounds to come can pass `PRECEDENCE_LEVEL`
  with one baseline run out of place (K >= 15 with 4 rounds, >= 20 with 3; decided before
  any re-run), its re-runs alone are judged by a precedence test of their calm ends instead
  of the t test (`gate_contention.precedence_p`): slower when the fastest re-run is slower
  than t of the K baseline runs, faster when t re-runs are faster than the fastest baseline
  run; p = C(K, t) / C(K + R, t) and C(R, t) / C(K + R, t) with no change, whatever the
  noise. Real suites have benchmarks with two modes and busy runs that slow benchmarks
  unevenly, which a t on a robust scale misjudges (confirmed false alarms), and the t test of
  a speed-up asked the fastest of H runs to be fast, which grows likelier with H (speed-ups
  never confirmed). Every re-run benchmark, suspect or control, is judged so, in one BH
  family. Two more rules come with it: in a contended history (`CONTENDED_SUITE`) the
  re-runs' whole-run shifts are slow episodes and none is removed (`gate_shift`); with
  re-runs that measure their own shift, the head runs and the re-runs decide together
  whether a whole-run shift is real (a change to most of the suite is in every run), each of
  them showing at least the minimum effect.
* `detectable`: per benchmark, the smallest slowdown its runs find 4 times in 5, from its
  standard error, a one-sided t at alpha / (size of its BH family) and, for a re-run suspect,
  its re-runs alone at `CONFIRM_P`. Where it exceeds the minimum effect the report names the
  benchmark a blind spot, so a pass is not read as "nothing got slower". The accuracy study
  checks it: of planted regressions at least that large, 97.7-98.5% were found (seeds 1-3).
* Raw `data` (complete on both sides) gets a Mann-Whitney U test as supporting evidence only:
  thousands of rounds from one process make tiny within-run differences "significant" that
  run-to-run noise dwarfs, so it never decides.

What a trustworthy gate does with runs that are not like-for-like (the decision):
* Baselines from the head's machine (`BenchRun.machine_key`) are used when there are any,
  the others dropped and named. With none, timings are compared and shown, but a change is not
  judged: would-be regressions and improvements become `unknown` and the report says why.
* Likewise with measurement options (max_time, min_rounds, warmup, timer, ...): baselines with
  the head's options are preferred; when none has them, changes become `unknown`.
  Either way the gate does not fail on data it cannot trust, and does not pass silently: the
  reason heads the report and is in every affected benchmark's evidence.
* Extra head runs and re-runs must come from the first head run's machine and options; others
  are left out with a warning.

Where each part lives (this module re-exports the public names; import them from here):
* `gate_verdicts`: `Verdict`, `Comparison`, what the reports read;
* `gate_baselines`: which runs are like-for-like;
* `gate_compare`: `compare`, the one entry point for a verdict;
* `gate_judge`: the verdict of each compared benchmark, step by step;
* `gate_noise`: the runs as matrices, each benchmark's noise scale, pooling head runs;
* `gate_shift`: the whole-run shift, noise or real;
* `gate_significance`: tests, Benjamini-Hochberg, re-runs alone, `detectable`;
* `gate_confirm`: `suspects`, `controls`, `confirm_sequentially`;
* `gate_config`: the settings (`[tool.hotpath.gate]`).
"""

from hotpath.profiler.analysis.gate_baselines import options_diff, select_baselines
from hotpath.profiler.analysis.gate_compare import compare
from hotpath.profiler.analysis.gate_confirm import (
    CLEAR_Z,
    CONTROLS,
    EARLY_SHARE,
    MIN_RERUNS_TO_CLEAR,
    SUSPECT_EFFECT_SHARE,
    SUSPECT_P,
    confirm_sequentially,
    controls,
    suspects,
)
from hotpath.profiler.analysis.gate_judge import MW_MIN_ROUNDS
from hotpath.profiler.analysis.gate_noise import (
    EPISODE_LOG,
    EPISODE_Z,
    HUBER_K,
    HUBER_STEPS,
    LOW_CONFIDENCE_RUNS,
    MAD_EFFICIENCY,
    MAX_DF,
    MIN_FOR_SHIFT,
    MIN_ROUNDS_FOR_MIN,
    PRIOR_DF,
    PRIOR_SHIFT_SIGMA,
    PRIOR_SIGMA,
    TAIL_DF_PER_RUN,
    robust_scale,
    round_variance,
)
from hotpath.profiler.analysis.gate_shift import MIN_CONTROLS
from hotpath.profiler.analysis.gate_significance import CONFIRM_P, POWER, benjamini_hochberg
from hotpath.profiler.analysis.gate_verdicts import VERDICTS, Comparison, Verdict

__all__ = [
    "CLEAR_Z",
    "CONFIRM_P",
    "CONTROLS",
    "EARLY_SHARE",
    "EPISODE_LOG",
    "EPISODE_Z",
    "HUBER_K",
    "HUBER_STEPS",
    "LOW_CONFIDENCE_RUNS",
    "MAD_EFFICIENCY",
    "MAX_DF",
    "MIN_CONTROLS",
    "MIN_FOR_SHIFT",
    "MIN_RERUNS_TO_CLEAR",
    "MIN_ROUNDS_FOR_MIN",
    "MW_MIN_ROUNDS",
    "POWER",
    "PRIOR_DF",
    "PRIOR_SHIFT_SIGMA",
    "PRIOR_SIGMA",
    "SUSPECT_EFFECT_SHARE",
    "SUSPECT_P",
    "TAIL_DF_PER_RUN",
    "VERDICTS",
    "Comparison",
    "Verdict",
    "benjamini_hochberg",
    "compare",
    "confirm_sequentially",
    "controls",
    "options_diff",
    "robust_scale",
    "round_variance",
    "select_baselines",
    "suspects",
]
