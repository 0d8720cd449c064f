"""The agent's histogram: the non-empty buckets of one hot path in plain ints, without numpy.

`pip install hotpath` (the target process and the agent) does not bring numpy, so the agent
reads, subtracts and ships histograms with this class; the server keeps the dense numpy
`Histogram` for its merges and quantiles. Both write the same wire form
(`histogram.wire_form`) and read it through the same checks (`histogram.parse_wire`), so
what the agent ships is what the server would have shipped from the same counts.

A hot path's calls sit in a few dozen of the 1,699 buckets, so a dict of the non-empty ones is
small, and a window's delta costs a few dozen subtractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hotpath.profiler.hotpath.histogram import (
    bucket_index,
    first_over_index,
    parse_wire,
    window_max,
    wire_form,
)

if TYPE_CHECKING:
    from hotpath.profiler.hotpath.histogram import Histogram


class SparseHistogram:
    """Counts of the non-empty buckets (index -> count), with the exact sum and max."""

    __slots__ = ("buckets", "max", "sum")

    def __init__(self, buckets: Mapping[int, int] | None = None, sum: int = 0, max: int = 0):
        # Zero counts are left out, so that equal histograms have equal dicts.
        self.buckets: dict[int, int] = {i: c for i, c in (buckets or {}).items() if c}
        self.sum = sum
        self.max = max

    def record(self, ns: int, times: int = 1) -> None:
        """Count one duration (or `times` equal ones), as `Histogram.record` does."""
        index = bucket_index(ns)
        self.buckets[index] = self.buckets.get(index, 0) + times
        if ns > 0:
            self.sum += ns * times
            if ns > self.max:
                self.max = ns

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def over(self, threshold_ns: int) -> int:
        """How many calls took longer than threshold_ns, as `Histogram.over` counts them."""
        if threshold_ns >= self.max:
            return 0
        first = first_over_index(threshold_ns)
        return sum(c for i, c in self.buckets.items() if i >= first)

    def delta(self, since: SparseHistogram) -> SparseHistogram:
        """The calls recorded after `since`, an earlier snapshot of the same histogram; the
        max as `histogram.window_max` says. Raises ValueError when any count went backwards
        (`since` is not an earlier snapshot: e.g. the process restarted)."""
        if self.sum < since.sum or any(
            self.buckets.get(i, 0) < c for i, c in since.buckets.items()
        ):
            raise ValueError("histogram went backwards: `since` is not an earlier snapshot")
        buckets = {i: c - since.buckets.get(i, 0) for i, c in self.buckets.items()}
        buckets = {i: c for i, c in buckets.items() if c}
        top = max(buckets) if buckets else None
        return SparseHistogram(buckets, self.sum - since.sum, window_max(self.max, since.max, top))

    def to_wire(self) -> dict[str, Any]:
        """The wire form, byte for byte what `Histogram.to_wire` gives for the same counts."""
        return wire_form(sorted(self.buckets.items()), self.sum, self.max)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SparseHistogram:
        """Inverse of `to_wire`; raises ValueError on a foreign layout or inconsistent data."""
        return cls(*parse_wire(data))

    def to_histogram(self) -> Histogram:
        """The server's dense form of the same calls (imports numpy)."""
        from hotpath.profiler.hotpath.histogram import Histogram

        return Histogram.from_buckets(self.buckets, self.sum, self.max)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseHistogram):
            return NotImplemented
        return (self.buckets, self.sum, self.max) == (other.buckets, other.sum, other.max)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SparseHistogram(count={self.count}, sum={self.sum}, max={self.max})"
