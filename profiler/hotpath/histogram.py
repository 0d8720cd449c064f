"""Log-linear latency histograms: the bucket scheme, and the `Histogram` the agent and server use.

The scheme is HdrHistogram's: every power of two of nanoseconds is split into
`SUB_BUCKETS` (64) equal linear sub-buckets, so a bucket is at most 1/64 (1.6%) of its
lower edge wide and a value reported as its bucket's midpoint is off by at most 1/128 (0.78%).
Regular buckets cover [`LOWEST_NS`, `HIGHEST_NS`) = [1 µs, 100 s); everything faster falls in
the underflow bucket (index 0) and everything slower in the overflow bucket (the last index),
so every call is counted. The exact maximum and the exact sum (for the mean) are kept beside
the buckets.

`bucket_index` is the one definition of the scheme: the in-process recorder
(`hotpath.profiler.hotpath.recorder`) calls it on every timed call and `Histogram.record` calls it
too, so a histogram read from another process's file means what a local one means.
The trading process imports this module for that function alone, and the agent (a plain
`pip install hotpath`, without numpy) for the scheme and `parse_wire`: numpy (0.2 s and 16 MB
to import) is imported inside the `Histogram` methods, on first use, not at module level.

A `Histogram` is a dense numpy array of `NUM_BUCKETS` counts plus sum and max: the server's
form. It merges (over time ranges and labels), subtracts, answers quantiles and "how many
calls were over budget", and travels as a sparse dict (`to_wire` / `from_wire`). The agent
uses `profiler.hotpath.sparse.SparseHistogram` instead: the same wire form in plain ints.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SUB_BUCKET_BITS = 6
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # linear sub-buckets per power of two
LOWEST_NS = 1_000  # 1 µs: below this, the underflow bucket
HIGHEST_NS = 100_000_000_000  # 100 s: at or above this, the overflow bucket

# A value v with 2**e <= v < 2**(e+1) has shift = e - SUB_BUCKET_BITS and (v >> shift) in
# [SUB_BUCKETS, 2 * SUB_BUCKETS); (shift << SUB_BUCKET_BITS) + (v >> shift) then increases
# with v and has no gaps from one power of two to the next. The bias makes LOWEST_NS land on
# index 1, right after the underflow bucket.
_MAGNITUDE_BITS = SUB_BUCKET_BITS + 1


def _raw_index(ns: int) -> int:
    shift = ns.bit_length() - _MAGNITUDE_BITS
    return (shift << SUB_BUCKET_BITS) + (ns >> shift)


_INDEX_BIAS = _raw_index(LOWEST_NS) - 1
UNDERFLOW_INDEX = 0
OVERFLOW_INDEX = _raw_index(HIGHEST_NS - 1) - _INDEX_BIAS + 1
NUM_BUCKETS = OVERFLOW_INDEX + 1

# Names the scheme on the wire and in the shared file, so that a histogram made with other
# constants is refused instead of misread.
LAYOUT_ID = f"loglinear/{SUB_BUCKET_BITS}/{LOWEST_NS}/{HIGHEST_NS}"


def bucket_index(ns: int) -> int:
    """The bucket of a duration in nanoseconds: 0 below 1 µs, `OVERFLOW_INDEX` from 100 s.

    Hot: called once per timed call in the trading process, so it is kept to two compares,
    one `bit_length` and a few integer operations.
    """
    if ns < LOWEST_NS:
        return UNDERFLOW_INDEX
    if ns >= HIGHEST_NS:
        return OVERFLOW_INDEX
    shift = ns.bit_length() - _MAGNITUDE_BITS
    return (shift << SUB_BUCKET_BITS) + (ns >> shift) - _INDEX_BIAS


def bucket_bounds(index: int) -> tuple[int, int]:
    """[lower, upper) in nanoseconds of a bucket; underflow is [0, 1 µs), overflow [100 s, ∞)
    reported with an upper bound of `HIGHEST_NS` as there is none."""
    if index == UNDERFLOW_INDEX:
        return 0, LOWEST_NS
    if index == OVERFLOW_INDEX:
        return HIGHEST_NS, HIGHEST_NS
    if not 0 < index < OVERFLOW_INDEX:
        raise IndexError(f"bucket index {index} outside 0..{OVERFLOW_INDEX}")
    raw = index + _INDEX_BIAS
    shift = (raw >> SUB_BUCKET_BITS) - 1
    mantissa = raw - (shift << SUB_BUCKET_BITS)
    lower, upper = mantissa << shift, (mantissa + 1) << shift
    # The first and last regular buckets are cut at the range's ends.
    return max(lower, LOWEST_NS), min(upper, HIGHEST_NS)


@cache
def _midpoints() -> tuple[float, ...]:
    """The value each bucket reports (quantiles) and the one `over` compares with, so the two
    agree: over(quantile(q)) counts the calls reported above quantile(q)."""
    return tuple(sum(bucket_bounds(i)) / 2 for i in range(NUM_BUCKETS))


def first_over_index(threshold_ns: int) -> int:
    """The first bucket whose calls count as over `threshold_ns`: the one after the last whose
    midpoint is at or below it. Beyond 100 s only the max is known, so the overflow bucket
    counts as over any threshold below the max (the caller checks the max)."""
    return min(bisect_right(_midpoints(), threshold_ns), OVERFLOW_INDEX)


def window_max(now_max: int, since_max: int, top_index: int | None) -> int:
    """The largest call of a window `now - since`, whose highest non-empty bucket is
    `top_index` (None when the window is empty).

    The max cannot be subtracted: it is exact when the window raised it; otherwise the
    window's max was at most `since_max`, and the upper edge of the window's highest bucket
    (capped at `since_max`) is reported.
    """
    if now_max > since_max:
        return now_max
    if top_index is None:
        return 0
    upper = now_max if top_index == OVERFLOW_INDEX else bucket_bounds(top_index)[1] - 1
    return min(upper, since_max)


# Every number of a histogram is a signed 64-bit word in the shared file and in storage.
MAX_WIRE_INT = 2**63 - 1


def parse_wire(data: Mapping[str, Any]) -> tuple[dict[int, int], int, int]:
    """Check a histogram's wire form (`to_wire`): its non-empty buckets by index, sum, max.

    Plain Python (the agent and the window's validator run without numpy). Raises ValueError
    naming the problem on a foreign layout or inconsistent data.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a histogram must be a mapping")
    layout = data.get("layout")
    if layout != LAYOUT_ID:
        raise ValueError(f"histogram layout {layout!r} is not {LAYOUT_ID!r}")
    raw = data.get("buckets")
    if not isinstance(raw, Mapping):
        raise ValueError("histogram buckets must be a mapping of index to count")
    buckets: dict[int, int] = {}
    for key, value in raw.items():
        # The usual shapes first (JSON: str keys, int counts; bool is never a count).
        index = int(key) if type(key) is str and key.isascii() and key.isdigit() else None
        if index is None:
            index = _wire_int(key, "bucket index")
        count = value if type(value) is int else _wire_int(value, "bucket count")
        if not 0 <= index < NUM_BUCKETS:
            raise ValueError(f"bucket index {index} outside 0..{NUM_BUCKETS - 1}")
        if not 0 <= count <= MAX_WIRE_INT:
            raise ValueError(f"bucket {index} count {count} outside 0..{MAX_WIRE_INT}")
        if index in buckets:
            raise ValueError(f"bucket {index} is given twice")
        if count:
            buckets[index] = count
    total, sum_ns, max_ns = (_wire_int(data.get(k), k) for k in ("count", "sum", "max"))
    in_buckets = sum(buckets.values())
    if total != in_buckets:
        raise ValueError(f"count {total} is not the sum of the buckets ({in_buckets})")
    for what, value in (("count", total), ("sum", sum_ns), ("max", max_ns)):
        if not 0 <= value <= MAX_WIRE_INT:
            raise ValueError(f"{what} {value} outside 0..{MAX_WIRE_INT}")
    return buckets, sum_ns, max_ns


def wire_form(pairs: Iterable[tuple[int, int]], sum_ns: int, max_ns: int) -> dict[str, Any]:
    """The wire form of a histogram given as (bucket index, count) pairs in index order: the one
    definition, so the server's `Histogram` and the agent's `SparseHistogram` write the same
    bytes. Empty buckets are left out."""
    buckets = {str(i): c for i, c in pairs if c}
    return {
        "layout": LAYOUT_ID,
        "buckets": buckets,
        "count": sum(buckets.values()),
        "sum": int(sum_ns),
        "max": int(max_ns),
    }


class Histogram:
    """Counts per bucket, with the exact sum and max. `count` is the sum of the buckets."""

    __slots__ = ("counts", "max", "sum")

    def __init__(self, counts: np.ndarray | None = None, sum: int = 0, max: int = 0) -> None:
        import numpy as np

        if counts is None:
            counts = np.zeros(NUM_BUCKETS, dtype=np.int64)
        elif counts.shape != (NUM_BUCKETS,):
            raise ValueError(f"expected {NUM_BUCKETS} bucket counts, got shape {counts.shape}")
        self.counts: np.ndarray = counts.astype(np.int64, copy=False)
        self.sum = int(sum)
        self.max = int(max)

    def record(self, ns: int, times: int = 1) -> None:
        """Count one duration (or `times` equal ones). Negative durations count as underflow."""
        self.counts[bucket_index(ns)] += times
        if ns > 0:
            self.sum += ns * times
            if ns > self.max:
                self.max = ns

    def copy(self) -> Histogram:
        """An independent snapshot (e.g. the agent's `before` for the next window's delta)."""
        return Histogram(self.counts.copy(), self.sum, self.max)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        """Exact mean in nanoseconds (0.0 when empty)."""
        count = self.count
        return self.sum / count if count else 0.0

    def quantile(self, q: float) -> int:
        """Duration in ns at quantile q (0..1), by nearest rank, as its bucket's midpoint.

        The midpoint is within 0.78% of every value in a regular bucket. The result never
        exceeds the exact max, and q = 1 gives the max itself. The underflow bucket reports
        its midpoint (0.5 µs), the overflow bucket the max. An empty histogram gives 0.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        count = self.count
        if count == 0:
            return 0
        if q == 1.0:
            return self.max
        import numpy as np

        rank = max(1, int(np.ceil(q * count)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == OVERFLOW_INDEX:
            return self.max
        return min(round(_midpoints()[index]), self.max)

    def over(self, threshold_ns: int) -> int:
        """How many calls took longer than threshold_ns (e.g. the budget).

        A call counts as over when its bucket's midpoint is, i.e. the bucket straddling the
        threshold goes wholly to one side: the answer is exact up to the calls within 0.8% of
        the threshold. Nothing is over a threshold at or above the exact max.
        """
        if threshold_ns >= self.max:
            return 0
        return int(self.counts[first_over_index(threshold_ns) :].sum())

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding the calls of both (as if all were recorded into one)."""
        return Histogram(self.counts + other.counts, self.sum + other.sum, max(self.max, other.max))

    def delta(self, since: Histogram) -> Histogram:
        """The calls recorded after `since`, an earlier snapshot of the same histogram.

        Counts and sum subtract exactly; the max as `window_max` says. Raises ValueError when
        any count went backwards, i.e. `since` is not an earlier snapshot of this histogram
        (e.g. the process restarted).
        """
        import numpy as np

        counts = self.counts - since.counts
        if (counts < 0).any() or self.sum < since.sum:
            raise ValueError("histogram went backwards: `since` is not an earlier snapshot")
        top = None
        if self.max <= since.max:  # only then does the window's max depend on its top bucket
            nonzero = np.flatnonzero(counts)
            top = int(nonzero[-1]) if len(nonzero) else None
        return Histogram(counts, self.sum - since.sum, window_max(self.max, since.max, top))

    def to_wire(self) -> dict[str, Any]:
        """Compact, JSON-ready form: only non-empty buckets, keyed by index as a string."""
        import numpy as np

        nonzero = np.flatnonzero(self.counts)
        pairs = zip(nonzero.tolist(), self.counts[nonzero].tolist(), strict=True)
        return wire_form(pairs, self.sum, self.max)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Histogram:
        """Inverse of `to_wire`; raises ValueError on a foreign layout or inconsistent data."""
        return cls.from_buckets(*parse_wire(data))

    @classmethod
    def from_buckets(cls, buckets: Mapping[int, int], sum: int = 0, max: int = 0) -> Histogram:
        """A histogram of the given non-empty buckets (index -> count, indexes checked by the
        caller)."""
        import numpy as np

        counts = np.zeros(NUM_BUCKETS, dtype=np.int64)
        if buckets:
            counts[list(buckets.keys())] = list(buckets.values())
        return cls(counts, sum, max)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        import numpy as np

        return (
            self.sum == other.sum
            and self.max == other.max
            and bool(np.array_equal(self.counts, other.counts))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, sum={self.sum}, max={self.max})"


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram of every call in `histograms` (empty for none)."""
    import numpy as np

    counts = np.zeros(NUM_BUCKETS, dtype=np.int64)
    total, top = 0, 0
    for h in histograms:
        counts += h.counts
        total += h.sum
        top = max(top, h.max)
    return Histogram(counts, total, top)


def _wire_int(value: object, what: str) -> int:
    # bool is an int in Python but never a count; str keys come from JSON objects.
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{what} must be an integer, got {value!r}")
