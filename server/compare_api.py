"""The comparison API: what got slower between two profiles, the diff tree, the timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from hotpath.profiler.analysis.diff import compare, estimate_dispersion
from hotpath.profiler.analysis.difftree import diff_tree
from hotpath.profiler.model import CPU, Profile
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

router = APIRouter(prefix="/api/v1", tags=["compare"], dependencies=[Depends(requires(READ))])


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
    type: str
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
    type: str
    unit: str
    step_s: int
    start: datetime
    until: datetime
    lines: list[TimelineLine]


def base_and_head(
    tenant_id: Tenant,
    service: str,
    type: TypeParam = CPU.id,
    base_type: Annotated[str | None, Query(description="the base's type (default: type)")] = None,
    head_type: Annotated[str | None, Query(description="the head's type (default: type)")] = None,
    base_from: TimeParam = None,
    base_until: TimeParam = None,
    base_label: LabelParam = None,
    head_from: TimeParam = None,
    head_until: TimeParam = None,
    head_label: LabelParam = None,
) -> tuple[Selection, Selection]:
    """The two sides of a comparison, from the query parameters both endpoints share. Two
    types are never compared: samples of CPU and of wall clock mean different things."""
    base = selection(tenant_id, service, base_type or type, base_from, base_until, base_label)
    head = selection(tenant_id, service, head_type or type, head_from, head_until, head_label)
    if base.type != head.type:
        raise HTTPException(422, f"cannot compare a {base.type} profile with a {head.type} profile")
    return base, head


def _profiles(store: ProfileStore, base: Selection, head: Selection) -> tuple[Profile, Profile]:
    return store.profile(base), store.profile(head)


@router.get("/diff", response_model=DiffOut)
def diff(
    store: Profiles,
    sides: Annotated[tuple[Selection, Selection], Depends(base_and_head)],
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.01,
    min_change_pp: Annotated[float, Query(ge=0)] = 1.0,
) -> DiffOut:
    """Per function: self and total shares in base and head, the change, and a significance
    test on the sample counts; significant slowdowns first."""
    base, head = sides
    base_profile, head_profile = _profiles(store, base, head)
    # Each side's own window-to-window variability; a difference between the sides must
    # stand out from it to be flagged.
    dispersion = sum(estimate_dispersion(store.window_profiles(side)) for side in (base, head)) / 2
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
        service=base.service,
        type=base.type.id,
        base=Side(
            start=base.start, until=base.end, labels=dict(base.labels), samples=result.base_samples
        ),
        head=Side(
            start=head.start, until=head.end, labels=dict(head.labels), samples=result.head_samples
        ),
        alpha=alpha,
        min_change_pp=min_change_pp,
        dispersion=dispersion,
        functions=[FunctionChangeOut(**f.as_dict()) for f in result.functions],
    )


@router.get("/diff/tree", response_class=ORJSONResponse)
def tree(
    store: Profiles,
    sides: Annotated[tuple[Selection, Selection], Depends(base_and_head)],
) -> ORJSONResponse:
    """The merged call tree of both profiles, as columns: node i has function `fn[i]`,
    parent `parent[i]` (node 0 is the root) and total/self samples in base and head."""
    base, head = sides
    # 100,000 nodes: orjson encodes the columns in milliseconds where the default takes ~0.5 s.
    return ORJSONResponse(diff_tree(*_profiles(store, base, head)))


@router.get("/timeline", response_model=TimelineOut)
def timeline(
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    type: TypeParam = CPU.id,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: TimeParam = None,
    label: LabelParam = None,
    by: Annotated[str | None, Query(description="a label key: one line per value")] = None,
) -> TimelineOut:
    """The type's weight over time (per minute up to two days, else per hour)."""
    chosen = selection(tenant_id, service, type, from_, until, label)
    drawn = store.timeline(chosen, by)
    return TimelineOut(
        service=service,
        type=chosen.type.id,
        unit=str(chosen.type.unit),
        step_s=drawn.step_s,
        start=chosen.start,
        until=chosen.end,
        lines=[
            TimelineLine(name=name, points=sorted(points.items()))
            for name, points in sorted(drawn.lines.items())
        ],
    )
