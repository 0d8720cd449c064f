"""The query pieces every read route shares: the tenant, the profile store (which refuses
parameters holding control characters), the profile type (`type=`, cpu by default; an unknown
one is a 422 naming the known ones), labels, and the contract's `Selection` made from them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request

from hotpath.profiler.formats.window import clean_name
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
# A row id: what a BIGINT (and SQLite's INTEGER) holds; larger would fail in the driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def refuse_control_characters(request: Request) -> None:
    """422 naming the parameter when a path or query parameter holds a control character. No
    stored name holds one (ingest escapes or refuses them), and PostgreSQL refuses NUL in a
    query where SQLite answers: refused here, both backends answer alike."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if isinstance(value, str) and clean_name(value) != value:
            raise HTTPException(422, f"parameter {name}: {value!r} holds a control character")


def profile_store(request: Request) -> ProfileStore:
    # Parameters with control characters were refused by the app-wide dependency (app.py).
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
