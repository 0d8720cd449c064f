"""E-divisive means on planted shifts, stationary noise and slow drifts."""

from __future__ import annotations

import numpy as np
import pytest

from hotpath.profiler.analysis.changepoint import e_divisive


def noise(seed: int, n: int, level: float = 100.0, sd: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(level, sd, n)


@pytest.mark.parametrize(("at", "n", "shift"), [(20, 40, 0.08), (50, 60, -0.06), (150, 300, 0.05)])
def test_a_planted_shift_is_found_at_its_index(at: int, n: int, shift: float) -> None:
    values = noise(at, n)
    values[at:] *= 1 + shift
    [change] = e_divisive(values)
    assert abs(change.index - at) <= 1
    assert change.p_value < 0.01
    assert change.relative_change == pytest.approx(shift, abs=0.015)


def test_two_planted_shifts_are_both_found() -> None:
    values = np.r_[noise(1, 40), noise(2, 30, 110), noise(3, 40)]
    assert [c.index for c in e_divisive(values)] == [40, 70]


def test_stationary_noise_gives_false_change_points_at_about_the_stated_rate() -> None:
    significance, trials = 0.05, 200
    false = sum(
        bool(e_divisive(noise(1000 + s, 40), significance=significance, permutations=99, seed=s))
        for s in range(trials)
    )
    # Binomial(200, 0.05): mean 10, sd ~3.1; 20 is 3 sd above the stated rate.
    assert false <= 20


def test_heavy_tailed_stationary_noise_is_not_a_change() -> None:
    values = 100 + np.random.default_rng(5).standard_t(3, 80)
    assert e_divisive(values) == []


def test_a_slow_drift_across_many_small_steps_is_found() -> None:
    # 0.3% slower per merge over 40 merges (12% in all), no step larger than the noise.
    values = np.r_[noise(7, 30), 100 * (1 + 0.003 * np.arange(1, 41)) + noise(8, 40, 0.0)]
    changes = e_divisive(values)
    assert changes
    assert all(30 <= c.index <= 70 for c in changes)
    assert changes[-1].mean_after > changes[0].mean_before * 1.05


def test_results_are_reproducible_with_a_seed_and_short_series_have_none() -> None:
    values = noise(9, 50)
    values[25:] += 3
    assert e_divisive(values, seed=3) == e_divisive(values, seed=3)
    assert e_divisive([1.0, 2.0, 3.0, 4.0, 5.0]) == []
    with pytest.raises(ValueError, match="finite"):
        e_divisive([1.0, float("nan"), 2.0])
