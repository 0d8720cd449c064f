"""The versioned HTTP API (`/api/v1/...`), Pyroscope-compatible ingest, and the health check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from hotpath.profiler.analysis.attribution import parse_function, under_function
from hotpath.profiler.formats import FormatError, collapsed, pyroscope, speedscope
from hotpath.profiler.formats import window as wire
from hotpath.profiler.labels import parse_labels
from hotpath.profiler.timespec import parse_range
from hotpath.server.body import decode_body, read_body
from hotpath.server.settings import Settings
from hotpath.server.storage.sql.profiles import Store, UnknownService

router = APIRouter()


class IngestResponse(BaseModel):
    window_id: int | None
    duplicate: bool
    samples: int


class ServiceOut(BaseModel):
    name: str
    last_seen: datetime
    samples: int
    series: int


def _store(request: Request) -> Store:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@router.get("/healthz", tags=["health"])
def health(request: Request) -> JSONResponse:
    try:
        with _store(request).engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc.orig)}, 503)
    return JSONResponse({"status": "ok"})


@router.post(
    "/api/v1/windows",
    response_model=IngestResponse,
    tags=["ingest"],
    responses={
        200: {"description": "already stored (same idempotency key)"},
        201: {"description": "stored"},
        413: {},
        415: {},
        422: {},
    },
)
async def ingest_window(request: Request, response: Response) -> IngestResponse:
    """Store one agent window (`hotpath.window/1` JSON, optionally zstd- or gzip-encoded)."""
    settings = _settings(request)
    body = await read_body(request, settings.max_body_bytes)
    data = decode_body(
        body, request.headers.get("content-encoding"), settings.max_decompressed_bytes
    )
    try:
        window = wire.Window.model_validate_json(data)
        wire.check_limits(window, settings.window_limits)
    except ValidationError as exc:
        raise HTTPException(422, f"invalid window: {_errors(exc)}") from None
    except wire.LimitExceeded as exc:
        raise HTTPException(413, f"window too large: {exc}") from None
    # Storage is blocking I/O: off the event loop, so a slow database stalls only this request.
    result = await run_in_threadpool(_store(request).ingest, window)
    request.app.state.metrics.window_ingested(window, result, len(body))
    response.status_code = 200 if result.duplicate else 201
    return IngestResponse(
        window_id=result.window_id, duplicate=result.duplicate, samples=result.samples
    )


@router.post("/ingest", tags=["ingest"], response_model=IngestResponse)
async def ingest_pyroscope(
    request: Request,
    response: Response,
    name: Annotated[str, Query(description="APP{key=value,...}")],
    from_: Annotated[float | None, Query(alias="from", description="unix seconds")] = None,
    until: Annotated[float | None, Query(description="unix seconds")] = None,
    format: Annotated[str, Query()] = "folded",
    sampleRate: Annotated[float, Query(gt=0, le=100_000)] = 100.0,
) -> IngestResponse:
    """Pyroscope's ingest API with `format=folded`: a body of collapsed stacks."""
    settings = _settings(request)
    if format not in ("folded", "collapsed"):
        raise HTTPException(415, f"format {format!r} is not supported here: send format=folded")
    body = await read_body(request, settings.max_body_bytes)
    data = decode_body(
        body, request.headers.get("content-encoding"), settings.max_decompressed_bytes
    )
    now = datetime.now(UTC).timestamp()
    start, end = (from_ if from_ is not None else now), (until if until is not None else now)
    try:
        service, labels = pyroscope.parse_app_name(name)
        profile = pyroscope.loads_folded(data.decode("utf-8"), sampleRate)
        window = wire.from_profile(
            profile,
            service=service,
            # Pyroscope clients send no key: the content is the identity, so a retry dedupes.
            idempotency_key="pyroscope:"
            + hashlib.sha256(f"{name}\0{start}\0{end}\0".encode() + data).hexdigest(),
            start=datetime.fromtimestamp(start, UTC),
            end=datetime.fromtimestamp(end, UTC),
            sample_rate_hz=sampleRate,
            labels=labels,
        )
        wire.check_limits(window, settings.window_limits)
    except (FormatError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"invalid folded profile: {exc}") from None
    except ValidationError as exc:
        raise HTTPException(422, f"invalid profile: {_errors(exc)}") from None
    except wire.LimitExceeded as exc:
        raise HTTPException(413, f"profile too large: {exc}") from None
    # Storage is blocking I/O: off the event loop, so a slow database stalls only this request.
    result = await run_in_threadpool(_store(request).ingest, window)
    request.app.state.metrics.window_ingested(window, result, len(body))
    response.status_code = 200
    return IngestResponse(
        window_id=result.window_id, duplicate=result.duplicate, samples=result.samples
    )


@router.get("/api/v1/services", response_model=list[ServiceOut], tags=["query"])
def list_services(request: Request) -> list[ServiceOut]:
    return [ServiceOut(**vars(s)) for s in _store(request).services()]


@router.get(
    "/api/v1/profile",
    tags=["query"],
    responses={200: {"content": {"text/plain": {}, "application/json": {}}}, 404: {}, 422: {}},
)
def get_profile(
    request: Request,
    service: str,
    from_: Annotated[str | None, Query(alias="from", description="ISO-8601, unix or -15m")] = None,
    until: Annotated[str | None, Query(description="ISO-8601, unix or now")] = None,
    label: Annotated[list[str] | None, Query(description="key=value, repeatable")] = None,
    format: Literal["collapsed", "speedscope"] = "speedscope",
    focus: Annotated[
        str | None,
        Query(description='"qualname (file)": only stacks through it, rooted at it'),
    ] = None,
) -> Response:
    """The merged profile of a service over a time range, filtered by labels; with `focus`,
    the flame graph of one function alone (e.g. a hot path's)."""
    try:
        start, end = parse_range(from_, until)
        labels = parse_labels(label or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        profile = _store(request).profile(service, start, end, labels)
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None
    if focus:
        profile = under_function(profile, *parse_function(focus))
    headers = {"X-Hotpath-Samples": str(profile.total)}
    if format == "collapsed":
        return PlainTextResponse(collapsed.dumps(profile), headers=headers)
    title = f"{service} {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC"
    return Response(
        speedscope.dumps(profile, title), media_type="application/json", headers=headers
    )


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()[:5]
    )
