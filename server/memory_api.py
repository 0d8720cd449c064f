"""The memory API: each process's RSS (and PSS, USS) over time, as the agent read it from /proc
with every window, and whether it is growing (server/memory_trends.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from hotpath.profiler.timespec import parse_range
from hotpath.server.auth import requires
from hotpath.server.auth_tokens import READ
from hotpath.server.memory_trends import ProcessTrend, TrendRule, process_trends
from hotpath.server.params import Tenant, TimeParam
from hotpath.server.settings import Settings
from hotpath.server.storage.memory import MAX_POINTS, MemoryPoint, MemoryStore

router = APIRouter(prefix="/api/v1", tags=["memory"], dependencies=[Depends(requires(READ))])

MIN_HORIZON_S = 60.0
_DURATION = re.compile(r"^(\d{1,9}(?:\.\d{1,6})?)(s|m|h|d)?$")
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class MemoryPointOut(BaseModel):
    at: datetime
    rss_bytes: int
    pss_bytes: int | None  # None where the agent could only read /proc/PID/statm
    uss_bytes: int | None


class MemoryTrendOut(BaseModel):
    horizon_s: float
    slope_bytes_per_min: float  # Theil-Sen
    low_bytes_per_min: float  # its 95% interval
    high_bytes_per_min: float
    p_value: float  # one-sided Mann-Kendall, growth
    points: int
    span_s: float
    growing: bool
    summary: str  # "RSS of pid 4242 growing 3.1 MB/min for 40 min"


class ProcessMemoryOut(BaseModel):
    pid: int
    readings: int  # in the range; `points` averages them when there are more than MAX_POINTS
    latest: MemoryPointOut
    points: list[MemoryPointOut]
    trend: MemoryTrendOut | None  # None when the pid has no readings within the horizon


class MemoryOut(BaseModel):
    service: str
    start: datetime
    end: datetime
    floor_bytes_per_min: float
    processes: list[ProcessMemoryOut]


def parse_horizon(text: str | None, settings: Settings) -> float:
    """Seconds from `30m`, `2h`, `90s` or plain seconds; 422 naming the bounds."""
    if text is None:
        return settings.memory_trend_horizon_s
    longest = settings.retention_raw.total_seconds()
    match = _DURATION.match(text.strip())
    seconds = float(match[1]) * _SECONDS_PER[match[2] or "s"] if match else None
    if seconds is None or not MIN_HORIZON_S <= seconds <= longest:
        raise HTTPException(
            422,
            f"horizon {text!r}: give a duration such as 30m, 2h or 600 (seconds), from "
            f"{MIN_HORIZON_S:g} s to retention_raw ({longest:g} s)",
        )
    return seconds


def _point(point: MemoryPoint) -> MemoryPointOut:
    return MemoryPointOut(
        at=point.at,
        rss_bytes=point.rss_bytes,
        pss_bytes=point.pss_bytes,
        uss_bytes=point.uss_bytes,
    )


def trend_out(judged: ProcessTrend, horizon_s: float) -> MemoryTrendOut:
    found = judged.trend
    return MemoryTrendOut(
        horizon_s=horizon_s,
        slope_bytes_per_min=found.per_minute,
        low_bytes_per_min=found.low_per_s * 60,
        high_bytes_per_min=found.high_per_s * 60,
        p_value=found.p_value,
        points=found.points,
        span_s=found.span_s,
        growing=found.growing,
        summary=judged.summary,
    )


@router.get("/memory", response_model=MemoryOut)
def memory(
    request: Request,
    tenant_id: Tenant,
    service: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    horizon: Annotated[
        str | None, Query(description="the trend's look-back, e.g. 30m (default from settings)")
    ] = None,
    pid: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> MemoryOut:
    """Per process of the service (at most 50, those seen last): its memory readings in the
    range (averaged to at most 500 points), the latest one, and its RSS trend over the
    horizon that ends at `until`."""
    settings: Settings = request.app.state.settings
    store: MemoryStore = request.app.state.storage.memory
    try:
        start, end = parse_range(from_, until)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    rule = TrendRule.from_settings(settings, parse_horizon(horizon, settings))
    found = store.memory(tenant_id, service, start, end, pid=pid, max_points=MAX_POINTS)
    judged = process_trends(store, tenant_id, service, end, rule, pid=pid)
    return MemoryOut(
        service=service,
        start=start,
        end=end,
        floor_bytes_per_min=rule.floor_bytes_per_min,
        processes=[
            ProcessMemoryOut(
                pid=series.pid,
                readings=series.readings,
                latest=_point(series.latest),
                points=[_point(p) for p in series.points],
                trend=trend_out(judged[series.pid], rule.horizon_s)
                if series.pid in judged
                else None,
            )
            for series in found
        ],
    )
