"""The trend test (profiler/analysis/trend.py) on series with a known truth."""

from __future__ import annotations

import random

from hotpath.profiler.analysis.trend import trend

MB = 1024 * 1024
FLOOR = 0.25 * MB / 60  # bytes per second: 0.25 MB/min


def noisy(seconds: int, slope_per_s: float, noise: float, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(float(t), 50 * MB + slope_per_s * t + rng.gauss(0, noise)) for t in range(seconds)]


def test_linear_growth_under_noise_is_growing_with_its_slope_inside_the_interval() -> None:
    slope = 2 * MB / 60  # 2 MB/min, under noise of 1 MB per point
    found = trend(noisy(600, slope, MB, seed=1), floor_per_s=FLOOR, min_span_s=120)
    assert found.growing
    assert found.low_per_s <= slope <= found.high_per_s
    assert abs(found.per_minute - 2 * MB) < 0.2 * MB
    assert found.p_value < 1e-6


def test_noise_alone_is_not_growing() -> None:
    for seed in range(20):
        found = trend(noisy(600, 0.0, MB, seed=seed), floor_per_s=FLOOR, min_span_s=120)
        assert not found.growing, (seed, found)


def test_slow_growth_below_the_floor_is_not_growing() -> None:
    # Significant but tiny (0.05 MB/min): the floor keeps it from paging anyone.
    found = trend(noisy(3600, 0.05 * MB / 60, 0.1 * MB, seed=3), floor_per_s=FLOOR)
    assert found.p_value < 0.001 and not found.growing


def test_one_step_then_a_long_plateau_is_not_growing() -> None:
    # A cache filled once: 40 MB at minute 2, flat for the next 28 minutes.
    rng = random.Random(4)
    points = [
        (float(t), 50 * MB + (40 * MB if t >= 120 else 0) + rng.gauss(0, 0.5 * MB))
        for t in range(0, 1800, 5)
    ]
    found = trend(points, floor_per_s=FLOOR, min_span_s=300)
    assert not found.growing, found


def test_too_few_points_or_too_short_a_span_is_not_growing() -> None:
    steep = [(float(t), float(t * MB)) for t in range(5)]
    assert not trend(steep, floor_per_s=FLOOR).growing  # 5 < min_points
    assert not trend(steep[:2], floor_per_s=FLOOR).growing
    assert not trend([], floor_per_s=FLOOR).growing
    many = [(float(t), float(t * MB)) for t in range(30)]
    assert trend(many, floor_per_s=FLOOR).growing
    assert not trend(many, floor_per_s=FLOOR, min_span_s=60).growing  # spans 29 s


def test_a_flat_series_is_not_growing() -> None:
    found = trend([(float(t), 7.0) for t in range(100)], floor_per_s=0.0)
    assert not found.growing and found.slope_per_s == 0.0
