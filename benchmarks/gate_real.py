"""How the benchmark gate does on REAL runs: leave-one-out over the gate's real corpus
(tests/data/gate_corpus: five public projects' own pytest-benchmark suites, run many times at
one commit and as many times with a slowdown planted, see gate_corpus/run.py), against the
true effect of the plant established from all runs (gate_corpus/truth.py).

    .venv/bin/python benchmarks/gate_real.py [--per-project] [--json PATH|-] [--corpus DIR]

Gates (each a function of head runs, baseline runs and spare runs of the head's code, which a
gate may use as confirmation re-runs; `hotpath_gates(config)` makes the hotpath ones from any
`GateConfig`, today's gate is `GateConfig()`):
* hotpath on one head run; on three head runs pooled; with `--confirm 10` from one head run
  (`confirm_sequentially`, re-run round r = the r-th spare run, nearest in time first,
  holding only the benchmarks asked; as many rounds as there are spare runs, at most 10);
* pytest-benchmark's `--benchmark-compare-fail=mean:5%` and `min:5%`: the head run against
  the latest baseline run only. They fail on slowdowns and report no speedups.

Scenarios, per project and per run k of the head's side (runs in the order they were made):
* same-commit: head = same run k (k..k+2 for pooled heads, mod n), baseline = the 15 other
  same runs nearest to k by index, spare = the remaining same runs (with 20 runs: 4, so
  `--confirm 10` gets 4 rounds there, from runs further away in time than the baseline's);
* slowdown: head = change run k, baseline = the 15 same runs nearest to k, spare = the other
  change runs;
* speedup: head = same run k, baseline = the 15 change runs nearest to k, spare = the other
  same runs.
Baselines are passed oldest first as a CI history would be, with the run nearest the head
in time last: that one is "the latest baseline" of pytest-benchmark's rules.

Figures per gate (all projects, and per project with --per-project):
* false alarms: benchmarks flagged (regressed or improved) among unchanged ones, over all
  scenarios: every benchmark of a same-commit comparison, and the benchmarks truth.py calls
  "unchanged" in the slowdown and speedup scenarios;
* suite failures: same-commit comparisons the gate failed (exit 1: anything regressed);
* found: "changed" benchmarks flagged in the right direction, slowdown and speedup apart;
* wrong direction: "changed" or "grey" benchmarks whose effect has a known sign (its 95%
  interval excludes 0) flagged in the opposite direction (a count);
* grey flagged: how often the gate flagged a "grey" benchmark (neither right nor wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hotpath.profiler.analysis.gate import Comparison, compare, confirm_sequentially
from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.formats.pytest_benchmark import BenchRun

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.gate_accuracy import pytest_benchmark_rule
from benchmarks.gate_corpus.truth import CORPUS, VARIANTS, Truth, load_variant, projects, runs_truth

HISTORY = 15  # baseline runs per comparison, like a CI history of main
CONFIRM = 10  # `hotpath gate --confirm 10`, the README's CI workflow
POOLED = 3  # the CI job runs the suite three times
SCENARIOS = ("same-commit", "slowdown", "speedup")

# the bar a gate must meet on this corpus
MAX_FALSE_ALARMS = 0.01  # per unchanged benchmark comparison
MAX_SUITE_FAILURES = 1 / 20  # per same-commit comparison
MIN_FOUND = 0.90  # of changed benchmark comparisons, each direction the gate reports

# (regressed, improved, failed)
Outcome = tuple[set[str], set[str], bool]
Judge = Callable[[list[BenchRun], list[BenchRun], list[BenchRun]], Outcome]


@dataclass(frozen=True)
class Gate:
    name: str
    judge: Judge
    heads: int = 1  # head runs it judges: the scenarios keep them out of the baseline
    reports_speedups: bool = True  # pytest-benchmark's rules only fail on slowdowns


def _verdicts(comparison: Comparison) -> Outcome:
    regressed = {v.fullname for v in comparison.verdicts if v.verdict == "regressed"}
    improved = {v.fullname for v in comparison.verdicts if v.verdict == "improved"}
    return regressed, improved, bool(regressed)


def hotpath_single(config: GateConfig) -> Judge:
    return lambda heads, baselines, spare: _verdicts(compare(heads[0], baselines, config))


def hotpath_pooled(config: GateConfig) -> Judge:
    return lambda heads, baselines, spare: _verdicts(compare(heads, baselines, config))


def restricted(run: BenchRun, names: Iterable[str], source: str) -> BenchRun:
    """A copy of `run` holding only the benchmarks `names`, as a re-run of them would."""
    wanted = set(names)
    kept = tuple(b for b in run.benchmarks if b.fullname in wanted)
    return replace(run, source=source, benchmarks=kept)


def hotpath_confirm(config: GateConfig, times: int = CONFIRM) -> Judge:
    def judge(heads: list[BenchRun], baselines: list[BenchRun], spare: list[BenchRun]) -> Outcome:
        def rerun(names: list[str], look: int) -> BenchRun:
            return restricted(spare[look - 1], names, f"re-run {look}")

        rounds = min(times, len(spare))
        return _verdicts(confirm_sequentially(heads[0], baselines, config, rerun, rounds))

    return judge


def pytest_benchmark_judge(statistic: str, limit: float) -> Judge:
    """`--benchmark-compare-fail=STAT:LIMIT` against the latest baseline run only (the rule is
    `gate_accuracy.pytest_benchmark_rule`); it reports no speedups."""

    def judge(heads: list[BenchRun], baselines: list[BenchRun], spare: list[BenchRun]) -> Outcome:
        regressed = pytest_benchmark_rule(heads[0], baselines[-1], statistic, limit)
        return regressed, set(), bool(regressed)

    return judge


def hotpath_gates(config: GateConfig, label: str = "") -> list[Gate]:
    """The hotpath gates of the study with one configuration; `label` tells them apart."""
    name = f"hotpath{label}"
    return [
        Gate(name, hotpath_single(config)),
        Gate(f"{name}, {POOLED} runs pooled", hotpath_pooled(config), heads=POOLED),
        Gate(f"{name} --confirm {CONFIRM}", hotpath_confirm(config)),
    ]


def pytest_benchmark_gates() -> list[Gate]:
    return [
        Gate(
            f"pytest-benchmark {stat}:5%",
            pytest_benchmark_judge(stat, 0.05),
            reports_speedups=False,
        )
        for stat in ("mean", "min")
    ]


# the hotpath configurations studied, by label (added to the gate names): "" is the gate as
# it is now; " before" the gate before it was fitted to real runs (medians, symmetric noise)
BEFORE = GateConfig(statistic="median", contention=False)
CONFIGS: dict[str, GateConfig] = {"": GateConfig(), " before": BEFORE}
TODAY = "hotpath"  # the gate as it is, on one head run
GATES: list[Gate] = [
    *(gate for label, config in CONFIGS.items() for gate in hotpath_gates(config, label)),
    *pytest_benchmark_gates(),
]


@dataclass(frozen=True)
class Case:
    """One comparison: which runs are the head, the baseline and the spare re-runs."""

    scenario: str
    index: int  # the first head run's index on its side
    heads: list[BenchRun]
    baselines: list[BenchRun]
    spare: list[BenchRun]


def _nearest(indices: Iterable[int], k: int) -> list[int]:
    return sorted(indices, key=lambda i: (abs(i - k), i))


def make_case(
    scenario: str, k: int, head_side: list[BenchRun], other: list[BenchRun] | None, heads: int
) -> Case:
    """`other` is the baseline side (None: the head's own side, same-commit)."""
    n = len(head_side)
    head_ix = [(k + j) % n for j in range(heads)]
    rest = [i for i in range(n) if i not in head_ix]
    if other is None:
        chosen = _nearest(rest, k)[:HISTORY]
        baselines = [head_side[i] for i in reversed(chosen)]  # nearest in time last
        spare_ix = [i for i in _nearest(rest, k) if i not in chosen]
    else:
        chosen = _nearest(range(len(other)), k)[:HISTORY]
        baselines = [other[i] for i in reversed(chosen)]
        spare_ix = _nearest(rest, k)
    return Case(
        scenario=scenario,
        index=k,
        heads=[head_side[i] for i in head_ix],
        baselines=baselines,
        spare=[head_side[i] for i in spare_ix],
    )


def cases(same: list[BenchRun], change: list[BenchRun], heads: int) -> Iterable[Case]:
    for k in range(len(same)):
        yield make_case("same-commit", k, same, None, heads)
    for k in range(len(change)):
        yield make_case("slowdown", k, change, same, heads)
    for k in range(len(same)):
        yield make_case("speedup", k, same, change, heads)


@dataclass
class Tally:
    unchanged: int = 0  # unchanged benchmark comparisons
    false_alarms: int = 0
    same_commit: int = 0  # same-commit comparisons
    suite_failures: int = 0
    changed_slowdown: int = 0
    found_slowdown: int = 0
    changed_speedup: int = 0
    found_speedup: int = 0
    wrong_direction: int = 0
    grey: int = 0  # grey benchmark comparisons (slowdown and speedup)
    grey_flagged: int = 0
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def rates(self) -> dict[str, float | None]:
        def share(a: int, b: int) -> float | None:
            return a / b if b else None

        return {
            "false_alarms": share(self.false_alarms, self.unchanged),
            "suite_failures": share(self.suite_failures, self.same_commit),
            "found_slowdown": share(self.found_slowdown, self.changed_slowdown),
            "found_speedup": share(self.found_speedup, self.changed_speedup),
        }


def score(case: Case, outcome: Outcome, truth: dict[str, Truth], tally: Tally) -> None:
    regressed, improved, failed = outcome
    flagged = regressed | improved
    judged = [b.fullname for b in case.heads[0].benchmarks if b.fullname in truth]
    if case.scenario == "same-commit":
        tally.same_commit += 1
        tally.suite_failures += failed
        tally.unchanged += len(judged)
        tally.false_alarms += sum(name in flagged for name in judged)
        return
    direction = 1 if case.scenario == "slowdown" else -1
    for name in judged:
        t = truth[name]
        if t.cls == "unchanged":
            tally.unchanged += 1
            tally.false_alarms += name in flagged
            continue
        if t.cls == "changed":
            right = regressed if direction > 0 else improved
            if direction > 0:
                tally.changed_slowdown += 1
                tally.found_slowdown += name in right
            else:
                tally.changed_speedup += 1
                tally.found_speedup += name in right
        else:
            tally.grey += 1
            tally.grey_flagged += name in flagged
        low, high = t.ci_min
        sign = 1 if low > 0 else -1 if high < 0 else 0  # known only when 0 is outside
        wrong = improved if sign * direction > 0 else regressed if sign * direction < 0 else set()
        tally.wrong_direction += name in wrong


@dataclass
class Figures:
    """{gate: {"all" or project: Tally}}, and what they were measured on."""

    gates: dict[str, dict[str, Tally]] = field(default_factory=dict)
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # same, change per project
    reports_speedups: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "runs": {p: {"same": s, "change": c} for p, (s, c) in self.runs.items()},
            "seconds": round(self.seconds, 2),
            "gates": {
                gate: {
                    where: {
                        **asdict(t),
                        **t.rates(),
                        "reports_speedups": self.reports_speedups[gate],
                    }
                    for where, t in rows.items()
                }
                for gate, rows in self.gates.items()
            },
        }


def study(
    corpus: Path = CORPUS,
    gates: list[Gate] = GATES,
    truth: dict[str, dict[str, Truth]] | None = None,
) -> Figures:
    """Every gate on every scenario of every project of the corpus."""
    started = time.perf_counter()
    figures = Figures(reports_speedups={g.name: g.reports_speedups for g in gates})
    for project in projects(corpus):
        same, change = (load_variant(corpus / project, v) for v in VARIANTS)
        figures.runs[project] = (len(same), len(change))
        if len(same) < 2 or len(change) < 2:
            continue
        known = runs_truth(same, change) if truth is None else truth[project]
        for gate in gates:
            rows = figures.gates.setdefault(gate.name, {"all": Tally()})
            tally = rows.setdefault(project, Tally())
            begun = time.perf_counter()
            for case in cases(same, change, gate.heads):
                outcome = gate.judge(case.heads, case.baselines, case.spare)
                score(case, outcome, known, tally)
            tally.seconds += time.perf_counter() - begun
    for rows in figures.gates.values():
        for project, tally in list(rows.items()):
            if project != "all":
                rows["all"].add(tally)
    figures.seconds = time.perf_counter() - started
    return figures


def check_bar(figures: Figures, names: Iterable[str] | None = None) -> list[str]:
    """What keeps the gates `names` (default: all) from the bar, over all projects: false
    alarms <= 1% per unchanged benchmark comparison, suite failures on unchanged code <= 1
    in 20, found >= 90% of changed benchmarks in each direction the gate reports, no flag
    in the wrong direction."""
    problems = []
    for name in figures.gates if names is None else names:
        if name not in figures.gates:
            problems.append(f"{name}: not measured")
            continue
        t = figures.gates[name]["all"]
        rates = t.rates()
        if t.unchanged == 0 or t.same_commit == 0:
            problems.append(f"{name}: no unchanged comparisons to judge it on")
        if (rates["false_alarms"] or 0) > MAX_FALSE_ALARMS:
            problems.append(
                f"{name}: false alarms {_share(t.false_alarms, t.unchanged, 2)} "
                f"> {MAX_FALSE_ALARMS:.0%}"
            )
        if (rates["suite_failures"] or 0) > MAX_SUITE_FAILURES:
            problems.append(
                f"{name}: suite failures on unchanged code "
                f"{_share(t.suite_failures, t.same_commit)} > {MAX_SUITE_FAILURES:.0%}"
            )
        directions = ["slowdown", "speedup"] if figures.reports_speedups[name] else ["slowdown"]
        for direction in directions:
            found, changed = getattr(t, f"found_{direction}"), getattr(t, f"changed_{direction}")
            if changed == 0:
                problems.append(f"{name}: no changed benchmarks to find ({direction})")
            elif found / changed < MIN_FOUND:
                problems.append(
                    f"{name}: found {_share(found, changed)} of {direction}s < {MIN_FOUND:.0%}"
                )
        if t.wrong_direction:
            problems.append(f"{name}: {t.wrong_direction} flag(s) in the wrong direction")
    return problems


def _share(a: int, b: int, digits: int = 1) -> str:
    return f"{a / b:.{digits}%} ({a}/{b})" if b else "n/a"


def table(figures: Figures, per_project: bool = False) -> str:
    head = (
        "| gate | where | false alarms | suite failures, same commit | found slowdowns "
        "| found speedups | wrong direction | grey flagged | seconds |"
    )
    lines = [head, "|" + " --- |" * 9]
    for gate, rows in figures.gates.items():
        wheres = ["all", *(sorted(w for w in rows if w != "all") if per_project else [])]
        for where in wheres:
            t = rows[where]
            speedups = (
                _share(t.found_speedup, t.changed_speedup)
                if figures.reports_speedups[gate]
                else "n/a"
            )
            lines.append(
                f"| {gate} | {where} | {_share(t.false_alarms, t.unchanged, 2)} "
                f"| {_share(t.suite_failures, t.same_commit)} "
                f"| {_share(t.found_slowdown, t.changed_slowdown)} | {speedups} "
                f"| {t.wrong_direction} | {_share(t.grey_flagged, t.grey)} | {t.seconds:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--per-project", action="store_true", help="a row per project too")
    parser.add_argument("--json", help="write the figures as JSON to this file ('-': stdout)")
    args = parser.parse_args()
    figures = study(args.corpus)
    if args.json == "-":
        print(json.dumps(figures.to_json(), indent=1))
        return
    if args.json:
        Path(args.json).write_text(json.dumps(figures.to_json(), indent=1) + "\n")
    runs = ", ".join(f"{p} {s}+{c}" for p, (s, c) in figures.runs.items())
    print(f"Runs (same+change): {runs}; {HISTORY} baseline runs per comparison\n")
    print(table(figures, args.per_project))
    spare = {max(s - 1 - HISTORY, 0) for s, _ in figures.runs.values()}
    print(
        f"\n{figures.seconds:.1f} s in all. --confirm {CONFIRM} has as many re-run rounds as "
        f"spare runs: {'/'.join(map(str, sorted(spare)))} in same-commit comparisons, "
        "all other runs of the head's side in slowdown and speedup ones."
    )
    bar = (
        f"Bar: false alarms <= {MAX_FALSE_ALARMS:.0%}, suite failures <= 1 in "
        f"{round(1 / MAX_SUITE_FAILURES)}, found >= {MIN_FOUND:.0%}, no wrong direction."
    )
    print(bar)
    for gate in figures.gates:
        problems = check_bar(figures, [gate])
        print(f"  {gate}: " + ("meets it" if not problems else "; ".join(
            p.removeprefix(f"{gate}: ") for p in problems)))  # fmt: skip


if __name__ == "__main__":
    main()
