"""The comparison API: what got slower between two profiles, the diff tree, the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from hotpath.profiler.analysis.diff import compare, estimate_dispersion
from hotpath.profiler.analysis.difftree import diff_tree
from hotpath.profiler.labels import parse_labels
from hotpath.profiler.model import Profile
from hotpath.profiler.timespec import parse_range
from hotpath.server.storage.sql.profiles import Store, UnknownService

router = APIRouter(prefix="/api/v1", tags=["compare"])

TimeParam = Annotated[str | None, Query(description="ISO-8601, unix seconds or relative (-1h)")]
LabelParam = Annotated[list[str] | None, Query(description="key=value, repeatable")]


class Side(BaseModel):
    start: datetime
    until: datetime
    labels: dict[str, str]
    samples: int


class FunctionChangeOut(BaseModel):
    function: str
    file: str
    base_share: float
    head_share: float
    base_total_share: float
    head_total_share: float
    change_pp: float
    total_change_pp: float
    ms_per_cpu_s: float
    p_value: float
    flagged: bool


class DiffOut(BaseModel):
    service: str
    base: Side
    head: Side
    alpha: float
    min_change_pp: float
    dispersion: float  # window-to-window variability beyond sampling noise (1 = none)
    functions: list[FunctionChangeOut]


class TimelineLine(BaseModel):
    name: str
    points: list[tuple[int, int]]


class TimelineOut(BaseModel):
    service: str
    step_s: int
    start: datetime
    until: datetime
    lines: list[TimelineLine]


@dataclass(frozen=True)
class Selection:
    start: datetime
    end: datetime
    labels: dict[str, str]


def selection(start: str | None, until: str | None, labels: list[str] | None) -> Selection:
    try:
        begin, end = parse_range(start, until)
        return Selection(begin, end, parse_labels(labels or []))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def base_and_head(
    base_from: TimeParam = None,
    base_until: TimeParam = None,
    base_label: LabelParam = None,
    head_from: TimeParam = None,
    head_until: TimeParam = None,
    head_label: LabelParam = None,
) -> tuple[Selection, Selection]:
    """The two sides of a comparison, from the query parameters both endpoints share."""
    return (
        selection(base_from, base_until, base_label),
        selection(head_from, head_until, head_label),
    )


def _profiles(
    request: Request, service: str, base: Selection, head: Selection
) -> tuple[Profile, Profile]:
    store: Store = request.app.state.store
    try:
        return (
            store.profile(service, base.start, base.end, base.labels),
            store.profile(service, head.start, head.end, head.labels),
        )
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None


@router.get("/diff", response_model=DiffOut)
def diff(
    request: Request,
    service: str,
    sides: Annotated[tuple[Selection, Selection], Depends(base_and_head)],
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.01,
    min_change_pp: Annotated[float, Query(ge=0)] = 1.0,
) -> DiffOut:
    """Per function: self and total shares in base and head, the change, and a significance
    test on the sample counts; significant slowdowns first."""
    base, head = sides
    base_profile, head_profile = _profiles(request, service, base, head)
    store: Store = request.app.state.store
    # Each side's own window-to-window variability; a difference between the sides must
    # stand out from it to be flagged.
    dispersion = (
        sum(
            estimate_dispersion(store.window_profiles(service, side.start, side.end, side.labels))
            for side in (base, head)
        )
        / 2
    )
    try:
        result = compare(
            base_profile,
            head_profile,
            alpha=alpha,
            min_change_pp=min_change_pp,
            dispersion=dispersion,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return DiffOut(
        service=service,
        base=Side(
            start=base.start, until=base.end, labels=base.labels, samples=result.base_samples
        ),
        head=Side(
            start=head.start, until=head.end, labels=head.labels, samples=result.head_samples
        ),
        alpha=alpha,
        min_change_pp=min_change_pp,
        dispersion=dispersion,
        functions=[FunctionChangeOut(**f.as_dict()) for f in result.functions],
    )


@router.get("/diff/tree", response_class=ORJSONResponse)
def tree(
    request: Request,
    service: str,
    sides: Annotated[tuple[Selection, Selection], Depends(base_and_head)],
) -> ORJSONResponse:
    """The merged call tree of both profiles, as columns: node i has function `fn[i]`,
    parent `parent[i]` (node 0 is the root) and total/self samples in base and head."""
    base, head = sides
    # 100,000 nodes: orjson encodes the columns in milliseconds where the default takes ~0.5 s.
    return ORJSONResponse(diff_tree(*_profiles(request, service, base, head)))


@router.get("/timeline", response_model=TimelineOut)
def timeline(
    request: Request,
    service: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
    by: Annotated[str | None, Query(description="a label key: one line per value")] = None,
) -> TimelineOut:
    """Samples over time (per minute up to two days, else per hour)."""
    chosen = selection(from_, until, label)
    store: Store = request.app.state.store
    try:
        step, lines = store.timeline(service, chosen.start, chosen.end, chosen.labels, by)
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None
    return TimelineOut(
        service=service,
        step_s=step,
        start=chosen.start,
        until=chosen.end,
        lines=[
            TimelineLine(name=name, points=sorted(points.items()))
            for name, points in sorted(lines.items())
        ],
    )
