"""Which runs the benchmark gate may compare: like-for-like means the same machine
(`BenchRun.machine_key`) and the same benchmark options (max_time, min_rounds, warmup,
timer, ...). Baselines that are not are dropped and named; with none left, changes are shown
but not judged. Extra head runs and re-runs that are not are left out with a warning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hotpath.profiler.formats.pytest_benchmark import BenchRun


def options_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What changed between two runs' benchmark options, one "key old -> new" per key."""
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


def like_first(
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
