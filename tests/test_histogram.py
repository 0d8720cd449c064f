"""The log-linear histogram: bucket scheme, quantile accuracy, merge, delta, over, wire form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hotpath.profiler.hotpath.histogram import (
    HIGHEST_NS,
    LAYOUT_ID,
    LOWEST_NS,
    NUM_BUCKETS,
    OVERFLOW_INDEX,
    SUB_BUCKETS,
    UNDERFLOW_INDEX,
    Histogram,
    bucket_bounds,
    bucket_index,
    merge_all,
)


def histogram_of(values: np.ndarray | list[int]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(int(v))
    return h


def lognormal_ns(seed: int, size: int, median_ns: float = 2e6, sigma: float = 1.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(np.log(median_ns), sigma, size).astype(np.int64)


def test_bucket_edges_at_one_microsecond_and_one_hundred_seconds() -> None:
    assert bucket_index(0) == bucket_index(LOWEST_NS - 1) == UNDERFLOW_INDEX
    assert bucket_index(LOWEST_NS) == 1
    assert bucket_bounds(1)[0] == LOWEST_NS
    assert bucket_index(HIGHEST_NS - 1) == OVERFLOW_INDEX - 1
    assert bucket_bounds(OVERFLOW_INDEX - 1)[1] == HIGHEST_NS
    assert bucket_index(HIGHEST_NS) == bucket_index(10**15) == OVERFLOW_INDEX
    assert NUM_BUCKETS == OVERFLOW_INDEX + 1


def test_values_outside_the_range_still_count_with_exact_max_and_sum() -> None:
    h = histogram_of([5, 999, 1_000, 10**11, 3 * 10**11])
    assert h.count == 5
    assert h.counts[UNDERFLOW_INDEX] == 2 and h.counts[OVERFLOW_INDEX] == 2
    assert h.max == 3 * 10**11
    assert h.sum == 5 + 999 + 1_000 + 10**11 + 3 * 10**11
    assert h.quantile(1.0) == 3 * 10**11
    assert h.quantile(0.9) == 3 * 10**11  # the overflow bucket reports the exact max


def test_buckets_tile_the_range_without_gaps_and_are_at_most_one_64th_wide() -> None:
    for i in range(1, OVERFLOW_INDEX - 1):
        lower, upper = bucket_bounds(i)
        assert upper == bucket_bounds(i + 1)[0]
        assert (upper - lower) / lower <= 1 / SUB_BUCKETS


def test_every_value_lands_in_the_bucket_whose_bounds_contain_it() -> None:
    rng = np.random.default_rng(1)
    values = np.exp(rng.uniform(np.log(LOWEST_NS), np.log(HIGHEST_NS), 20_000)).astype(np.int64)
    edges = [LOWEST_NS, HIGHEST_NS - 1, *(1 << e for e in range(10, 37))]
    for v in [
        *values.tolist(),
        *edges,
        *(e - 1 for e in edges[2:]),
        *(e + 1 for e in edges if e + 1 < HIGHEST_NS),
    ]:
        lower, upper = bucket_bounds(bucket_index(v))
        assert lower <= v < upper, v
        assert abs((lower + upper) / 2 - v) / v <= 1 / (2 * SUB_BUCKETS), v


def test_the_layout_is_pinned() -> None:
    # The shared file and the wire both carry bucket indexes: changing the scheme is a format
    # change (new LAYOUT_ID, new file version), not a tweak.
    assert (SUB_BUCKETS, LOWEST_NS, HIGHEST_NS, NUM_BUCKETS) == (64, 1_000, 10**11, 1699)
    assert LAYOUT_ID == "loglinear/6/1000/100000000000"


@pytest.mark.parametrize("seed", [3, 4])
def test_quantiles_within_one_percent_of_numpy_on_lognormal_data(seed: int) -> None:
    values = lognormal_ns(seed, 100_000)
    h = histogram_of(values)
    assert h.count == len(values)
    assert h.max == values.max()
    assert h.mean == pytest.approx(values.mean(), rel=1e-12)
    qs = [0.0, 0.001, *np.linspace(0.01, 0.99, 99).tolist(), 0.999, 1.0]
    nearest_rank = np.quantile(values, qs, method="inverted_cdf")
    interpolated = np.quantile(values, qs, method="linear")
    for q, rank_value, linear_value in zip(qs, nearest_rank, interpolated, strict=True):
        got = h.quantile(q)
        # The bucket midpoint is within half a bucket (1/128 of the value) of the exact value
        # at the same rank; numpy's default interpolation is within the promised 1%.
        assert abs(got - rank_value) / rank_value <= 1 / 128 + 1e-4, (q, got, rank_value)
        assert abs(got - linear_value) / linear_value <= 0.01, (q, got, linear_value)


def test_quantile_of_an_empty_histogram_is_zero_and_q_is_checked() -> None:
    h = Histogram()
    assert h.quantile(0.5) == 0 and h.mean == 0.0 and h.count == 0
    with pytest.raises(ValueError):
        h.quantile(1.5)


def test_merge_equals_recording_everything_into_one() -> None:
    values = lognormal_ns(5, 30_000)
    parts = np.array_split(values, 3)
    merged = histogram_of(parts[0]).merge(histogram_of(parts[1])).merge(histogram_of(parts[2]))
    whole = histogram_of(values)
    assert merged == whole
    assert merge_all(histogram_of(p) for p in parts) == whole
    assert merge_all([]) == Histogram()


def test_delta_is_the_calls_between_two_snapshots() -> None:
    before_values, window_values = lognormal_ns(6, 5_000), lognormal_ns(7, 3_000, median_ns=1e5)
    h = histogram_of(before_values)
    before = h.copy()
    for v in window_values:
        h.record(int(v))
    window = h.delta(before)
    expected = histogram_of(window_values)
    assert np.array_equal(window.counts, expected.counts)
    assert window.sum == expected.sum and window.count == len(window_values)
    # The window's max is not subtractable: when the window did not raise the max, the
    # reported one is the top edge of its highest bucket, capped at the earlier max.
    assert window_values.max() <= window.max <= before.max
    assert window.max <= window_values.max() * (1 + 1 / SUB_BUCKETS)


def test_delta_has_the_exact_max_when_the_window_raised_it() -> None:
    h = histogram_of([10_000, 20_000])
    before = h.copy()
    h.record(5_000_000)
    h.record(3_000)
    window = h.delta(before)
    assert window.max == 5_000_000 and window.count == 2 and window.sum == 5_003_000
    assert h.delta(h.copy()) == Histogram()


def test_delta_refuses_a_later_snapshot() -> None:
    h = histogram_of([10_000])
    later = h.copy()
    later.record(20_000)
    with pytest.raises(ValueError, match="backwards"):
        h.delta(later)


def test_over_counts_calls_above_a_threshold_up_to_one_bucket() -> None:
    values = lognormal_ns(8, 50_000, median_ns=50e6, sigma=0.5)
    h = histogram_of(values)
    for threshold in (20_000_000, 50_000_000, 100_000_000, 150_000_000):
        exact = int((values > threshold).sum())
        near = int((np.abs(values - threshold) <= threshold / SUB_BUCKETS).sum())
        assert abs(h.over(threshold) - exact) <= near, threshold
    assert h.over(int(values.max())) == 0
    assert h.over(0) == len(values)
    # Consistent with quantiles: about 1% of calls are over the p99.
    assert h.over(h.quantile(0.99)) == pytest.approx(0.01 * len(values), rel=0.1)


def test_wire_round_trip_is_sparse_json_and_exact() -> None:
    h = histogram_of([*lognormal_ns(9, 2_000).tolist(), 3, 2 * 10**11])
    wire = h.to_wire()
    assert wire["layout"] == LAYOUT_ID
    assert len(wire["buckets"]) == int(np.count_nonzero(h.counts)) < NUM_BUCKETS
    assert (wire["count"], wire["sum"], wire["max"]) == (h.count, h.sum, h.max)
    assert Histogram.from_wire(json.loads(json.dumps(wire))) == h
    assert Histogram.from_wire(Histogram().to_wire()) == Histogram()


@pytest.mark.parametrize(
    "change",
    [
        {"layout": "loglinear/7/1000/100000000000"},
        {"count": 1},
        {"buckets": {str(NUM_BUCKETS): 1}, "count": 1},
        {"buckets": {"5": -1}, "count": -1},
        {"buckets": {"5": True}, "count": 1},
        {"buckets": [[5, 1]], "count": 1},
        {"sum": -3},
        {"max": "lots"},
    ],
)
def test_from_wire_refuses_bad_data(change: dict[str, object]) -> None:
    wire = {**Histogram().to_wire(), **change}
    with pytest.raises(ValueError):
        Histogram.from_wire(wire)
