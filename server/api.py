"""The versioned HTTP API (`/api/v1/...`), Pyroscope-compatible ingest, and the health check."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from hotpath.profiler.analysis.attribution import parse_function, under_function
from hotpath.profiler.formats import FormatError, pyroscope, registry
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import CPU
from hotpath.server.auth import public, requires
from hotpath.server.auth_tokens import INGEST, READ
from hotpath.server.body import decode_body, read_body, release_memory
from hotpath.server.ingest_checks import TimeBounds, check_piece, unix_time
from hotpath.server.params import LabelParam, Profiles, Tenant, TypeParam, selection
from hotpath.server.settings import Settings
from hotpath.server.storage.errors import StorageUnavailable
from hotpath.server.storage.profiles import Piece, SeriesKey

router = APIRouter()


class IngestResponse(BaseModel):
    window_id: int | None
    duplicate: bool
    samples: int


class ServiceOut(BaseModel):
    name: str
    last_seen: datetime
    samples: int  # all-time CPU samples
    series: int
    types: list[str]  # the profile types the service has (ids, in the model's order)
    totals: dict[str, int]  # all-time weight per type, in the type's unit


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def accepted_times(settings: Settings) -> TimeBounds:
    """The times ingest accepts now (server/ingest_checks.py)."""
    return TimeBounds.around_now(settings.retention_raw, settings.max_future_s)


@router.get("/healthz", tags=["health"], dependencies=[Depends(public)])
def health(request: Request) -> JSONResponse:
    try:
        request.app.state.storage.upkeep.ping()
    except StorageUnavailable as exc:
        return JSONResponse({"status": "unavailable", "database": exc.reason}, 503)
    return JSONResponse({"status": "ok"})


@router.post(
    "/api/v1/windows",
    dependencies=[Depends(requires(INGEST))],
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
async def ingest_window(
    request: Request, response: Response, store: Profiles, tenant_id: Tenant
) -> IngestResponse:
    """Store one agent window (`hotpath.window/1` JSON, optionally zstd- or gzip-encoded).
    A window without `type` is cpu, or wall when labelled `sampling=wall` (older agents)."""
    settings = _settings(request)
    body, data = await decoded_body(request, settings)
    decoded = len(data)
    window = parse_spanned(
        data, "window", lambda d: wire.parse(d, settings.window_limits), settings
    )
    del data
    piece = Piece.from_window(window, tenant_id)
    # Storage is blocking I/O: off the event loop, so a slow database stalls only this request.
    result = await run_in_threadpool(store.put, piece)
    request.app.state.metrics.window_ingested(
        window, result, len(body), agent_dropped(request.headers.get(DROPPED_HEADER))
    )
    del window, piece, body  # the large objects, before their memory is handed back
    release_memory(decoded, settings.trim_after_bytes)
    response.status_code = 200 if result.duplicate else 201
    return IngestResponse(
        window_id=result.window_id,
        duplicate=result.duplicate,
        samples=result.samples,
    )


# Pyroscope's `format=` names for the registry's formats.
_PYROSCOPE_FORMATS = {"folded": "collapsed", "collapsed": "collapsed", "pprof": "pprof"}


@router.post(
    "/ingest",
    tags=["ingest"],
    response_model=IngestResponse,
    dependencies=[Depends(requires(INGEST))],
)
async def ingest_pyroscope(
    request: Request,
    response: Response,
    store: Profiles,
    tenant_id: Tenant,
    name: Annotated[str, Query(description="APP{key=value,...}")],
    from_: Annotated[float | None, Query(alias="from", description="unix seconds")] = None,
    until: Annotated[float | None, Query(description="unix seconds")] = None,
    format: Annotated[str, Query(description="folded (collapsed stacks) or pprof")] = "folded",
    sampleRate: Annotated[float, Query(gt=0, le=100_000)] = 100.0,
) -> IngestResponse:
    """Pyroscope's legacy ingest API (pyroscope-io 0.8 and other clients): a body of collapsed
    stacks (`format=folded`) or a pprof profile (`format=pprof`), read by the format
    registry; each profile type in the body is stored as its own piece."""
    settings = _settings(request)
    if format not in _PYROSCOPE_FORMATS:
        known = ", ".join(_PYROSCOPE_FORMATS)
        raise HTTPException(415, f"format {format!r} is not supported here: send one of {known}")
    body = await read_body(request, settings.max_body_bytes)
    data = decode_body(
        body,
        request.headers.get("content-encoding"),
        settings.max_decompressed_bytes,
        settings.trim_after_bytes,
    )
    now = datetime.now(UTC).timestamp()
    try:
        start, end = (from_ if from_ is not None else now), (until if until is not None else now)
        begins, ends = unix_time("from", start), unix_time("until", end)
        accepted_times(settings).check("from..until", begins, ends)
        service, labels = pyroscope.parse_app_name(name)
        profiles = registry.load(data, _PYROSCOPE_FORMATS[format])
        # Pyroscope clients send no key: the content is the identity, so a retry dedupes.
        key = hashlib.sha256(f"{name}\0{start}\0{end}\0".encode() + data).hexdigest()
        pieces = [
            Piece.from_profile(
                profile,
                # The name's tags win over the tags inside the profile (pprof labels).
                SeriesKey(tenant_id, service, profile.type, {**profile.labels, **labels}),
                start=begins,
                end=ends,
                sample_rate_hz=profile.sample_rate_hz or sampleRate,
                idempotency_key=f"pyroscope:{key[:48]}:{profile.type.id}",
            )
            for profile in profiles
        ]
        pieces = [check_piece(piece, settings.window_limits) for piece in pieces]
    except (FormatError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"invalid {format} profile: {exc}") from None
    except wire.LimitExceeded as exc:
        raise HTTPException(413, f"profile too large: {exc}") from None
    except (ValueError, OverflowError, OSError) as exc:  # names, times out of range
        raise HTTPException(422, f"invalid profile: {exc}") from None
    results = []
    for piece in pieces:
        # Storage is blocking I/O: off the event loop, so a slow database stalls only this
        # request. Each piece is its own transaction; a retry dedupes those already stored.
        result = await run_in_threadpool(store.put, piece)
        request.app.state.metrics.piece_ingested(service, result, len(body))
        results.append(result)
    decoded = len(data)
    del data, body, profiles, pieces, piece  # the large objects, before their memory goes back
    release_memory(decoded, settings.trim_after_bytes)
    response.status_code = 200
    return IngestResponse(
        window_id=results[0].window_id if len(results) == 1 else None,
        duplicate=all(r.duplicate for r in results),
        samples=sum(r.samples for r in results),
    )


@router.get(
    "/api/v1/services",
    response_model=list[ServiceOut],
    tags=["query"],
    dependencies=[Depends(requires(READ))],
)
def list_services(store: Profiles, tenant_id: Tenant) -> list[ServiceOut]:
    """The tenant's services, each with the profile types it has."""
    return [
        ServiceOut(
            name=s.name,
            last_seen=s.last_seen,
            samples=s.samples,
            series=s.series,
            types=[t.type.id for t in s.types],
            totals={t.type.id: t.total for t in s.types},
        )
        for s in store.services(tenant_id)
    ]


@router.get(
    "/api/v1/profile",
    dependencies=[Depends(requires(READ))],
    tags=["query"],
    responses={
        200: {"content": {registry.media_type(f): {} for f in registry.writable()}},
        404: {},
        422: {},
    },
)
def get_profile(
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    type: TypeParam = CPU.id,
    from_: Annotated[str | None, Query(alias="from", description="ISO-8601, unix or -15m")] = None,
    until: Annotated[str | None, Query(description="ISO-8601, unix or now")] = None,
    label: LabelParam = None,
    format: Literal[tuple(registry.writable())] = "speedscope",  # type: ignore[valid-type]
    focus: Annotated[
        str | None,
        Query(description='"qualname (file)": only stacks through it, rooted at it'),
    ] = None,
) -> Response:
    """The merged profile of one type (cpu by default) of a service over a time range,
    filtered by labels; with `focus`, the flame graph of one function alone (e.g. a hot
    path's)."""
    chosen = selection(tenant_id, service, type, from_, until, label)
    start, end = chosen.start, chosen.end
    profile = store.profile(chosen)
    if focus:
        profile = under_function(profile, *parse_function(focus))
    headers = {"X-Hotpath-Samples": str(profile.total)}
    title = f"{service} {chosen.type.id} {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC"
    return Response(
        registry.dump(profile, format, name=title),
        media_type=registry.media_type(format),
        headers=headers,
    )


DROPPED_HEADER = "x-hotpath-agent-dropped"
_DROP_REASONS = ("spool_full", "memory_full")
_MAX_DROPPED = 10**7  # per request: more than an agent can have dropped between deliveries


def agent_dropped(header: str | None) -> dict[str, int]:
    """The agent's `X-Hotpath-Agent-Dropped: spool_full=N,memory_full=M` (windows it dropped
    since its last delivery). A malformed header is ignored: it only feeds a metric."""
    counts: dict[str, int] = {}
    for part in (header or "")[:200].split(","):
        reason, _, value = part.strip().partition("=")
        if reason in _DROP_REASONS and value.isdigit() and 0 < int(value) <= _MAX_DROPPED:
            counts[reason] = int(value)
    return counts


class Spanned(Protocol):
    start: datetime
    end: datetime


T = TypeVar("T", bound=Spanned)


async def decoded_body(request: Request, settings: Settings) -> tuple[bytes, bytes]:
    """The body as sent and decoded (zstd, gzip), within the size limits: 413 or 415."""
    body = await read_body(request, settings.max_body_bytes)
    encoding = request.headers.get("content-encoding")
    return body, decode_body(
        body, encoding, settings.max_decompressed_bytes, settings.trim_after_bytes
    )


def parse_spanned(data: bytes, what: str, parse: Callable[[bytes], T], settings: Settings) -> T:
    """`parse(data)` with its span within the accepted times; refused, 422 (413 for a size
    limit) naming the problem, and the decoded body's memory handed back."""
    try:
        parsed = parse(data)
        accepted_times(settings).check(f"the {what}", parsed.start, parsed.end)
    except ValidationError as exc:
        release_memory(len(data), settings.trim_after_bytes)
        raise HTTPException(422, f"invalid {what}: {errors_text(exc)}") from None
    except wire.LimitExceeded as exc:
        release_memory(len(data), settings.trim_after_bytes)
        raise HTTPException(413, f"{what} too large: {exc}") from None
    except ValueError as exc:  # its times
        raise HTTPException(422, f"invalid {what}: {exc}") from None
    return parsed


def errors_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()[:5]
    )
