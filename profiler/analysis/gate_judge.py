"""The benchmark gate's verdict on the benchmarks a head run shares with its baselines, as
named steps: observe the runs, estimate each benchmark's noise, handle the whole-run shift,
test each change, then decide each benchmark's verdict and write its evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_contention import CONTENDED_SUITE, contention
from hotpath.profiler.analysis.gate_noise import (
    LOW_CONFIDENCE_RUNS,
    Noise,
    benchmark_noise,
    observe,
)
from hotpath.profiler.analysis.gate_shift import whole_run_shift
from hotpath.profiler.analysis.gate_significance import (
    CALM_DF,
    CONFIRM_P,
    Evidence,
    significance,
)
from hotpath.profiler.analysis.gate_verdicts import Comparison, Verdict
from hotpath.profiler.formats.pytest_benchmark import BenchRun, BenchStats

MW_MIN_ROUNDS = 5


def judge(
    heads: list[BenchRun],
    reruns: list[BenchRun],
    suspected: set[str],
    runs: list[BenchRun],
    names: list[str],
    config: GateConfig,
    result: Comparison,
    rounds: int | None = None,
) -> dict[str, Verdict]:
    """The verdict of each of `names` (benchmarks of the first head run found in `runs`);
    records in `result` the baselines used, the whole-run shift, warnings and low confidence.
    `suspected` are the benchmarks the `reruns` confirm (empty without re-runs); `rounds` the
    re-run rounds there will be at most (`gate_significance.significance`)."""
    # a run sharing none of these benchmarks tells nothing and would be an all-NaN column
    runs = [r for r in runs if any(n in r.by_fullname() for n in names)]
    result.baseline_sources = [r.source for r in runs]
    obs = observe(heads, reruns, runs, names, config.statistic)
    noise = benchmark_noise(obs)
    # the history's contention (slow runs of a busy machine): p-values must survive it, and
    # in a contended history the re-runs' whole-run shifts are slow episodes, kept as measured
    busy = (
        contention(obs.base - obs.shifts[None, :] - obs.centre[:, None], noise.var_b, CALM_DF)
        if config.contention
        else None
    )
    contended = busy is not None and busy.suite_eps >= CONTENDED_SUITE
    shift = whole_run_shift(obs, noise, suspected, config, contended)
    result.run_shift = shift.run_shift
    result.warnings.extend(shift.warnings)
    evidence = significance(obs, noise, shift, suspected, config, rounds, busy)
    if contended:
        result.warnings.append(
            f"contention: {evidence.contended:.0%} of the baseline runs' benchmarks ran far "
            "slower than their calm runs (a busy machine, not the code); a slowdown must show "
            "in the fastest head run too, so one run proves less here: re-run the suspects "
            "(--confirm) or run the suite several times"
        )
    if obs.k_total < LOW_CONFIDENCE_RUNS:
        result.low_confidence = True
        result.warnings.append(_low_confidence(obs.k_total, noise))
    episodes = [n for i, n in enumerate(names) if obs.episodes[i, 0]]
    result.slow_episodes = episodes
    if episodes:
        result.warnings.append(_episode_note(episodes, obs.on_min, names))
    head_map = heads[0].by_fullname()
    latest_data = _latest_data(runs, names)
    verdicts: dict[str, Verdict] = {}
    for i, name in enumerate(names):
        bench = head_map[name]
        mw_p = _mann_whitney(bench, latest_data.get(name))
        verdicts[name] = benchmark_verdict(
            i, bench, evidence, config,
            suspect=name in suspected or bool(evidence.confirming[i]),
            comparable=result.comparable, mann_whitney_p=mw_p,
            statistic=_statistic(bool(obs.on_min[i]), bench.rounds),
            slow_episode=bool(obs.episodes[i, 0]),
        )  # fmt: skip
    return verdicts


def _statistic(on_min: bool, rounds: int) -> str:
    if on_min:
        return "minimum"
    return "one round" if rounds == 1 else "median"


def _episode_note(episodes: list[str], on_min: np.ndarray, names: list[str]) -> str:
    """The report's line on contention: which benchmarks ran slow for a while in this run."""
    judged = {n for i, n in enumerate(names) if on_min[i]}
    more = f" and {len(episodes) - 5} more" if len(episodes) > 5 else ""
    shown = ", ".join(episodes[:5]) + more
    how = (
        "judged on their minimum"
        if all(n in judged for n in episodes)
        else "judged on their minimum where they have rounds enough, else on the median"
    )
    return (
        f"{len(episodes)} benchmark(s) had a slow episode in this run (median well above its "
        f"usual distance from the minimum: contention on the machine, not the code): {how}. "
        f"{shown}"
    )


def _low_confidence(k_total: int, noise: Noise) -> str:
    """Why too few baseline runs weaken every verdict, and how to get more."""
    return (
        f"low confidence: {k_total} baseline run(s), so run-to-run noise is not measured "
        f"but assumed ({math.sqrt(noise.pooled_var):.1%}, {noise.pooled_note}). Re-run or upload "
        "history: pass --baseline with a folder of several earlier runs (e.g. "
        ".benchmarks/), or use --server to compare with the base branch's history."
    )


@dataclass
class _Decision:
    """One benchmark's verdict while it is being decided, with the reasons it was not
    stronger (they end its evidence)."""

    verdict: str
    reasons: list[str]
    confirmation: str | None = None
    prefix: str = ""  # "confirmed by 2 re-runs: " for a re-run suspect


def benchmark_verdict(
    i: int,
    bench: BenchStats,
    ev: Evidence,
    config: GateConfig,
    *,
    suspect: bool,
    comparable: bool,
    mann_whitney_p: float | None,
    statistic: str = "median",
    slow_episode: bool = False,
) -> Verdict:
    """The verdict of benchmark `i` (`bench`, its first head run) and its evidence."""
    name = bench.fullname
    min_effect = config.effect_for(name, bench.group)
    change = math.expm1(ev.effect[i])
    base_seconds = math.exp(ev.centre[i] + ev.removed)
    head_seconds = base_seconds * math.exp(ev.effect[i])
    decision = _decide(change, ev.q[i], abs(head_seconds - base_seconds), min_effect, config)
    if not comparable:
        decision.verdict = "unknown"
        decision.reasons.append("not judged: the runs are not comparable (see the warnings)")
    if suspect:
        _confirm(decision, i, change, ev)
    _absolute_too(decision, math.expm1(ev.effect[i] + ev.removed), ev.removed, min_effect)
    low, high = (
        math.expm1(ev.effect[i] - ev.t_crit[i] * ev.se[i]),
        math.expm1(ev.effect[i] + ev.t_crit[i] * ev.se[i]),
    )
    evidence = decision.prefix + _evidence_text(
        i, ev, (change, low, high), (head_seconds, base_seconds), mann_whitney_p, statistic
    )
    if slow_episode:
        evidence += "; slow episode in this run (its median jumped, its minimum held)"
    if decision.reasons:
        evidence += "; " + "; ".join(decision.reasons)
    rerun_seen = suspect and ev.rerun_counts[i] > 0
    return Verdict(
        fullname=name,
        group=bench.group,
        verdict=decision.verdict,
        change=change,
        ci_low=low,
        ci_high=high,
        p_value=float(ev.p[i]),
        q_value=float(ev.q[i]),
        baseline_runs=int(ev.k_b[i]),
        head_seconds=head_seconds,
        baseline_seconds=base_seconds,
        min_effect=min_effect,
        evidence=evidence,
        quirks=bench.quirks,
        mann_whitney_p=mann_whitney_p,
        head_runs=int(ev.h_b[i]),
        confirmation=decision.confirmation,
        rerun_p=float(ev.rerun_p[i]) if rerun_seen else None,
        log_se=float(ev.se[i]),
        detectable=float(math.expm1(ev.detectable[i])),
        rerun_log_change=float(ev.rerun_effect[i]) if rerun_seen else None,
        rerun_log_se=float(ev.rerun_se[i]) if rerun_seen else None,
        baseline_log_se=float(ev.baseline_se[i]),
        statistic=statistic,
        slow_episode=slow_episode,
    )


def _evidence_text(
    i: int,
    ev: Evidence,
    interval: tuple[float, float, float],
    seconds: tuple[float, float],
    mann_whitney_p: float | None,
    statistic: str,
) -> str:
    """The figures behind benchmark `i`'s verdict, for the reports: the change with its 95%
    interval (`interval`: change, low, high), p and q, the `statistic` that carried it
    (`seconds`: head, baseline),
    the runs and noise behind them, and what was removed or only supports it."""
    change, low, high = interval
    head_seconds, base_seconds = seconds
    text = (
        f"{change:+.1%} (95% CI {low:+.1%} to {high:+.1%}), p={ev.p[i]:.2g}, q={ev.q[i]:.2g}; "
        f"{statistic} {_fmt_s(head_seconds)} vs {_fmt_s(base_seconds)}, {int(ev.h_b[i])} head "
        f"run(s) vs {int(ev.k_b[i])} baseline run(s), run-to-run noise "
        f"{math.sqrt(ev.var_b[i]):.1%}"
    )
    if ev.removed:
        text += f", after removing a whole-run shift of {math.expm1(ev.removed):+.1%}"
    if mann_whitney_p is not None:
        text += f"; raw data: Mann-Whitney U p={mann_whitney_p:.2g}"
    return text


def _absolute_too(
    decision: _Decision, raw_change: float, removed: float, min_effect: float
) -> None:
    """A verdict must hold in absolute time too, not only against the run's other benchmarks:
    when a whole-run shift was removed, a benchmark that only moved less than the rest (a
    change the code made to most of the suite, or a busy machine's, taken for the run's) is
    called faster or slower only when its own time moved by the minimum effect that way. On
    the real corpus this halves one run's false alarms and costs no change of 15% or more;
    on the synthetic model, whose shifts are all the machine's, it costs some 10% ones."""
    against = (decision.verdict == "improved" and raw_change > -min_effect) or (
        decision.verdict == "regressed" and raw_change < min_effect
    )
    if removed and against:
        decision.verdict = "unchanged"
        decision.reasons.append(
            f"{raw_change:+.1%} in absolute time: it moved against the rest of the run only, "
            f"after a whole-run shift of {math.expm1(removed):+.1%} was taken for the machine's"
        )


def _decide(
    change: float, q: float, abs_change: float, min_effect: float, config: GateConfig
) -> _Decision:
    """Regressed or improved only when the change is significant (q <= the level,
    `GateConfig.level`), at least the
    benchmark's minimum effect AND at least the absolute floor (sub-microsecond benchmarks
    move by a few nanoseconds for reasons no merge should fail on); else unchanged."""
    significant = q <= config.level
    big_enough = abs(change) >= min_effect
    above_floor = abs_change >= config.floor_seconds
    if significant and big_enough and above_floor:
        return _Decision("regressed" if change > 0 else "improved", [])
    reasons = []
    if significant and not big_enough:
        reasons.append(f"significant but below the {min_effect:.0%} minimum effect")
    elif significant and big_enough and not above_floor:
        reasons.append(
            f"absolute change {abs_change * 1e9:.1f} ns is below the {config.floor_ns:g} ns floor"
        )
    return _Decision("unchanged", reasons)


def _confirm(decision: _Decision, i: int, change: float, ev: Evidence) -> None:
    """A re-run suspect: the head run chose it, so its own noise is part of why (the winner's
    curse). It stays regressed or improved only when its re-runs alone show the change in the
    same direction (one-sided p <= `CONFIRM_P`, by the precedence test where it judges); else
    it is "not confirmed" and unchanged."""
    n_re = int(ev.rerun_counts[i])
    agree = n_re > 0 and ev.rerun_p[i] <= CONFIRM_P and (ev.rerun_effect[i] > 0) == (change > 0)
    if decision.verdict in ("regressed", "improved") and not agree:
        decision.verdict = "unchanged"
        decision.reasons.append(
            f"the re-runs alone do not show it ({_reruns_shown(i, change, ev)}): the head run "
            "chose this suspect, so its own noise cannot confirm it"
        )
    judged = decision.verdict in ("regressed", "improved")
    decision.confirmation = "confirmed" if judged else "not confirmed"
    how = f", {_reruns_shown(i, change, ev)}" if judged and ev.precedence[i] else ""
    decision.prefix = f"{decision.confirmation} by {n_re} re-run{'s' * (n_re != 1)}{how}: "


def _reruns_shown(i: int, change: float, ev: Evidence) -> str:
    """What the re-runs alone showed, in the words of the test that judged them."""
    if not ev.precedence[i]:
        return f"{math.expm1(ev.rerun_effect[i]):+.1%}, p={ev.rerun_p[i]:.2g}"
    n_re, k, t = int(ev.rerun_counts[i]), int(ev.k_b[i]), int(ev.beyond[i])
    if change > 0:
        return (
            f"the fastest of {n_re} re-runs slower than {t} of {k} baseline runs, "
            f"p={ev.rerun_p[i]:.2g}"
        )
    return (
        f"{t} of {n_re} re-runs faster than the fastest of {k} baseline runs, p={ev.rerun_p[i]:.2g}"
    )


def _complete_data(bench: BenchStats | None) -> tuple[float, ...] | None:
    """Raw data only when it holds every round: a trimmed array is a biased sample."""
    if bench is None or bench.data is None:
        return None
    if len(bench.data) != bench.rounds or len(bench.data) < MW_MIN_ROUNDS:
        return None
    return bench.data


def _latest_data(runs: list[BenchRun], names: list[str]) -> dict[str, tuple[float, ...]]:
    """Each benchmark's complete raw data from the latest baseline run that has it."""
    found: dict[str, tuple[float, ...]] = {}
    for run in reversed(runs):
        for bench in run.benchmarks:
            data = _complete_data(bench)
            if data is not None and bench.fullname not in found:
                found[bench.fullname] = data
    return {n: found[n] for n in names if n in found}


def _mann_whitney(head: BenchStats, base: tuple[float, ...] | None) -> float | None:
    """Supporting evidence only: thousands of rounds from one process make tiny within-run
    differences "significant" that run-to-run noise dwarfs, so it never decides."""
    data = _complete_data(head)
    if data is None or base is None:
        return None
    return float(sps.mannwhitneyu(data, base, alternative="two-sided").pvalue)


def _fmt_s(seconds: float) -> str:
    """Seconds in the largest unit that keeps the figure at least 1, 3 significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"
