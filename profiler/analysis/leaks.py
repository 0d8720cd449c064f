"""Leak ranking: which functions' held bytes grow, within one memory capture and across several.

Pure: captures in (their span and per-function held-bytes series, `HeldSeries`), ranked
functions out. A capture sees only what was allocated during it, so held bytes start at zero
in every capture and a function's series is its growth over that capture:

- within one capture, growth is the Theil-Sen slope of its held bytes over time, with its
  interval and Mann-Kendall significance (`hotpath.profiler.analysis.trend`): steady churn
  has no trend, and a structure built once is a step whose slope's lower bound falls to
  about zero once the plateau is long;
- across captures, growth is the duration-weighted mean of the per-capture slopes (a
  function absent from a capture kept nothing during it: slope 0 there), and a function is
  flagged only when it grows significantly, above the floor, in more than half of the
  captures (one of one, two of two, two of three, six of ten). Growth between captures
  cannot be read from the held bytes themselves (each capture starts from zero), so it is
  judged by whether it recurs: a cache that warms up during one capture grows in that one
  only, while a leak that pauses when the market is quiet still grows in most. The p-value
  reported is the one that decides (the per-capture p ranked at that majority): under no
  growth, a majority of captures each passing `alpha` is rarer than `alpha` itself. The
  interval reported is the envelope of the per-capture intervals.

The floor (`FLOOR_BYTES_PER_S`) is what no steady process should pass: see its comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hotpath.profiler.analysis.trend import trend
from hotpath.profiler.formats.memory_capture import HeldSeries

# 1 KiB/s (60 KiB a minute, 84 MiB a day): a leak worth a page for a long-running process.
# On real captures (tests/test_memray_capture.py's target, 2 s captures), every function that
# does not leak had a per-capture lower bound of 0 B/s: churn (100 KB made and dropped per
# call, ~150 calls/s), a 20 MB structure built at start (invisible: allocated before the
# capture), a 2 MB cache filled mid-capture (a step: slope 0, interval 0..900 KB/s), the
# interpreter's and memray's own allocations (a 24 KB step at detach); the planted leak
# (4 KiB per call) grew at ~770 KB/s with a lower bound within 1% of it. The floor keeps
# slow steady growth (interned strings, free lists, allocator arenas) below the line.
FLOOR_BYTES_PER_S = 1024.0
ALPHA = 0.001  # one-sided, per capture; the test across captures keeps this level
MIN_POINTS = 10
MIN_SPAN_S = 1.0
FIT_POINTS = 120  # Theil-Sen is O(n^2): 120 points fit in ~1.5 ms, 240 in ~5 ms


class CaptureSeries(Protocol):
    """What the ranking reads of a capture: `MemoryCapture` fits, and so does any stored row
    object with these three attributes."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def functions(self) -> Sequence[HeldSeries]: ...


@dataclass(frozen=True)
class LeakRank:
    function: str
    file: str
    growth_bytes_per_s: float  # duration-weighted mean of the per-capture slopes
    low_bytes_per_s: float  # the lowest per-capture interval bound
    high_bytes_per_s: float  # the highest
    held_bytes: int  # at the end of the latest capture it appears in
    captures: int  # the captures it held bytes in (of all those ranked)
    flagged: bool
    p_value: float  # the per-capture one-sided p at the majority that decides `flagged`

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "growth_bytes_per_s": self.growth_bytes_per_s,
            "growth_bytes_per_min": self.growth_bytes_per_s * 60,
            "low_bytes_per_s": self.low_bytes_per_s,
            "high_bytes_per_s": self.high_bytes_per_s,
            "held_bytes": self.held_bytes,
            "captures": self.captures,
            "flagged": self.flagged,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class _Fit:
    slope: float
    low: float
    high: float
    p: float
    growing: bool


_ABSENT = _Fit(0.0, 0.0, 0.0, 1.0, False)


def _downsample(points: Sequence[tuple[float, int]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return [(t, float(v)) for t, v in points]
    step = (len(points) - 1) / (n - 1)
    return [(points[round(i * step)][0], float(points[round(i * step)][1])) for i in range(n)]


def _fit(series: HeldSeries, floor: float, alpha: float) -> _Fit:
    values = [v for _, v in series.points]
    span = series.points[-1][0] - series.points[0][0]
    if max(values) - min(values) < floor * span / 2:
        # Too little change in the whole capture for a slope above the floor: not fitted
        # (a fit costs ~1.5 ms, and most functions are here); its change over the capture
        # stands in. Not held / duration: bytes held from the first point on (a structure
        # built as the capture began) are not growth, and would rank above a slow leak.
        rate = (values[-1] - values[0]) / span if span > 0 else 0.0
        return _Fit(rate, rate, rate, 1.0, False)
    found = trend(
        _downsample(series.points, FIT_POINTS),
        floor_per_s=floor,
        alpha=alpha,
        min_points=MIN_POINTS,
        min_span_s=MIN_SPAN_S,
    )
    return _Fit(found.slope_per_s, found.low_per_s, found.high_per_s, found.p_value, found.growing)


def rank_leaks(
    captures: Sequence[CaptureSeries],
    *,
    floor_bytes_per_s: float = FLOOR_BYTES_PER_S,
    alpha: float = ALPHA,
    limit: int | None = None,
) -> list[LeakRank]:
    """Functions ranked by held-bytes growth (bytes per second), fastest first; `flagged`
    when the growth is significant and above `floor_bytes_per_s` in more than half of them."""
    ordered = sorted(captures, key=lambda c: c.start)
    durations = [max((c.end - c.start).total_seconds(), 1e-9) for c in ordered]
    fits: dict[tuple[str, str], list[_Fit]] = {}
    held: dict[tuple[str, str], int] = {}
    for i, capture in enumerate(ordered):
        for series in capture.functions:
            key = (series.function, series.file)
            per_capture = fits.setdefault(key, [_ABSENT] * len(ordered))
            per_capture[i] = _fit(series, floor_bytes_per_s, alpha)
            held[key] = series.held_bytes
    total = sum(durations)
    majority = len(ordered) // 2 + 1
    ranked = [
        LeakRank(
            function=name,
            file=file,
            growth_bytes_per_s=sum(f.slope * d for f, d in zip(found, durations, strict=True))
            / total,
            low_bytes_per_s=min(f.low for f in found),
            high_bytes_per_s=max(f.high for f in found),
            held_bytes=held[(name, file)],
            captures=sum(f is not _ABSENT for f in found),
            flagged=sum(f.growing for f in found) >= majority,
            p_value=sorted(f.p for f in found)[majority - 1],
        )
        for (name, file), found in fits.items()
    ]
    ranked.sort(key=lambda r: (-r.growth_bytes_per_s, r.function, r.file))
    return ranked[:limit] if limit is not None else ranked
