"""Whether a process's memory is growing: the RSS trend (Theil-Sen with Mann-Kendall,
profiler/analysis/trend.py) over the last horizon of its readings, with the sentence people
read ("RSS of pid 4242 growing 3.1 MB/min for 40 min"). The memory API and the RSS alerts
both judge with this one rule, so the page and the alert never disagree."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hotpath.profiler.analysis.trend import Trend, trend
from hotpath.server.settings import Settings
from hotpath.server.storage.memory import MAX_POINTS, MemoryStore, ProcessMemorySeries

MB = 1_000_000  # the sentence's unit: decimal megabytes, as it says


@dataclass(frozen=True)
class TrendRule:
    horizon_s: float
    floor_bytes_per_min: float
    min_span_s: float
    alpha: float
    warmup_s: float = 0.0  # a process's first readings are not judged (caches filling)

    @classmethod
    def from_settings(cls, settings: Settings, horizon_s: float | None = None) -> TrendRule:
        return cls(
            horizon_s=horizon_s or settings.memory_trend_horizon_s,
            floor_bytes_per_min=settings.memory_trend_floor_bytes_per_min,
            min_span_s=min(settings.memory_trend_min_span_s, horizon_s or float("inf")),
            alpha=settings.memory_trend_alpha,
            warmup_s=settings.memory_trend_warmup_s,
        )


@dataclass(frozen=True)
class ProcessTrend:
    pid: int
    trend: Trend
    summary: str

    @property
    def growing(self) -> bool:
        return self.trend.growing


def judge(series: ProcessMemorySeries, rule: TrendRule) -> ProcessTrend:
    """The RSS trend of one process's readings (at most MAX_POINTS: the test is O(n^2))."""
    points = series.points
    origin = points[0].at if points else None
    found = trend(
        [((p.at - origin).total_seconds(), float(p.rss_bytes)) for p in points] if origin else [],
        floor_per_s=rule.floor_bytes_per_min / 60,
        alpha=rule.alpha,
        min_span_s=rule.min_span_s,
    )
    return ProcessTrend(series.pid, found, sentence(series.pid, found))


def sentence(pid: int, found: Trend) -> str:
    rate = found.per_minute / MB
    span = duration(found.span_s)
    if found.growing:
        return f"RSS of pid {pid} growing {rate:.1f} MB/min for {span}"
    if found.points < 3:
        return f"RSS of pid {pid}: too few readings to judge ({found.points})"
    return f"RSS of pid {pid} not growing: {rate:+.2f} MB/min over {span} (p={found.p_value:.2g})"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def process_trends(
    store: MemoryStore,
    tenant: str,
    service: str,
    until: datetime,
    rule: TrendRule,
    pid: int | None = None,
) -> dict[int, ProcessTrend]:
    """Per pid seen in the horizon before `until`, its trend over that horizon, without its
    warm-up: the readings within `warmup_s` of the first one the server has. A service that
    starts fills its caches for minutes, and that growth is not a leak. Readings are asked
    from one warm-up before the horizon, so a first reading at that earlier start means the
    process was warm before the horizon began."""
    horizon_start = until - timedelta(seconds=rule.horizon_s)
    warmup = timedelta(seconds=rule.warmup_s)
    found = store.memory(
        tenant, service, horizon_start - warmup, until, pid=pid, max_points=MAX_POINTS
    )
    judged = {}
    for series in found:
        first = series.points[0].at if series.points else horizon_start
        since = max(first + warmup, horizon_start)
        kept = replace(series, points=[p for p in series.points if p.at >= since])
        judged[series.pid] = judge(kept, rule)
    return judged
