"""Statistics of the benchmark gate: is a pytest-benchmark run slower than its history?

Model (log space, per benchmark b and run k; the value of a run is its `median`, the one
robust location every pytest-benchmark version writes; with `rounds` 1 it equals mean and min):

    log median[b, k] = centre[b] + shift[k] + noise[b, k]

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
* Test: t = change / se, with a Student t whose degrees of freedom are those the scale
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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.formats.pytest_benchmark import BenchRun, BenchStats

PRIOR_SIGMA = 0.04  # log-scale run-to-run noise of one benchmark when history cannot tell
PRIOR_SHIFT_SIGMA = 0.03  # log-scale spread of whole-run shifts when history cannot tell
PRIOR_DF = 3.0  # pseudo-runs the pooled scale is worth when shrinking per-benchmark scales
MAX_DF = 4.0  # heavy tails: never judge one run with a t of more degrees of freedom than this
TAIL_DF_PER_RUN = 4.0  # ... and H pooled runs with at most this many per run
MIN_FOR_SHIFT = 8  # common benchmarks needed to estimate a whole-run shift
MIN_CONTROLS = 3  # controls needed to estimate a re-run's own shift
LOW_CONFIDENCE_RUNS = 3  # fewer baseline runs than this: say so
MW_MIN_ROUNDS = 5
MAD_EFFICIENCY = 0.37  # of 1.4826 x MAD against the sample s.d., for normal noise
# the loose screen for confirmation re-runs, calibrated with benchmarks/gate_accuracy.py
SUSPECT_P = 0.3
SUSPECT_EFFECT_SHARE = 0.5
CONFIRM_P = 0.03  # a suspect's re-runs alone must show its change at this one-sided level
HUBER_K = 1.5  # head runs further than this many run-to-run scales from the pool are clipped
HUBER_STEPS = 10
CONTROLS = 10  # unsuspected benchmarks re-run beside the suspects to measure the re-run's shift
# sequential confirmation: interim looks confirm only at this share of alpha and CONFIRM_P
EARLY_SHARE = 0.1
CLEAR_Z = 1.28  # ... and clear a suspect whose one-sided 90% bound stays below the min effect
# ... on the re-runs alone only from this many on: one or two heavy-tailed runs that happen
# to be fast would clear a real regression too often
MIN_RERUNS_TO_CLEAR = 3

POWER = 0.8  # of the `detectable` change

VERDICTS = ("regressed", "improved", "unchanged", "new", "missing", "unknown")


@dataclass(frozen=True)
class Verdict:
    fullname: str
    group: str | None
    verdict: str
    change: float | None  # relative: 0.12 is 12% slower
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    q_value: float | None
    baseline_runs: int
    head_seconds: float | None
    baseline_seconds: float | None
    min_effect: float
    evidence: str
    quirks: tuple[str, ...]
    mann_whitney_p: float | None = None
    head_runs: int = 1  # head runs pooled, confirmation re-runs included
    confirmation: str | None = None  # "confirmed" / "not confirmed" for re-run suspects
    rerun_p: float | None = None  # one-sided p of a suspect's re-runs alone
    log_se: float | None = None  # standard error of log(1 + change)
    rerun_log_change: float | None = None  # a suspect's re-runs alone: log(1 + change) ...
    rerun_log_se: float | None = None  # ... and its standard error
    # the smallest slowdown these runs find 4 times in 5 (see `_detectable`); above the
    # minimum effect, the benchmark is too noisy for it with the runs at hand
    detectable: float | None = None
    baseline_log_se: float | None = None  # the part of log_se no head re-run can reduce


@dataclass
class Comparison:
    head: BenchRun
    verdicts: list[Verdict]
    baseline_sources: list[str]
    warnings: list[str] = field(default_factory=list)
    low_confidence: bool = False
    run_shift: float | None = None  # relative whole-run change vs history
    comparable: bool = True
    head_sources: list[str] = field(default_factory=list)
    reruns: int = 0  # confirmation re-run rounds pooled in
    suspects: list[str] = field(default_factory=list)
    benchmark_reruns: int = 0  # benchmarks run again in all rounds, controls included

    @property
    def regressed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == "regressed"]

    def counts(self) -> dict[str, int]:
        return {name: sum(v.verdict == name for v in self.verdicts) for name in VERDICTS}


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


def options_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def select_baselines(
    head: BenchRun, baselines: list[BenchRun]
) -> tuple[list[BenchRun], list[str], bool]:
    """Same machine and same options where possible; returns (runs, warnings, comparable)."""
    warnings: list[str] = []
    comparable = True
    same_machine = [r for r in baselines if r.machine_key() == head.machine_key()]
    if same_machine:
        dropped = len(baselines) - len(same_machine)
        if dropped:
            warnings.append(
                f"{dropped} baseline run(s) from other machines ignored "
                f"(head machine: {head.machine_key()})"
            )
        runs = same_machine
    else:
        others = sorted({r.machine_key() for r in baselines})
        warnings.append(
            "machine differs: head ran on "
            f"{head.machine_key()}, baseline on {'; '.join(others)}. Timings from different "
            "machines are not comparable: changes are shown but not judged (verdict unknown). "
            "Compare runs from the same machine."
        )
        comparable = False
        runs = list(baselines)
    same_options = [r for r in runs if r.options == head.options]
    if same_options:
        dropped = len(runs) - len(same_options)
        if dropped:
            warnings.append(f"{dropped} baseline run(s) with other benchmark options ignored")
        runs = same_options
    elif runs:
        changes = options_diff(runs[-1].options, head.options)
        warnings.append(
            "benchmark options changed since the baseline ("
            + ", ".join(changes)
            + "): rounds and timings are not like-for-like, so changes are shown but not "
            "judged (verdict unknown). Re-run the baseline with the same options."
        )
        comparable = False
    return runs, warnings, comparable


def _like_first(
    first: BenchRun, others: Sequence[BenchRun], what: str
) -> tuple[list[BenchRun], list[str]]:
    """Extra head runs and re-runs pool with the first head run only when like-for-like."""
    kept = [
        r for r in others if r.machine_key() == first.machine_key() and r.options == first.options
    ]
    warnings = [
        f"{what} {r.source} left out: its machine or benchmark options differ from {first.source}"
        for r in others
        if r not in kept
    ]
    return kept, warnings


def suspects(comparison: Comparison, config: GateConfig) -> list[str]:
    """Benchmarks worth re-running: a loose screen of the first verdicts, in either direction
    (the same re-runs confirm a borderline regression and clear a false alarm), and every
    benchmark that looks slower while its one-sided 90% bound still reaches its minimum
    effect, when re-runs could settle that: runs that cannot rule a regression out do not
    pass a noisy benchmark."""
    if not comparison.comparable:
        return []
    return [v.fullname for v in comparison.verdicts if _suspect(v, config)]


def _suspect(v: Verdict, config: GateConfig) -> bool:
    if (
        v.verdict not in ("regressed", "improved", "unchanged")
        or v.p_value is None
        or v.change is None
        or v.head_seconds is None
        or v.baseline_seconds is None
    ):
        return False
    screened = (
        v.p_value <= SUSPECT_P
        and abs(v.change) >= SUSPECT_EFFECT_SHARE * v.min_effect
        and abs(v.head_seconds - v.baseline_seconds) >= config.floor_seconds
    )
    # looks slower and its runs cannot rule the minimum effect out, but enough re-runs at
    # this change would (the baseline's own uncertainty does not stand in the way)
    limit = math.log1p(v.min_effect)
    not_ruled_out = (
        v.change > 0
        and v.log_se is not None
        and v.baseline_log_se is not None
        and math.log1p(v.change) + CLEAR_Z * v.log_se >= limit
        and math.log1p(v.change) + CLEAR_Z * v.baseline_log_se < limit
        and v.baseline_seconds * v.min_effect >= config.floor_seconds
    )
    return screened or not_ruled_out


def controls(comparison: Comparison, suspected: Collection[str], n: int = CONTROLS) -> list[str]:
    """The `n` least changed judged benchmarks (largest one-sided p): re-run beside the
    suspects, they measure the re-run's own whole-run shift."""
    judged = [
        v
        for v in comparison.verdicts
        if v.fullname not in suspected and v.p_value is not None and v.verdict == "unchanged"
    ]
    judged.sort(key=lambda v: (-(v.p_value or 0.0), v.fullname))
    return [v.fullname for v in judged[:n]]


def _settled(verdict: Verdict, alpha: float, reruns: int) -> str | None:
    """At an interim look after `reruns` re-runs: "cleared", "confirmed" or None (undecided:
    re-run it again)."""
    if verdict.change is None or verdict.log_se is None:
        return None
    slower = verdict.change >= 0  # the direction under suspicion
    limit = math.log1p(verdict.min_effect if slower else -verdict.min_effect)

    def short(effect: float | None, se: float | None) -> bool:
        if effect is None or se is None or not math.isfinite(effect + se):
            return False
        reach = CLEAR_Z * se
        return effect + reach < limit if slower else effect - reach > limit

    # the pooled data, or enough re-runs alone (free of the head run that chose the
    # suspect), put the minimum effect beyond their one-sided bound
    alone = reruns >= MIN_RERUNS_TO_CLEAR
    if short(math.log1p(verdict.change), verdict.log_se) or (
        alone and short(verdict.rerun_log_change, verdict.rerun_log_se)
    ):
        return "cleared"
    if (
        verdict.confirmation == "confirmed"
        and verdict.q_value is not None
        and verdict.q_value <= EARLY_SHARE * alpha
        and verdict.rerun_p is not None
        and verdict.rerun_p <= EARLY_SHARE * CONFIRM_P
    ):
        return "confirmed"
    return None


def confirm_sequentially(
    head: BenchRun | Sequence[BenchRun],
    baselines: list[BenchRun],
    config: GateConfig,
    rerun: Callable[[list[str], int], BenchRun],
    max_reruns: int,
    *,
    first: Comparison | None = None,
) -> Comparison:
    """`--confirm N`: up to `max_reruns` re-run rounds of the suspects of the first verdicts.

    `rerun(names, round)` runs the benchmarks `names` once more (round 1, 2, ...) and returns
    that run. Each round holds the undecided suspects and the controls (always, they measure
    the round's own whole-run shift). After each round everything is judged again with all
    re-runs so far pooled in, and a suspect leaves the re-run set when it is settled:
    * cleared: the one-sided 90% bound (`CLEAR_Z` standard errors) of its change, in the
      direction under suspicion, stays short of its minimum effect, on the pooled data or,
      from `MIN_RERUNS_TO_CLEAR` re-runs on, on the re-runs alone (which the head run's noise
      did not choose). Clearing can only remove alarms: a verdict of "unchanged" is final.
    * confirmed beyond doubt: a confirmed regression or improvement with q <= alpha x
      `EARLY_SHARE` AND re-runs alone at p <= `CONFIRM_P` x `EARLY_SHARE`
      (a Haybittle-Peto boundary: interim looks are held to a level so strict that the few of
      them add little to the false alarms; under no change the re-runs alone pass it at any
      of N-1 looks with probability at most (N-1) x `EARLY_SHARE` x `CONFIRM_P`, by the union
      bound, for suspects only).
    The others are judged once, at the last round, by the same rule as a fixed number of
    re-runs (`compare` with `suspected`). So a benchmark without a change is flagged only on
    paths where the fixed design with N re-runs flags it too (early clearances only take
    paths away; "unchanged" at a look is final) or where it passes the strict interim
    boundary: the false-alarm rate is at most that of N fixed re-runs plus that small term,
    up to BH's dependence on the other suspects' p-values (measured, not assumed, by
    benchmarks/gate_accuracy.py). The evidence says how many re-runs each verdict used.
    """
    heads = [head] if isinstance(head, BenchRun) else list(head)
    result = first or compare(heads, baselines, config)
    suspected = suspects(result, config)
    if not suspected or max_reruns < 1:
        return result
    control = controls(result, suspected)
    open_ = list(suspected)
    reruns: list[BenchRun] = []
    settled: dict[str, Verdict] = {}
    cost = 0
    for look in range(1, max_reruns + 1):
        asked = [*open_, *control]
        reruns.append(rerun(asked, look))
        cost += len(asked)
        result = compare(heads, baselines, config, reruns=reruns, suspected=suspected)
        if look == max_reruns:
            break
        by_name = {v.fullname: v for v in result.verdicts}
        still = []
        for name in open_:
            verdict = by_name.get(name)
            outcome = _settled(verdict, config.alpha, look) if verdict else None
            if verdict is None or outcome is None:
                still.append(name)
                continue
            note = (
                f"; settled after {look} of up to {max_reruns} re-runs: "
                + ("the minimum effect is beyond its one-sided 90% bound" if outcome == "cleared"
                   else "beyond doubt at the strict early level")
            )  # fmt: skip
            if outcome == "cleared" and verdict.confirmation == "confirmed":
                # the pooled change reaches the minimum effect only through the head run
                verdict = replace(
                    verdict, verdict="unchanged", confirmation="not confirmed",
                    evidence="not " + verdict.evidence,
                )  # fmt: skip
            settled[name] = replace(verdict, evidence=verdict.evidence + note)
        open_ = still
        if not open_:
            break
    result.verdicts = [settled.get(v.fullname, v) for v in result.verdicts]
    result.benchmark_reruns = cost
    return result


def compare(
    head: BenchRun | Sequence[BenchRun],
    baselines: list[BenchRun],
    config: GateConfig,
    *,
    reruns: Sequence[BenchRun] = (),
    suspected: Collection[str] = (),
) -> Comparison:
    """Judge every benchmark of the head run(s) against `baselines` (oldest first).

    `head` is one run or several runs of the same head (the first names it and decides which
    benchmarks there are); `reruns` are confirmation re-runs of the `suspected` benchmarks and
    of controls, pooled in like head runs but with their own shift measured on the controls.
    """
    heads = [head] if isinstance(head, BenchRun) else list(head)
    if not heads:
        raise ValueError("compare needs at least one head run")
    first = heads[0]
    extra, head_warnings = _like_first(first, heads[1:], "head run")
    kept_reruns, rerun_warnings = _like_first(first, reruns, "re-run")
    heads = [first, *extra]
    runs, warnings, comparable = select_baselines(first, baselines) if baselines else ([], [], True)
    result = Comparison(
        head=first,
        verdicts=[],
        baseline_sources=[r.source for r in runs],
        warnings=[*head_warnings, *rerun_warnings, *warnings],
        comparable=comparable,
        head_sources=[r.source for r in heads],
        reruns=len(kept_reruns),
        suspects=sorted(suspected) if kept_reruns else [],
    )
    warnings = result.warnings
    head_map = first.by_fullname()
    known = {b.fullname for r in runs for b in r.benchmarks}
    latest = runs[-1].by_fullname() if runs else {}
    groups = {b.fullname: b.group for r in runs for b in r.benchmarks}

    new = [n for n in head_map if n not in known]
    missing = [n for n in latest if n not in head_map]
    zero = [n for n in head_map if n in known and head_map[n].median <= 0]
    names = [n for n in head_map if n in known and head_map[n].median > 0]
    if new and missing:
        warnings.append(
            f"{len(new)} benchmark(s) new and {len(missing)} gone since the baseline: "
            "renamed benchmarks show as both"
        )
    if runs and not names:
        warnings.append("no benchmark in common with the baseline: nothing to compare")

    verdicts: dict[str, Verdict] = {}
    if names:
        suspected_now = set(suspected) if kept_reruns else set()
        verdicts.update(_judge(heads, kept_reruns, suspected_now, runs, names, config, result))
    head_maps = [r.by_fullname() for r in heads]
    for n in new:
        bench = head_map[n]
        verdicts[n] = _plain(
            bench.fullname, bench.group, "new", 0, config, bench.quirks,
            "not in any baseline run", head_runs=sum(n in m for m in head_maps),
        )  # fmt: skip
    for n in zero:
        bench = head_map[n]
        verdicts[n] = _plain(
            n,
            bench.group,
            "unknown",
            0,
            config,
            bench.quirks,
            "median time is 0: the timer is too coarse for this benchmark",
        )
    for n in missing:
        verdicts[n] = _plain(
            n,
            groups.get(n),
            "missing",
            len(runs),
            config,
            (),
            "in the latest baseline run but not in this run",
            head_runs=0,
        )
    order = [*head_map, *missing]
    result.verdicts = [verdicts[n] for n in order if n in verdicts]
    return result


def _plain(
    fullname: str,
    group: str | None,
    verdict: str,
    k: int,
    config: GateConfig,
    quirks: tuple[str, ...],
    evidence: str,
    head_runs: int = 1,
) -> Verdict:
    return Verdict(
        fullname=fullname,
        group=group,
        verdict=verdict,
        change=None,
        ci_low=None,
        ci_high=None,
        p_value=None,
        q_value=None,
        baseline_runs=k,
        head_seconds=None,
        baseline_seconds=None,
        min_effect=config.effect_for(fullname, group),
        evidence=evidence,
        quirks=quirks,
        head_runs=head_runs,
    )


@dataclass
class _Matrix:
    names: list[str]
    base: np.ndarray  # log medians, benchmarks x baseline runs, NaN where absent
    head: np.ndarray  # log medians, benchmarks x head runs (re-runs last), NaN where absent
    head_excess: np.ndarray  # variance a head run's median has beyond a typical baseline's


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


def _matrix(head_runs: Sequence[BenchRun], runs: list[BenchRun], names: list[str]) -> _Matrix:
    base, base_cv2, base_rounds = _log_medians(runs, names)
    head, head_cv2, head_rounds = _log_medians(head_runs, names)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no spread known
        cv2 = np.nanmedian(base_cv2, axis=1) if runs else np.full(len(names), np.nan)
        cv2 = np.where(np.isfinite(cv2), cv2, np.nanmedian(head_cv2, axis=1))
        typical = np.nanmedian(base_rounds, axis=1) if runs else np.full(len(names), np.nan)
        typical = np.where(np.isfinite(typical), typical, head_rounds[:, 0])
        excess = math.pi / 2 * cv2[:, None] * (1 / head_rounds - 1 / typical[:, None])
    return _Matrix(names, base, head, np.nan_to_num(np.maximum(excess, 0.0)))


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


def _judge(
    heads: list[BenchRun],
    reruns: list[BenchRun],
    suspected: set[str],
    runs: list[BenchRun],
    names: list[str],
    config: GateConfig,
    result: Comparison,
) -> dict[str, Verdict]:
    # a run sharing none of these benchmarks tells nothing and would be an all-NaN column
    runs = [r for r in runs if any(n in r.by_fullname() for n in names)]
    result.baseline_sources = [r.source for r in runs]
    m = _matrix([*heads, *reruns], runs, names)
    n_bench = len(names)
    n_heads, n_cols = len(heads), len(heads) + len(reruns)
    k_b = np.sum(np.isfinite(m.base), axis=1)
    k_total = len(runs)
    present = np.isfinite(m.head)
    h_b = np.sum(present, axis=1)  # >= 1: the first head run has every name
    shifts, centre = _run_shifts(m.base)
    dev = m.head - centre[:, None]  # raw log change of each head run
    diff = dev[:, 0]

    # Per-benchmark run-to-run scale, shrunk towards the pooled one.
    resid = m.base - shifts[None, :] - centre[:, None]
    scales = _robust_scales(resid)
    df_b = np.maximum(k_b - 1, 0).astype(float)
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
        if n_bench >= MIN_FOR_SHIFT:
            # with one baseline run, the head-vs-baseline spread across benchmarks (most do not
            # change) measures twice the run-to-run variance on this machine
            spread = robust_scale(diff) ** 2 / 2
            if spread > pooled_var:
                pooled_var, pooled_note = spread, "head-vs-baseline spread across benchmarks"
    var_b = np.where(
        measured,
        (PRIOR_DF * pooled_var + df_b * np.nan_to_num(scales) ** 2) / (PRIOR_DF + df_b),
        pooled_var,
    )
    # what the scale estimate is worth in degrees of freedom: a MAD (5 runs on) has the
    # efficiency of a sample s.d. from ~37% as many runs
    efficiency = np.where(k_b >= 5, MAD_EFFICIENCY, 1.0)
    scale_df = np.where(measured, PRIOR_DF + df_b * efficiency, PRIOR_DF)

    # Whole-run shift of each head run: noise (remove it) or real (keep the mean over the runs
    # that measure it, remove each run's deviation from it, widen the intervals)? Re-runs
    # measure theirs on the controls and so help to tell: a real change is in every run.
    shift = 0.0  # the part removed from every head run alike (shown in the evidence)
    adjust = np.zeros(n_cols)  # removed from each head run
    adjust_var = np.zeros(n_cols)  # variance of that estimate
    if n_bench >= MIN_FOR_SHIFT:
        if k_total >= LOW_CONFIDENCE_RUNS:
            tau = float(np.std(shifts, ddof=1))
            tau_df = k_total - 1
        else:
            tau, tau_df = PRIOR_SHIFT_SIGMA, PRIOR_DF
        tau = max(tau, 1e-3)
        # the median of n values, each of variance pooled_var * (1 + 1/K)
        per_value = math.pi / 2 * pooled_var * (1 + 1 / k_total)
        adjust[:n_heads] = np.nanmedian(dev[:, :n_heads], axis=0)
        adjust_var[:] = per_value / n_bench
        measures = np.zeros(n_cols, dtype=bool)
        measures[:n_heads] = True
        unsuspected = np.array([n not in suspected for n in names])
        for j in range(n_heads, n_cols):
            ref = np.isfinite(dev[:, j]) & unsuspected
            if ref.sum() >= MIN_CONTROLS:
                adjust[j] = float(np.median(dev[ref, j]))
                adjust_var[j] = per_value / int(ref.sum())
                measures[j] = True
        head_shift = float(np.mean(adjust[:n_heads]))  # the full head runs
        # no controls: assume the re-run ran like the head runs, within the spread of shifts
        adjust[~measures] = head_shift
        adjust_var[~measures] = tau**2
        # runs on one machine shortly after each other may share their shift, so more runs
        # are not taken as more evidence that a shift is real
        shift_se = tau * math.sqrt(1 + 1 / k_total)

        def beyond(value: float) -> tuple[bool, float]:
            p_value = 2 * sps.t.sf(abs(value) / shift_se, min(tau_df, MAX_DF))
            big = abs(math.expm1(value)) >= config.min_effect
            return p_value <= config.alpha and big, float(p_value)

        real, p_shift = beyond(head_shift)
        result.run_shift = math.expm1(head_shift)
        measured_reruns = measures & (np.arange(n_cols) >= n_heads)
        if real and measured_reruns.any():
            # a change of the code is in the re-runs too; a slow runner only in its own run
            rerun_shift = float(np.mean(adjust[measured_reruns]))
            real = beyond(rerun_shift)[0] and (rerun_shift > 0) == (head_shift > 0)
            if not real:
                result.warnings.append(
                    f"the head run(s) were {math.expm1(head_shift):+.1%} vs history as a whole, "
                    f"the re-runs {math.expm1(rerun_shift):+.1%} on their controls: a whole-run "
                    "shift of the machine, removed from each run"
                )
        if real:
            result.warnings.append(
                f"the whole run is {math.expm1(head_shift):+.1%} vs its history, beyond the "
                f"run-to-run spread of whole runs (p={p_shift:.2g}): judged as a real change "
                "(or a different machine), each benchmark on its raw change"
            )
            var_b = var_b + tau**2 * (1 / h_b + 1 / k_total)
            adjust = adjust - head_shift
            if n_cols == 1:
                adjust_var[:] = 0.0  # nothing removed
        else:
            shift = head_shift
            if abs(shift) >= 0.01:
                result.warnings.append(
                    f"the whole run is {math.expm1(shift):+.1%} vs baseline, within the "
                    "run-to-run spread of whole runs: removed before judging each benchmark"
                )
    else:
        var_b = var_b + PRIOR_SHIFT_SIGMA**2 * (1 / h_b + 1 / max(k_total, 1))

    pooled = _Pool(dev - adjust[None, :], adjust_var, m.head_excess,
                   var_b, k_b)  # fmt: skip
    effect, se, _ = pooled.over(np.arange(n_cols))
    baseline_se = np.sqrt(pooled.baseline_var())
    df = _tail_df(scale_df, h_b)
    t_stat = effect / se
    # one-sided in each direction, each with its own BH: the gate asks "slower?", and
    # improvements are a separate family
    p_slow, p_fast = sps.t.sf(t_stat, df), sps.t.cdf(t_stat, df)
    slower = effect > 0
    p = np.where(slower, p_slow, p_fast)
    rerun_counts = np.sum(present[:, n_heads:], axis=1)
    confirming = np.array([n in suspected for n in names]) & (rerun_counts > 0)
    rest = ~confirming
    q = np.ones(n_bench)
    # two families: the first verdicts of the benchmarks not re-run, and the re-run suspects,
    # each with its BH; the re-runs are independent of the screen that chose the suspects
    # and must show the change on their own too (below)
    for family in (rest, confirming):
        if family.any():
            q[family] = np.where(
                slower[family],
                benjamini_hochberg(p_slow[family]),
                benjamini_hochberg(p_fast[family]),
            )
    t_crit = sps.t.ppf(0.975, df)
    family_size = np.where(confirming, max(int(confirming.sum()), 1), max(int(rest.sum()), 1))
    # the re-runs on their own (independent of the screen that chose the suspects)
    rerun_effect, rerun_se, rerun_h = pooled.over(np.arange(n_heads, n_cols))
    with np.errstate(all="ignore"):
        rerun_t = np.nan_to_num(rerun_effect / rerun_se)
    rerun_df = _tail_df(scale_df, np.maximum(rerun_h, 1))
    rerun_p = np.where(rerun_effect > 0, sps.t.sf(rerun_t, rerun_df), sps.t.cdf(rerun_t, rerun_df))
    detectable = _detectable(se, df, config.alpha / family_size)
    # a re-run suspect must also show it on its re-runs alone
    detectable = np.where(
        confirming,
        np.maximum(
            detectable, _detectable(np.nan_to_num(rerun_se, nan=np.inf), rerun_df, CONFIRM_P)
        ),
        detectable,
    )

    if k_total < LOW_CONFIDENCE_RUNS:
        result.low_confidence = True
        result.warnings.append(
            f"low confidence: {k_total} baseline run(s), so run-to-run noise is not measured "
            f"but assumed ({math.sqrt(pooled_var):.1%}, {pooled_note}). Re-run or upload "
            "history: pass --baseline with a folder of several earlier runs (e.g. "
            ".benchmarks/), or use --server to compare with the base branch's history."
        )

    head_map = heads[0].by_fullname()
    latest_data = _latest_data(runs, names)
    out: dict[str, Verdict] = {}
    for i, name in enumerate(names):
        bench = head_map[name]
        min_effect = config.effect_for(name, bench.group)
        change = math.expm1(effect[i])
        base_seconds = math.exp(centre[i] + shift)
        head_seconds = base_seconds * math.exp(effect[i])
        abs_change = abs(head_seconds - base_seconds)
        significant = q[i] <= config.alpha
        big_enough = abs(change) >= min_effect
        above_floor = abs_change >= config.floor_seconds
        if significant and big_enough and above_floor:
            verdict = "regressed" if change > 0 else "improved"
        else:
            verdict = "unchanged"
        reasons = []
        if significant and not big_enough:
            reasons.append(f"significant but below the {min_effect:.0%} minimum effect")
        elif significant and big_enough and not above_floor:
            reasons.append(
                f"absolute change {abs_change * 1e9:.1f} ns is below the "
                f"{config.floor_ns:g} ns floor"
            )
        mw_p = _mann_whitney(bench, latest_data.get(name))
        if not result.comparable:
            verdict = "unknown"
            reasons.append("not judged: the runs are not comparable (see the warnings)")
        confirmation = None
        evidence = ""
        if name in suspected:
            n_re = int(rerun_counts[i])
            agree = n_re > 0 and rerun_p[i] <= CONFIRM_P and (rerun_effect[i] > 0) == (change > 0)
            if verdict in ("regressed", "improved") and not agree:
                verdict = "unchanged"
                reasons.append(
                    f"the re-runs alone do not show it ({math.expm1(rerun_effect[i]):+.1%}, "
                    f"p={rerun_p[i]:.2g}): the head run chose this suspect, so its own noise "
                    "cannot confirm it"
                )
            confirmation = "confirmed" if verdict in ("regressed", "improved") else "not confirmed"
            evidence = f"{confirmation} by {n_re} re-run{'s' * (n_re != 1)}: "
        low, high = (
            math.expm1(effect[i] - t_crit[i] * se[i]),
            math.expm1(effect[i] + t_crit[i] * se[i]),
        )
        evidence += (
            f"{change:+.1%} (95% CI {low:+.1%} to {high:+.1%}), p={p[i]:.2g}, q={q[i]:.2g}; "
            f"median {_fmt_s(head_seconds)} vs {_fmt_s(base_seconds)}, {int(h_b[i])} head "
            f"run(s) vs {int(k_b[i])} baseline run(s), run-to-run noise {math.sqrt(var_b[i]):.1%}"
        )
        if shift:
            evidence += f", after removing a whole-run shift of {math.expm1(shift):+.1%}"
        if mw_p is not None:
            evidence += f"; raw data: Mann-Whitney U p={mw_p:.2g}"
        if reasons:
            evidence += "; " + "; ".join(reasons)
        rerun_seen = name in suspected and rerun_counts[i] > 0
        out[name] = Verdict(
            fullname=name,
            group=bench.group,
            verdict=verdict,
            change=change,
            ci_low=low,
            ci_high=high,
            p_value=float(p[i]),
            q_value=float(q[i]),
            baseline_runs=int(k_b[i]),
            head_seconds=head_seconds,
            baseline_seconds=base_seconds,
            min_effect=min_effect,
            evidence=evidence,
            quirks=bench.quirks,
            mann_whitney_p=mw_p,
            head_runs=int(h_b[i]),
            confirmation=confirmation,
            rerun_p=float(rerun_p[i]) if rerun_seen else None,
            log_se=float(se[i]),
            detectable=float(math.expm1(detectable[i])),
            rerun_log_change=float(rerun_effect[i]) if rerun_seen else None,
            rerun_log_se=float(rerun_se[i]) if rerun_seen else None,
            baseline_log_se=float(baseline_se[i]),
        )
    return out


def _detectable(se: np.ndarray, df: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    """Log slowdown found with probability `POWER` by a one-sided t at `level` (a regression's
    p must pass BH, which for the first of m benchmarks is alpha/m: the level used is that,
    so the figure is what one regression among m unchanged benchmarks needs)."""
    return (sps.t.isf(level, df) + sps.t.ppf(POWER, df)) * se


def _tail_df(scale_df: np.ndarray, head_runs: np.ndarray) -> np.ndarray:
    """Degrees of freedom of the t: those of the scale estimate, but at most `MAX_DF` per head
    run pooled. One run's noise is heavy-tailed (t(4)-like), so a single run is never judged
    with a lighter tail than t(4), the tail benchmarks/gate_accuracy.py assumes; the clipped
    mean of H runs has lighter tails, validated by that study's false-alarm rate."""
    return np.minimum(scale_df, np.maximum(MAX_DF, TAIL_DF_PER_RUN * head_runs))


@dataclass
class _Pool:
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


def _complete_data(bench: BenchStats | None) -> tuple[float, ...] | None:
    """Raw data only when it holds every round: a trimmed array is a biased sample."""
    if bench is None or bench.data is None:
        return None
    if len(bench.data) != bench.rounds or len(bench.data) < MW_MIN_ROUNDS:
        return None
    return bench.data


def _latest_data(runs: list[BenchRun], names: list[str]) -> dict[str, tuple[float, ...]]:
    found: dict[str, tuple[float, ...]] = {}
    for run in reversed(runs):
        for bench in run.benchmarks:
            data = _complete_data(bench)
            if data is not None and bench.fullname not in found:
                found[bench.fullname] = data
    return {n: found[n] for n in names if n in found}


def _mann_whitney(head: BenchStats, base: tuple[float, ...] | None) -> float | None:
    data = _complete_data(head)
    if data is None or base is None:
        return None
    return float(sps.mannwhitneyu(data, base, alternative="two-sided").pvalue)


def _fmt_s(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"
