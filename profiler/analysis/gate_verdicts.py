"""What the benchmark gate answers: one `Verdict` per benchmark, gathered in a `Comparison`
of a head run (or several) against its baselines. The reports (`hotpath.gate.report`) and
the accuracy study read only these."""

from __future__ import annotations

from dataclasses import dataclass, field

from hotpath.profiler.formats.pytest_benchmark import BenchRun

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
    # the smallest slowdown these runs find 4 times in 5 (`gate_significance.detectable`);
    # above the minimum effect, the benchmark is too noisy for it with the runs at hand
    detectable: float | None = None
    baseline_log_se: float | None = None  # the part of log_se no head re-run can reduce
    # what a run's value was: "minimum", "median" or "one round" (median = minimum = mean)
    statistic: str | None = None
    slow_episode: bool = False  # the first head run's median jumped while its minimum held


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
    slow_episodes: list[str] = field(default_factory=list)  # benchmarks, in the first head run

    @property
    def regressed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == "regressed"]

    def counts(self) -> dict[str, int]:
        return {name: sum(v.verdict == name for v in self.verdicts) for name in VERDICTS}
