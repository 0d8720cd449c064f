"""The query pieces every read route shares: the tenant, the profile store, the profile type
(`type=`, cpu by default; an unknown one is a 422 naming the known ones), labels, and the
contract's `Selection` made from them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from hotpath.profiler.labels import parse_labels
from hotpath.profiler.model import PROFILE_TYPES, ProfileType, profile_type
from hotpath.profiler.timespec import parse_range
from hotpath.server.storage.profiles import ProfileStore, Selection
from hotpath.server.tenancy import tenant

TimeParam = Annotated[str | None, Query(description="ISO-8601, unix seconds or relative (-1h)")]
LabelParam = Annotated[list[str] | None, Query(description="key=value, repeatable")]
TypeParam = Annotated[
    str, Query(description=f"the profile type: {', '.join(PROFILE_TYPES)} (default cpu)")
]
Tenant = Annotated[str, Depends(tenant)]


def profile_store(request: Request) -> ProfileStore:
    return request.app.state.storage.profiles


Profiles = Annotated[ProfileStore, Depends(profile_store)]


def parse_type(type_id: str) -> ProfileType:
    try:
        return profile_type(type_id)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def selection(
    tenant_id: str,
    service: str,
    type_id: str,
    start: str | None,
    until: str | None,
    labels: list[str] | None,
) -> Selection:
    """The contract's selection from query parameters; 422 naming what is wrong."""
    kind = parse_type(type_id)
    try:
        begin, end = parse_range(start, until)
        return Selection(tenant_id, service, kind, begin, end, parse_labels(labels or []))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
