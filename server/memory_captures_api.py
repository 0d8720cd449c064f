"""Memory captures and leaks over HTTP: `POST /api/v1/memory/captures` (the agent's
`hotpath.memory_capture/1`, stored whole or not at all), `GET /api/v1/memory/captures`
(listed with the target's pauses) and `GET /api/v1/leaks` (functions whose held bytes grow,
ranked, with their stacks). Bodies are read, decoded and bounded as windows are
(`server/body.py`, the window limits), times accepted as windows' are."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hotpath.profiler.formats import window as wire
from hotpath.profiler.formats.memory_capture import MAX_FUNCTIONS, MAX_POINTS, MemoryCapture
from hotpath.profiler.model import HELD_BYTES
from hotpath.server.api import decoded_body, parse_spanned
from hotpath.server.auth import requires
from hotpath.server.auth_tokens import INGEST, READ
from hotpath.server.body import release_memory
from hotpath.server.leak_report import MAX_CAPTURES, LeakReport, leak_report
from hotpath.server.leak_report import MAX_FUNCTIONS as MAX_RANKED
from hotpath.server.params import LabelParam, Tenant, selection
from hotpath.server.storage.captures import MAX_READ, Capture, CaptureStore, StoredCapture

router = APIRouter()

DEFAULT_FROM = "-7d"  # captures are rare and on demand: a week (raw retention) by default


class CaptureStored(BaseModel):
    capture_id: int
    duplicate: bool


class CaptureOut(BaseModel):
    id: int
    service: str
    pid: int
    labels: dict[str, str]
    start: datetime
    end: datetime
    duration_s: float
    pause_attach_ms: float  # the target stopped while memray was attached
    pause_detach_ms: float  # ... and while it was detached
    tool: str
    held_bytes: int  # held at the end, from allocations made during the capture
    functions: int  # functions with a held-bytes series
    received: datetime


class LeakStackOut(BaseModel):
    frames: list[str]  # root first, ending at the function
    held_bytes: int


class LeakOut(BaseModel):
    function: str
    file: str
    growth_bytes_per_s: float
    growth_bytes_per_min: float
    low_bytes_per_s: float | None  # the growth's interval (None when it has none)
    high_bytes_per_s: float | None
    held_bytes: int
    captures: int
    flagged: bool  # significant growth above the floor
    p_value: float | None
    stacks: list[LeakStackOut]


class LeaksOut(BaseModel):
    service: str
    start: datetime
    end: datetime
    unit: str  # of every figure in bytes: "bytes"
    held_bytes: int  # the held-bytes profile's total over the range
    leaks: list[LeakOut]
    captures: list[CaptureOut]  # the captures ranked (the most recent), oldest first
    profile_url: str  # the held-bytes profile of the range (speedscope JSON)
    viewer_url: str  # ... opened in speedscope


def parse_capture(data: bytes, limits: wire.WindowLimits) -> MemoryCapture:
    """The capture in `data` within the window limits: each window's sizes as a window's
    are checked, the body's JSON values and members counted first (as `wire.parse` does)
    with room for the functions' points. ValidationError or LimitExceeded."""
    max_values = limits.max_values + MAX_FUNCTIONS * (MAX_POINTS * 3 + 16)
    if len(data) // 2 + 1 > max_values:
        values = data.count(b",") + data.count(b"[") + data.count(b"{") + 1
        if values > max_values:
            raise wire.LimitExceeded(
                "max_values (JSON values per window, plus the functions' points, per capture)",
                values,
                max_values,
            )
    if len(data) // 4 > limits.max_members:
        members = data.count(b":")
        if members > limits.max_members:
            raise wire.LimitExceeded(
                "max_members (JSON object members per capture, by its colons)",
                members,
                limits.max_members,
            )
    capture = MemoryCapture.model_validate_json(data)
    for window in capture.windows:
        try:
            wire.check_limits(window, limits)
        except wire.LimitExceeded as exc:
            raise wire.LimitExceeded(
                exc.limit, exc.actual, exc.maximum, f"the {window.type} window"
            ) from None
    return capture


def capture_store(request: Request) -> CaptureStore:
    return request.app.state.storage.captures


@router.post(
    "/api/v1/memory/captures",
    dependencies=[Depends(requires(INGEST))],
    response_model=CaptureStored,
    status_code=201,
    tags=["ingest"],
    responses={
        200: {"description": "already stored (same idempotency key)"},
        201: {"description": "stored, with its three typed profiles"},
        409: {"description": "a key of its profiles is another window's; nothing stored"},
        413: {},
        415: {},
        422: {},
    },
)
async def ingest_capture(request: Request, response: Response, tenant_id: Tenant) -> CaptureStored:
    """Store one memory capture (`hotpath.memory_capture/1` JSON, optionally zstd- or
    gzip-encoded): its row and its alloc_bytes, alloc_count and held_bytes profiles, in one
    transaction. A capture sent again under its idempotency key is stored once (200)."""
    settings = request.app.state.settings
    store = capture_store(request)
    body, data = await decoded_body(request, settings)
    decoded = len(data)
    capture = parse_spanned(
        data, "capture", lambda d: parse_capture(d, settings.window_limits), settings
    )
    del data
    stored = Capture.from_wire(capture, tenant_id)
    # Storage is blocking I/O: off the event loop, so a slow database stalls only this request.
    result = await run_in_threadpool(store.put_capture, stored)
    del capture, stored, body
    release_memory(decoded, settings.trim_after_bytes)
    response.status_code = 200 if result.duplicate else 201
    return CaptureStored(capture_id=result.capture_id, duplicate=result.duplicate)


FromParam = Annotated[
    str, Query(alias="from", description="ISO-8601, unix seconds or relative (-7d)")
]
UntilParam = Annotated[str, Query(description="ISO-8601, unix seconds or now")]


@router.get(
    "/api/v1/memory/captures",
    dependencies=[Depends(requires(READ))],
    response_model=list[CaptureOut],
    tags=["query"],
    responses={404: {"description": "unknown service"}, 422: {}},
)
def list_captures(
    request: Request,
    tenant_id: Tenant,
    service: str,
    from_: FromParam = DEFAULT_FROM,
    until: UntilParam = "now",
    label: LabelParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READ)] = MAX_READ,
) -> list[CaptureOut]:
    """The service's memory captures that started in the range and carry the labels (the
    most recent `limit`), oldest first, with the target's pause at attach and at detach."""
    chosen = selection(tenant_id, service, HELD_BYTES.id, from_, until, label)
    store = capture_store(request)
    found = store.captures(
        tenant_id,
        service,
        chosen.start,
        chosen.end,
        limit=limit,
        functions=False,
        labels=chosen.labels,
    )
    return [capture_out(c) for c in found]


@router.get(
    "/api/v1/leaks",
    dependencies=[Depends(requires(READ))],
    response_model=LeaksOut,
    tags=["query"],
    responses={404: {"description": "unknown service"}, 422: {}},
)
def get_leaks(
    request: Request,
    tenant_id: Tenant,
    service: str,
    from_: FromParam = DEFAULT_FROM,
    until: UntilParam = "now",
    label: LabelParam = None,
    functions: Annotated[int, Query(ge=1, le=MAX_RANKED, description="ranked shown")] = 50,
    captures: Annotated[
        int, Query(ge=1, le=MAX_CAPTURES, description="the most recent captures ranked")
    ] = 20,
) -> LeaksOut:
    """The functions whose held bytes grow, fastest first (bytes per second, with an
    interval; `flagged` only when the growth is significant and above the floor), from the
    service's memory captures in the range: within each capture and across them. Each has
    its heaviest stacks in the held-bytes profile of the range (labels filter that profile)."""
    chosen = selection(tenant_id, service, HELD_BYTES.id, from_, until, label)
    report = leak_report(request.app.state.storage, chosen, functions=functions, captures=captures)
    return leaks_out(report)


def capture_out(capture: StoredCapture) -> CaptureOut:
    return CaptureOut(
        id=capture.id,
        service=capture.service,
        pid=capture.pid,
        labels=dict(capture.labels),
        start=capture.start,
        end=capture.end,
        duration_s=capture.duration_s,
        pause_attach_ms=capture.pause_attach_ms,
        pause_detach_ms=capture.pause_detach_ms,
        tool=capture.tool,
        held_bytes=capture.held_bytes,
        functions=capture.function_count,
        received=capture.received,
    )


def leaks_out(report: LeakReport) -> LeaksOut:
    leaks = []
    for ranked in report.leaks:
        r = ranked.rank
        growth = _finite(r.growth_bytes_per_s) or 0.0
        leaks.append(
            LeakOut(
                function=r.function,
                file=r.file,
                growth_bytes_per_s=growth,
                growth_bytes_per_min=growth * 60,
                low_bytes_per_s=_finite(r.low_bytes_per_s),
                high_bytes_per_s=_finite(r.high_bytes_per_s),
                held_bytes=r.held_bytes,
                captures=r.captures,
                flagged=r.flagged,
                p_value=_finite(r.p_value),
                stacks=[
                    LeakStackOut(frames=s.frames, held_bytes=s.held_bytes) for s in ranked.stacks
                ],
            )
        )
    return LeaksOut(
        service=report.service,
        start=report.start,
        end=report.end,
        unit="bytes",
        held_bytes=report.held_bytes,
        leaks=leaks,
        captures=[capture_out(c) for c in report.captures],
        profile_url=report.profile_url,
        viewer_url=report.viewer_url,
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: a figure without a value is null."""
    return value if math.isfinite(value) else None
