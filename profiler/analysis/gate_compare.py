"""The benchmark gate's one entry point for a verdict: `compare` judges every benchmark of
one or more head runs against their baselines. It picks like-for-like runs, names the
benchmarks that are new, gone or unmeasurable, and leaves the rest to `gate_judge`."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from hotpath.profiler.analysis.gate_baselines import like_first, select_baselines
from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_judge import judge
from hotpath.profiler.analysis.gate_verdicts import Comparison, Verdict
from hotpath.profiler.formats.pytest_benchmark import BenchRun


def compare(
    head: BenchRun | Sequence[BenchRun],
    baselines: list[BenchRun],
    config: GateConfig,
    *,
    reruns: Sequence[BenchRun] = (),
    suspected: Collection[str] = (),
    rounds: int | None = None,
) -> Comparison:
    """Judge every benchmark of the head run(s) against `baselines` (oldest first).

    `head` is one run or several runs of the same head (the first names it and decides which
    benchmarks there are); `reruns` are confirmation re-runs of the `suspected` benchmarks and
    of controls, pooled in like head runs but with their own shift measured on the controls;
    `rounds` is how many re-run rounds there will be at most (default: those given), which
    decides the test that judges them (`gate_significance.significance`).
    """
    heads = [head] if isinstance(head, BenchRun) else list(head)
    if not heads:
        raise ValueError("compare needs at least one head run")
    first = heads[0]
    extra, head_warnings = like_first(first, heads[1:], "head run")
    kept_reruns, rerun_warnings = like_first(first, reruns, "re-run")
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
        verdicts.update(
            judge(heads, kept_reruns, suspected_now, runs, names, config, result, rounds)
        )
    verdicts.update(_unjudged(heads, runs, new, zero, missing, config))
    order = [*head_map, *missing]
    result.verdicts = [verdicts[n] for n in order if n in verdicts]
    return result


def _unjudged(
    heads: list[BenchRun],
    runs: list[BenchRun],
    new: list[str],
    zero: list[str],
    missing: list[str],
    config: GateConfig,
) -> dict[str, Verdict]:
    """The benchmarks without a change to judge: new (in no baseline run), unknown (a median of
    0: the timer is too coarse) and missing (in the latest baseline run, not in the head)."""
    head_map = heads[0].by_fullname()
    groups = {b.fullname: b.group for r in runs for b in r.benchmarks}
    verdicts: dict[str, Verdict] = {}
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
    return verdicts


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
    """A verdict without figures: only its kind and why."""
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
