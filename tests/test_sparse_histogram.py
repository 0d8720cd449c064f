"""The agent's numpy-free histogram says and ships exactly what the server's numpy one does."""

from __future__ import annotations

import json
import random

import pytest

from hotpath.profiler.hotpath.histogram import (
    HIGHEST_NS,
    NUM_BUCKETS,
    OVERFLOW_INDEX,
    Histogram,
    parse_wire,
)
from hotpath.profiler.hotpath.sparse import SparseHistogram


def durations(seed: int, size: int, median_ns: float = 2e6) -> list[int]:
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(0, 1.5) * median_ns) for _ in range(size)]
    # The edges too: below 1 µs, zero, 100 s and beyond.
    return [*values, 0, 3, 999, HIGHEST_NS - 1, HIGHEST_NS, 4 * HIGHEST_NS]


def both(values: list[int]) -> tuple[Histogram, SparseHistogram]:
    dense, sparse = Histogram(), SparseHistogram()
    for v in values:
        dense.record(v)
        sparse.record(v)
    return dense, sparse


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_durations_give_the_same_wire_bytes(seed: int) -> None:
    dense, sparse = both(durations(seed, 5_000))
    assert json.dumps(sparse.to_wire()) == json.dumps(dense.to_wire())
    assert sparse.count == dense.count and sparse.max == dense.max and sparse.sum == dense.sum
    assert sparse.to_histogram() == dense
    assert SparseHistogram.from_wire(dense.to_wire()) == sparse


@pytest.mark.parametrize("seed", [4, 5])
def test_window_deltas_agree_including_the_estimated_max(seed: int) -> None:
    before_values = durations(seed, 3_000)
    # The window stays below the earlier max: its max is estimated, not exact.
    window_values = [v // 7 for v in durations(seed + 10, 2_000)[:-3]]
    dense, sparse = both(before_values)
    dense_before, sparse_before = (
        dense.copy(),
        SparseHistogram(sparse.buckets, sparse.sum, sparse.max),
    )
    for v in window_values:
        dense.record(v)
        sparse.record(v)
    dense_window = dense.delta(dense_before)
    sparse_window = sparse.delta(sparse_before)
    assert sparse_window.max < sparse.max  # the estimated case, not the exact one
    assert json.dumps(sparse_window.to_wire()) == json.dumps(dense_window.to_wire())
    assert sparse_window.count == len(window_values)
    assert sparse.delta(sparse) == SparseHistogram()


def test_a_window_that_raised_the_max_has_it_exactly() -> None:
    sparse = SparseHistogram()
    sparse.record(10_000)
    before = SparseHistogram(sparse.buckets, sparse.sum, sparse.max)
    sparse.record(7_000_000)
    sparse.record(2_000)
    window = sparse.delta(before)
    assert (window.count, window.sum, window.max) == (2, 7_002_000, 7_000_000)


def test_delta_refuses_a_later_snapshot() -> None:
    earlier, later = SparseHistogram(), SparseHistogram()
    earlier.record(10_000)
    later.record(10_000)
    later.record(50_000)
    with pytest.raises(ValueError, match="backwards"):
        earlier.delta(later)


def test_over_counts_as_the_server_counts() -> None:
    dense, sparse = both(durations(6, 20_000, median_ns=50e6))
    for threshold in (0, 999, 1_000, 20_000_000, 50_000_000, 10**9, HIGHEST_NS, sparse.max):
        assert sparse.over(threshold) == dense.over(threshold), threshold
    assert sparse.over(0) == sparse.count


def test_empty_histograms_agree() -> None:
    assert SparseHistogram().to_wire() == Histogram().to_wire()
    assert SparseHistogram().count == 0 and SparseHistogram().over(0) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"layout": "loglinear/7/1000/100000000000"},
        {"count": 1},
        {"buckets": {str(NUM_BUCKETS): 1}, "count": 1},
        {"buckets": {"5": -1}, "count": -1},
        {"buckets": {"5": True}, "count": 1},
        {"buckets": {"5": 1, "05": 1}, "count": 2},
        {"buckets": [[5, 1]], "count": 1},
        {"sum": -3},
        {"buckets": {"5": 2**63}, "count": 2**63},
        {"buckets": {"5": 2**62, "6": 2**62}, "count": 2**63},
        {"sum": 2**64},
        {"max": "lots"},
    ],
)
def test_both_refuse_the_same_bad_wire_data(change: dict[str, object]) -> None:
    wire = {**Histogram().to_wire(), **change}
    with pytest.raises(ValueError):
        parse_wire(wire)
    with pytest.raises(ValueError):
        SparseHistogram.from_wire(wire)
    with pytest.raises(ValueError):
        Histogram.from_wire(wire)


def test_overflow_bucket_round_trips() -> None:
    sparse = SparseHistogram()
    sparse.record(3 * HIGHEST_NS)
    assert sparse.buckets == {OVERFLOW_INDEX: 1}
    assert Histogram.from_wire(sparse.to_wire()).quantile(0.5) == 3 * HIGHEST_NS
