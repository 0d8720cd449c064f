"""The hot-path API: per hot path, latency quantiles against its budget over a time range.

Hot-path calls are read with the profile type of the agent that shipped them (cpu by
default), so two agents on one process do not count a call twice; attribution splits a
call's time by the stacks of that same type."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from hotpath.profiler.analysis.attribution import FunctionShare, attribute, parse_function
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU
from hotpath.server.auth import requires
from hotpath.server.auth_tokens import READ
from hotpath.server.params import (
    LabelParam,
    Profiles,
    Tenant,
    TimeParam,
    TypeParam,
    selection,
)
from hotpath.server.storage.profiles import ProfileStore, Selection

router = APIRouter(prefix="/api/v1", tags=["hot paths"], dependencies=[Depends(requires(READ))])


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
    function: str | None = None  # the timed code, "qualname (file)", when the agent said


def summarise(
    name: str, budget_ns: int | None, calls: Histogram, function: str | None = None
) -> HotPathOut:
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
        function=function,
    )


@router.get("/hotpaths", response_model=list[HotPathOut])
def hot_paths(
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    type: TypeParam = CPU.id,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
) -> list[HotPathOut]:
    """Count, mean, p50/p95/p99/p99.9 and max latency of each hot path, with its budget and
    the share of calls over it (quantiles within 0.8%: bucket midpoints)."""
    chosen = selection(tenant_id, service, type, from_, until, label)
    merged = store.hot_path_histograms(chosen)
    functions = store.hot_path_functions(chosen)
    return [
        summarise(name, budget, calls, functions.get(name))
        for name, (budget, calls) in sorted(merged.items())
        if calls.count
    ]


class LatencyPointOut(BaseModel):
    start: datetime
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    over_budget_share: float | None


class LatencyTimelineOut(BaseModel):
    name: str
    step_s: int
    budget_ms: float | None
    points: list[LatencyPointOut]


# Chart steps: the finest that keeps a range to a few hundred points (windows are 10 s).
STEPS_S = (10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


def chart_step(start: datetime, end: datetime, points: int = 360) -> int:
    span = (end - start).total_seconds()
    return next((s for s in STEPS_S if span / s <= points), STEPS_S[-1])


@router.get("/hotpaths/{name}/timeline", response_model=LatencyTimelineOut)
def hot_path_timeline(
    store: Profiles,
    tenant_id: Tenant,
    name: str,
    service: str,
    type: TypeParam = CPU.id,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
) -> LatencyTimelineOut:
    """p50/p95/p99/max of one hot path per time step, and its share of calls over budget."""
    chosen = selection(tenant_id, service, type, from_, until, label)
    step = chart_step(chosen.start, chosen.end)
    budget = _budget(store, name, chosen)
    series = store.hot_path_timeline(chosen, name, step)
    points = [
        LatencyPointOut(
            start=moment,
            count=calls.count,
            p50_ms=calls.quantile(0.5) / 1e6,
            p95_ms=calls.quantile(0.95) / 1e6,
            p99_ms=calls.quantile(0.99) / 1e6,
            max_ms=calls.max / 1e6,
            over_budget_share=calls.over(budget) / calls.count if budget else None,
        )
        for moment, calls in series
        if calls.count
    ]
    return LatencyTimelineOut(
        name=name, step_s=step, budget_ms=budget / 1e6 if budget else None, points=points
    )


def _budget(store: ProfileStore, name: str, chosen: Selection) -> int | None:
    merged = store.hot_path_histograms(chosen)
    if name not in merged:
        raise HTTPException(
            404, f"no calls of hot path {name!r} in {chosen.service!r} in that range"
        )
    return merged[name][0]


class ShareOut(BaseModel):
    function: str
    file: str
    self_share: float
    total_share: float
    self_ms: float | None
    total_ms: float | None


class AttributionOut(BaseModel):
    hot_path: HotPathOut
    samples_inside: int
    samples_total: int
    children: list[ShareOut]
    functions: list[ShareOut]
    flamegraph_url: str
    summary: str


@router.get(
    "/hotpaths/{name}/attribution",
    response_model=AttributionOut,
    responses={409: {"description": "The hot path's agent sent no function to attribute"}},
)
def hot_path_attribution(
    store: Profiles,
    tenant_id: Tenant,
    name: str,
    service: str,
    type: TypeParam = CPU.id,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AttributionOut:
    """Where the hot path's time goes: the sampled stacks inside its function split its mean
    call duration between the functions it calls (self and total, in ms per call)."""
    return attribution_for(
        store, name, selection(tenant_id, service, type, from_, until, label), limit
    )


def attribution_for(
    store: ProfileStore, name: str, chosen: Selection, limit: int = 50
) -> AttributionOut:
    service = chosen.service
    merged = store.hot_path_histograms(chosen)
    function = store.hot_path_functions(chosen).get(name)
    if name not in merged or not merged[name][1].count:
        raise HTTPException(404, f"no calls of hot path {name!r} in {service!r} in that range")
    if function is None:
        raise HTTPException(
            409,
            f"hot path {name!r} has no function on record: its agent predates attribution",
        )
    budget, calls = merged[name]
    profile = store.profile(chosen)
    split = attribute(profile, *parse_function(function), calls.mean / 1e6)
    params = [("service", service), ("type", chosen.type.id), ("from", chosen.start.isoformat())]
    params += [("until", chosen.end.isoformat())]
    params += [("label", f"{k}={v}") for k, v in chosen.labels.items()]
    params += [("focus", function), ("format", "speedscope")]
    return AttributionOut(
        hot_path=summarise(name, budget, calls, function),
        samples_inside=split.samples_inside,
        samples_total=split.samples_total,
        children=[_share(s) for s in split.children[:limit]],
        functions=[_share(s) for s in split.functions[:limit]],
        flamegraph_url="/api/v1/profile?" + urlencode(params),
        summary=_sentence(split.mean_ms, split.children),
    )


def _share(s: FunctionShare) -> ShareOut:
    return ShareOut(
        function=s.name,
        file=s.file,
        self_share=s.self_share,
        total_share=s.total_share,
        self_ms=s.self_ms,
        total_ms=s.total_ms,
    )


def _sentence(mean_ms: float | None, children: list[FunctionShare], top: int = 4) -> str:
    """ "of 84.0 ms, risk_check 41.2 ms, price_quote 25.3 ms, ..." """
    if mean_ms is None or not children:
        return "no samples inside the hot path in this range"
    parts = [f"{c.name} {c.total_ms:.1f} ms" for c in children[:top] if c.total_ms is not None]
    more = ", ..." if len(children) > top else ""
    return f"of {mean_ms:.1f} ms, " + ", ".join(parts) + more
