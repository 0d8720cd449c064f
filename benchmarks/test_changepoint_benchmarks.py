"""pytest-benchmark suite for change-point detection, which the server runs per benchmark on
its pages and `/api/v1/bench/history` (E-divisive means with a 199-permutation test).

    .venv/bin/pytest benchmarks/test_changepoint_benchmarks.py --benchmark-only

Histories of 100 runs (the project page's window) and 500 (the history page and the API's
maximum), with run-to-run noise of 3% and one 10% step, and a stationary one (every
permutation test stops early). The change point found is asserted, so a fast wrong answer
fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from hotpath.profiler.analysis.changepoint import e_divisive


def _history(runs: int, step_at: int | None) -> np.ndarray:
    values = np.random.default_rng(runs).normal(1.0, 0.03, runs)
    if step_at is not None:
        values[step_at:] *= 1.1
    return values


@pytest.mark.parametrize("runs", [100, 500])
def test_one_step(benchmark, runs: int) -> None:  # type: ignore[no-untyped-def]
    values = _history(runs, runs * 3 // 4)
    found = benchmark(e_divisive, values)
    assert [c.index for c in found] == [runs * 3 // 4]


def test_stationary_500(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(e_divisive, _history(500, None)) == []
