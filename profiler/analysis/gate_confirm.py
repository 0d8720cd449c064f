"""Confirmation of the benchmark gate's first verdicts by re-runs (two stages, as
Perfherder retriggers or Pinpoint do): `suspects` screens the first verdicts loosely,
`controls` picks unsuspected benchmarks whose re-runs measure each round's own whole-run
shift, and `confirm_sequentially` (`hotpath gate --confirm N`) re-runs them round by round,
letting settled suspects leave early. The defaults were calibrated with
benchmarks/gate_accuracy.py (see `gate.py`); how re-runs are judged given history enough (a
precedence test) comes from real suites (`gate.py`, benchmarks/gate_real.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from hotpath.profiler.analysis.gate_compare import compare
from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_significance import CONFIRM_P
from hotpath.profiler.analysis.gate_verdicts import Comparison, Verdict
from hotpath.profiler.formats.pytest_benchmark import BenchRun

# the loose screen for confirmation re-runs, calibrated with benchmarks/gate_accuracy.py
SUSPECT_P = 0.3
SUSPECT_EFFECT_SHARE = 0.5
CONTROLS = 10  # unsuspected benchmarks re-run beside the suspects to measure the re-run's shift
# sequential confirmation: interim looks confirm only at this share of alpha and CONFIRM_P
EARLY_SHARE = 0.1
CLEAR_Z = 1.28  # ... and clear a suspect whose one-sided 90% bound stays below the min effect
# ... on the re-runs alone only from this many on: one or two heavy-tailed runs that happen
# to be fast would clear a real regression too often
MIN_RERUNS_TO_CLEAR = 3


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
    """Worth a re-run: screened (one-sided p <= `SUSPECT_P`, a change of at least
    `SUSPECT_EFFECT_SHARE` of the minimum effect, above the floor), or not ruled out."""
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
      `EARLY_SHARE` AND re-runs alone at p <= `CONFIRM_P` x `EARLY_SHARE`, by the precedence
      test where it judges (fixed by `max_reruns` before the first round). A Haybittle-Peto
      boundary: interim looks are held to a level so strict that the few of them add little
      to the false alarms; under no change the re-runs alone pass it at any of N-1 looks with
      probability at most (N-1) x `EARLY_SHARE` x `CONFIRM_P`, by the union bound, for
      suspects only.
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
        result = compare(
            heads, baselines, config, reruns=reruns, suspected=suspected, rounds=max_reruns
        )
        if look == max_reruns:
            break
        open_, done = _leave_settled(open_, result, look, max_reruns, config.level)
        settled.update(done)
        if not open_:
            break
    result.verdicts = [settled.get(v.fullname, v) for v in result.verdicts]
    result.benchmark_reruns = cost
    return result


def _leave_settled(
    open_: list[str], result: Comparison, look: int, max_reruns: int, alpha: float
) -> tuple[list[str], dict[str, Verdict]]:
    """After look `look`: (the suspects still open, the final verdicts of those settled now),
    each final verdict noting when and why it settled. A suspect cleared while the pooled
    verdict still says confirmed becomes unchanged: only the head run carries its change."""
    by_name = {v.fullname: v for v in result.verdicts}
    still = []
    done: dict[str, Verdict] = {}
    for name in open_:
        verdict = by_name.get(name)
        outcome = _settled(verdict, alpha, look) if verdict else None
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
        done[name] = replace(verdict, evidence=verdict.evidence + note)
    return still, done
