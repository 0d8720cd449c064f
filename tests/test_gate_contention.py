"""Contention as the gate models it (`gate_contention`): noise that only slows, measured on the
baselines, and a test on the fastest head run that a contended run cannot carry alone."""

from __future__ import annotations

import numpy as np

from hotpath.profiler.analysis.gate_contention import contention, effective_runs, floor_p

SIGMA = 0.02


def _history(rng: np.random.Generator, share: float, runs: int = 15, n: int = 30) -> np.ndarray:
    """Residuals (benchmarks x runs) of calm t(4) noise, `share` of the cells contended."""
    resid = SIGMA * rng.standard_t(4, (n, runs)) / 1.099
    busy = rng.random((n, runs)) < share
    return resid + np.where(busy, rng.exponential(0.4, (n, runs)), 0.0)


def test_a_calm_history_is_read_as_calm_and_a_busy_one_as_busy() -> None:
    rng = np.random.default_rng(1)
    var = np.full(30, SIGMA**2)
    calm, busy = contention(_history(rng, 0.0), var, 4.0), contention(_history(rng, 0.2), var, 4.0)
    assert calm.suite_eps < 0.01 and float(np.max(calm.eps)) < 0.05
    assert 0.12 < busy.suite_eps < 0.3
    assert 0.2 < busy.mu < 0.6  # the exponential's mean, 0.4 in log


def test_bursts_make_runs_in_a_row_count_for_less() -> None:
    rng = np.random.default_rng(2)
    resid = _history(rng, 0.0, runs=16)
    resid[:, 4:8] += 0.5  # four runs in a row contended, every benchmark
    model = contention(resid, np.full(30, SIGMA**2), 4.0)
    assert model.follow > 0.5
    assert float(effective_runs(np.array([3]), model)[0]) < 2.0


def test_one_contended_head_run_cannot_carry_a_slowdown_but_a_change_in_every_run_does() -> None:
    rng = np.random.default_rng(3)
    model = contention(_history(rng, 0.05), np.full(30, SIGMA**2), 4.0)
    se = np.full(30, SIGMA)
    one_busy = np.zeros((30, 3))
    one_busy[0, 1] = 0.6  # one of three runs +80%: the fastest is calm
    p_slow, _ = floor_p(one_busy, se, 4.0, model)
    assert p_slow[0] > 0.3
    changed = np.full((30, 3), 0.0)
    changed[0] = [0.2, 0.21, 0.19]  # +22% in every run
    p_slow, p_fast = floor_p(changed, se, 4.0, model)
    assert p_slow[0] < 1e-3 and p_fast[0] > 0.5


def test_a_single_slow_run_proves_less_on_a_busy_machine() -> None:
    rng = np.random.default_rng(4)
    var = np.full(30, SIGMA**2)
    head = np.zeros((30, 1))
    head[0, 0] = 0.2
    se = np.full(30, SIGMA)
    calm = floor_p(head, se, 4.0, contention(_history(rng, 0.0), var, 4.0))[0][0]
    busy = floor_p(head, se, 4.0, contention(_history(rng, 0.2), var, 4.0))[0][0]
    assert calm < 0.002 < 0.05 < busy
