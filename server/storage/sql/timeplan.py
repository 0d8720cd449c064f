"""Which stored pieces answer a time range: raw windows at the edges, rollups in the middle.

A window (or rollup bucket) belongs to a range when its start lies in it. A range is covered
greedily with the coarsest aligned buckets that exist (day, then hour, then minute), the
uncovered edges recursively with finer ones, and what is left (under a minute) with raw
windows. So a 30-day range reads at most ~30 day, ~2x23 hour, ~2x59 minute buckets and two
sub-minute edges of windows: the cost grows with distinct stacks, not with the range length.

Where retention has already removed the raw windows (or minute buckets) of an edge, the edge
is answered by the finest level that still has data, counting its buckets that start inside
the range: exact to that level's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

RAW = 0
MINUTE, HOUR, DAY = 60, 3600, 86400
ROLLUP_RESOLUTIONS = (DAY, HOUR, MINUTE)  # coarse to fine
_US = 1_000_000
# Year 1 and the last whole second of year 9999, in unix microseconds.
_FIRST_US, _LAST_US = -62_135_596_800 * _US, 253_402_300_799 * _US


def to_us(moment: datetime) -> int:
    """Unix microseconds: how every time is stored (portable, cheap to compare)."""
    return int(moment.timestamp() * 1_000_000)


def from_us(micros: int) -> datetime:
    """The datetime of stored microseconds; a time no datetime holds (a row from before ingest
    bounded times: year 9999's last second rounds up to year 10000) reads as the nearest one
    that does, so that one bad row cannot fail every page that lists it."""
    return datetime.fromtimestamp(min(max(micros, _FIRST_US), _LAST_US) / 1_000_000, UTC)


@dataclass(frozen=True)
class Segment:
    resolution_s: int  # RAW for windows, else the rollup resolution
    start_us: int  # pieces whose start lies in [start_us, end_us)
    end_us: int


@dataclass(frozen=True)
class Availability:
    """Per level: data older than `oldest_us` is gone (retention); rollups of a level are
    complete only before `built_until_us` (minute rollups are always current)."""

    oldest_us: dict[int, int]
    built_until_us: dict[int, int]


def plan(start_us: int, end_us: int, available: Availability) -> list[Segment]:
    """Segments, in time order, whose pieces together are exactly the range's pieces."""
    return _cover(start_us, end_us, ROLLUP_RESOLUTIONS, available)


def _cover(a: int, b: int, levels: tuple[int, ...], available: Availability) -> list[Segment]:
    if a >= b:
        return []
    for i, resolution in enumerate(levels):
        size = resolution * _US
        # Whole buckets inside [a, b) that this level still has (retention) and has built.
        lo = _ceil(max(a, available.oldest_us.get(resolution, 0)), size)
        hi = min(b, available.built_until_us.get(resolution, b)) // size * size
        if lo < hi:
            finer = levels[i + 1 :]
            return [
                *_cover(a, lo, finer, available),
                Segment(resolution, lo, hi),
                *_cover(hi, b, finer, available),
            ]
    if a >= available.oldest_us.get(RAW, 0):
        return [Segment(RAW, a, b)]
    # The raw windows of this edge have expired: the finest level that still has them.
    for resolution in reversed(ROLLUP_RESOLUTIONS):
        if a >= available.oldest_us.get(resolution, 0):
            return [Segment(resolution, a, b)]
    return []


def _ceil(value: int, size: int) -> int:
    return -(-value // size) * size
