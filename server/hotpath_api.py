"""The hot-path API: per hot path, latency quantiles against its budget over a time range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from profiler.hotpath.histogram import Histogram
from server.compare_api import LabelParam, TimeParam, selection
from server.store import Store, UnknownService

router = APIRouter(prefix="/api/v1", tags=["hot paths"])


class HotPathOut(BaseModel):
    name: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    budget_ms: float | None
    over_budget_share: float | None  # of calls slower than the budget; None without a budget


def summarise(name: str, budget_ns: int | None, calls: Histogram) -> HotPathOut:
    def ms(ns: float) -> float:
        return ns / 1e6

    return HotPathOut(
        name=name,
        count=calls.count,
        mean_ms=ms(calls.mean),
        p50_ms=ms(calls.quantile(0.5)),
        p95_ms=ms(calls.quantile(0.95)),
        p99_ms=ms(calls.quantile(0.99)),
        p999_ms=ms(calls.quantile(0.999)),
        max_ms=ms(calls.max),
        budget_ms=ms(budget_ns) if budget_ns else None,
        over_budget_share=calls.over(budget_ns) / calls.count if budget_ns else None,
    )


@router.get("/hotpaths", response_model=list[HotPathOut])
def hot_paths(
    request: Request,
    service: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
) -> list[HotPathOut]:
    """Count, mean, p50/p95/p99/p99.9 and max latency of each hot path, with its budget and
    the share of calls over it (quantiles within 0.8%: bucket midpoints)."""
    chosen = selection(from_, until, label)
    store: Store = request.app.state.store
    try:
        merged = store.hot_path_histograms(service, chosen.start, chosen.end, chosen.labels)
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None
    return [
        summarise(name, budget, calls)
        for name, (budget, calls) in sorted(merged.items())
        if calls.count
    ]
