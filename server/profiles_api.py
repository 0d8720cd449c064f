"""`POST /api/v1/profiles`: upload a profile file in any format of the registry.

The body is the file (optionally gzip- or zstd-encoded in transit); its format is detected
or given (`format=`), its type read from the file or given (`type=`). Each typed profile in
the file is stored as its own series piece under the service and labels. Everything is
checked before anything is stored: a bad file, format, type, name or label is a 4xx naming
it, and nothing of the file is kept. The idempotency key is the content's digest (with the
service, labels, format and type), so uploading the same file twice stores it once. Storage
is through the profile store's contract (`put` of one piece per type), like the agent's windows.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hotpath.profiler.formats import FormatError, registry
from hotpath.profiler.formats import window as wire
from hotpath.profiler.labels import parse_labels
from hotpath.profiler.model import Profile, Unit
from hotpath.server.auth import requires
from hotpath.server.auth_tokens import INGEST
from hotpath.server.body import decode_body, read_body, release_memory
from hotpath.server.ingest_checks import TimeBounds, check_piece
from hotpath.server.params import Profiles, Tenant
from hotpath.server.storage.profiles import Piece, SeriesKey

router = APIRouter()

# The rate a time profile stands for when its file does not say (py-spy's default); memory
# profiles have no rate, but a piece carries one.
DEFAULT_RATE_HZ = 100.0


class StoredProfile(BaseModel):
    type: str
    unit: str
    total: int
    stacks: int
    window_id: int | None
    duplicate: bool


class UploadResponse(BaseModel):
    service: str
    format: str
    profiles: list[StoredProfile]


@router.post(
    "/api/v1/profiles",
    dependencies=[Depends(requires(INGEST))],
    response_model=UploadResponse,
    status_code=201,
    tags=["ingest"],
    responses={
        200: {"description": "already stored (the same file was uploaded before)"},
        201: {"description": "stored, one entry per profile type in the file"},
        413: {},
        415: {},
        422: {"description": "not a profile, wrong format or type, bad service or label"},
    },
)
async def upload_profile(
    request: Request,
    response: Response,
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    format: Annotated[str | None, Query(description="detected when absent")] = None,
    type: Annotated[str | None, Query(description="a profile type id; from the file")] = None,
    label: Annotated[list[str] | None, Query(description="key=value, repeatable")] = None,
) -> UploadResponse:
    """Store a profile file (collapsed, speedscope, pprof, pyinstrument session)."""
    settings = request.app.state.settings
    if format is not None and format not in registry.names():
        raise HTTPException(
            422, f"unknown format {format!r}: known formats are {', '.join(registry.names())}"
        )
    try:
        labels = parse_labels(label or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    body = await read_body(request, settings.max_body_bytes)
    data = decode_body(
        body,
        request.headers.get("content-encoding"),
        settings.max_decompressed_bytes,
        settings.trim_after_bytes,
    )
    try:
        fmt = format or registry.detect(data).name
        profiles = await run_in_threadpool(registry.load, data, fmt, type)
    except FormatError as exc:
        raise HTTPException(422, str(exc)) from None

    digest = hashlib.sha256(
        "\0".join(
            [service, fmt, type or "", *sorted(f"{k}={v}" for k, v in labels.items())]
        ).encode()
        + b"\0"
        + data
    ).hexdigest()
    bounds = TimeBounds.around_now(settings.retention_raw, settings.max_future_s)
    try:
        pieces = [
            _piece(p, SeriesKey(tenant_id, service, p.type, labels), digest, bounds)
            for p in profiles
        ]
        pieces = [check_piece(piece, settings.window_limits) for piece in pieces]
    except wire.LimitExceeded as exc:
        raise HTTPException(413, f"profile too large: {exc}") from None
    except ValueError as exc:
        raise HTTPException(422, f"invalid upload: {exc}") from None

    stored: list[StoredProfile] = []
    for piece, profile in zip(pieces, profiles, strict=True):
        # Each piece is one transaction; a retry after a failure part-way dedupes the
        # pieces already stored (same keys).
        result = await run_in_threadpool(store.put, piece)
        request.app.state.metrics.piece_ingested(service, result, len(body))
        stored.append(
            StoredProfile(
                type=profile.type.id,
                unit=str(profile.unit),
                total=profile.total,
                stacks=len(piece.stacks),
                window_id=result.window_id,
                duplicate=result.duplicate,
            )
        )
    if all(s.duplicate for s in stored):
        response.status_code = 200
    decoded = len(data)
    del data, body, profiles, pieces, piece, profile  # before their memory is handed back
    release_memory(decoded, settings.trim_after_bytes)
    return UploadResponse(service=service, format=fmt, profiles=stored)


def _piece(profile: Profile, key: SeriesKey, digest: str, bounds: TimeBounds) -> Piece:
    """The profile as a piece of its series. A file's own time span must lie within `bounds`
    (ValueError); a file without one is stored as ending now, lasting its samples at its rate
    (a memory profile: an instant), as far back as the bounds allow."""
    rate = profile.sample_rate_hz or DEFAULT_RATE_HZ
    start, end = profile.start, profile.end
    if start is None or end is None or end < start:
        end = datetime.now(UTC)
        seconds = profile.total / rate if profile.unit == Unit.SAMPLES else 0.0
        start = max(end - timedelta(seconds=min(seconds, 86_400.0)), bounds.earliest)
    else:
        bounds.check("the file's time span", start, end)
    return Piece.from_profile(
        profile,
        key,
        start=start,
        end=end,
        sample_rate_hz=rate,
        idempotency_key=f"upload:{digest[:40]}:{profile.type.id}",
    )
