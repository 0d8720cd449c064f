"""The benchmark API (`/api/v1/bench/...`): uploads from `hotpath gate`, runs, history.

An upload is the pytest-benchmark JSON exactly as pytest wrote it; it is validated with the
same loader the gate uses offline, so the server refuses what the gate could not read, with
the loader's message, and stores nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hotpath.profiler.analysis.changepoint import ChangePoint, e_divisive
from hotpath.profiler.formats.pytest_benchmark import BenchResultsError, BenchRun, load_run
from hotpath.profiler.formats.window import clean_name
from hotpath.server.auth import CurrentPrincipal, requires
from hotpath.server.auth_tokens import INGEST, PUBLISH, READ
from hotpath.server.body import decode_body, read_body, release_memory
from hotpath.server.ingest_checks import EPOCH, TimeBounds
from hotpath.server.params import RowId
from hotpath.server.storage.bench import BenchStore, Point, RunMeta
from hotpath.server.tenancy import tenant

router = APIRouter(prefix="/api/v1/bench", tags=["benchmarks"])

# A project becomes the service `bench-<project>` of its benchmark profiles: same alphabet.
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"
BRANCH_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"
COMMIT_PATTERN = r"^[A-Za-z0-9._\-/]{1,64}$"
Stat = Literal["min", "median", "mean"]
# Change points are searched in at most this many newest runs (E-divisive is O(n^2) each).
MAX_HISTORY = 500

Project = Annotated[str, Query(pattern=PROJECT_PATTERN, description="e.g. the repository name")]
Branch = Annotated[str, Query(pattern=BRANCH_PATTERN)]
Tenant = Annotated[str, Depends(tenant)]


class RunOut(BaseModel):
    id: int
    project: str
    branch: str
    commit: str | None
    run_time: datetime
    uploaded: datetime
    source: str
    machine: str | None
    benchmarks: int
    raw_size: int
    url: str


class UploadOut(BaseModel):
    run: RunOut
    created: bool
    quirks: list[str]


class ProjectOut(BaseModel):
    name: str
    branches: list[str]
    runs: int
    last_upload: datetime


class PointOut(BaseModel):
    run_id: int
    run_time: datetime
    commit: str | None
    value: float
    min: float
    median: float
    mean: float
    stddev: float
    rounds: int


class ChangePointOut(BaseModel):
    index: int  # into points: the first point of the new level
    run_id: int
    commit: str | None
    run_time: datetime
    p_value: float
    mean_before: float
    mean_after: float
    change: float  # relative: +0.12 is 12% slower


class HistoryOut(BaseModel):
    project: str
    branch: str
    fullname: str
    stat: Stat
    points: list[PointOut]
    change_points: list[ChangePointOut]


def bench_store(request: Request) -> BenchStore:
    return request.app.state.storage.bench  # type: ignore[no-any-return]


def run_page_url(meta: RunMeta) -> str:
    return f"/benchmarks/{quote(meta.project, safe='')}?" + urlencode(
        {"branch": meta.branch, "run": meta.id}
    )


def _run_out(meta: RunMeta) -> RunOut:
    return RunOut(**vars(meta), url=run_page_url(meta))


def check_run(run: BenchRun, commit: str | None, max_future_s: float) -> None:
    """ValueError naming what the run holds that cannot be stored: a time past now +
    max_future_s or before 1970 (a run is history: no retention bounds it), or, when the
    upload names no commit, a commit_info.id that is not one (the column holds 64 chars)."""
    if run.datetime is not None:
        latest = datetime.now(UTC) + timedelta(seconds=max_future_s)
        TimeBounds(EPOCH, latest, "1970", f"now + max_future_s ({max_future_s:g} s)").check(
            "the run's datetime", run.datetime, run.datetime
        )
    found = run.commit_id()
    if commit is None and found is not None and not re.match(COMMIT_PATTERN, found):
        raise ValueError(
            f"commit_info.id {found[:80]!r} is not a commit id ({COMMIT_PATTERN}): "
            "name the commit with commit="
        )


@router.post(
    "/runs",
    dependencies=[Depends(requires(INGEST))],
    response_model=UploadOut,
    responses={
        200: {"description": "these bytes were already stored for this project and branch"},
        201: {"description": "stored"},
        413: {},
        415: {},
        422: {},
    },
)
async def upload_run(
    request: Request,
    response: Response,
    tenant: Tenant,
    principal: CurrentPrincipal,
    project: Project,
    branch: Branch,
    commit: Annotated[str | None, Query(pattern=COMMIT_PATTERN)] = None,
) -> UploadOut:
    """Store one pytest-benchmark JSON file (the body, optionally zstd- or gzip-encoded).
    A protected branch (the gate's baseline, `protected_branches`) needs the publish scope."""
    settings = request.app.state.settings
    if settings.protected(branch) and PUBLISH not in principal.scopes:
        raise HTTPException(
            403,
            f"branch {branch!r} is protected (protected_branches): writing its benchmark "
            "history needs a token with the publish scope",
        )
    body = await read_body(request, settings.max_body_bytes)
    data = decode_body(
        body,
        request.headers.get("content-encoding"),
        settings.max_decompressed_bytes,
        settings.trim_after_bytes,
    )
    source = clean_name(request.headers.get("x-hotpath-source") or "upload")
    try:
        run = load_run(data, source[:200])
        check_run(run, commit, settings.max_future_s)
    except BenchResultsError as exc:
        raise HTTPException(422, f"not a readable pytest-benchmark result: {exc}") from None
    except ValueError as exc:
        raise HTTPException(422, f"{source}: {exc}") from None
    if not run.benchmarks:
        raise HTTPException(422, f"{source}: the run holds no benchmarks: nothing to store")
    stored = await run_in_threadpool(
        bench_store(request).add_run, tenant, project, branch, commit, data, run
    )
    decoded, quirks = len(data), run.quirks
    del data, body, run  # the large objects, before their memory is handed back
    release_memory(decoded, settings.trim_after_bytes)
    response.status_code = 201 if stored.created else 200
    return UploadOut(run=_run_out(stored.meta), created=stored.created, quirks=list(quirks))


@router.get("/projects", response_model=list[ProjectOut], dependencies=[Depends(requires(READ))])
def list_projects(request: Request, tenant: Tenant) -> list[ProjectOut]:
    return [ProjectOut(**vars(p)) for p in bench_store(request).projects(tenant)]


@router.get("/runs", response_model=list[RunOut], dependencies=[Depends(requires(READ))])
def list_runs(
    request: Request,
    tenant: Tenant,
    project: Project,
    branch: Branch,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[RunOut]:
    """The newest `limit` runs of a branch (metadata only), oldest first."""
    return [_run_out(meta) for meta in bench_store(request).runs(tenant, project, branch, limit)]


# An unknown run id raises `UnknownRun`: 404 "no benchmark run N" (server/error_handlers.py).
@router.get(
    "/runs/{run_id}",
    response_model=RunOut,
    responses={404: {}},
    dependencies=[Depends(requires(READ))],
)
def get_run(request: Request, tenant: Tenant, run_id: RowId) -> RunOut:
    return _run_out(bench_store(request).run(tenant, run_id))


@router.get(
    "/runs/{run_id}/raw",
    responses={200: {"content": {"application/json": {}}}, 404: {}},
    dependencies=[Depends(requires(READ))],
)
def get_raw(request: Request, tenant: Tenant, run_id: RowId) -> Response:
    """The pytest-benchmark JSON exactly as uploaded."""
    return Response(bench_store(request).raw(tenant, run_id), media_type="application/json")


@router.get("/history", response_model=HistoryOut, dependencies=[Depends(requires(READ))])
def history(
    request: Request,
    tenant: Tenant,
    project: Project,
    branch: Branch,
    fullname: Annotated[str, Query(min_length=1)],
    stat: Stat = "median",
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = MAX_HISTORY,
) -> HistoryOut:
    """One benchmark over the runs of a branch, oldest first, with its change points."""
    points = bench_store(request).history(tenant, project, branch, fullname, limit)
    if not points:
        raise HTTPException(
            404, f"no runs of benchmark {fullname!r} on {project} branch {branch!r}"
        )
    return HistoryOut(
        project=project,
        branch=branch,
        fullname=fullname,
        stat=stat,
        points=[_point_out(p, stat) for p in points],
        change_points=change_points(points, stat),
    )


def _point_out(point: Point, stat: str) -> PointOut:
    return PointOut(
        run_id=point.run_id,
        run_time=point.run_time,
        commit=point.commit,
        value=point.stat(stat),
        min=point.min,
        median=point.median,
        mean=point.mean,
        stddev=point.stddev,
        rounds=point.rounds,
    )


@lru_cache(maxsize=1024)
def _found(values: tuple[float, ...]) -> tuple[ChangePoint, ...]:
    """E-divisive is deterministic (seeded): a page shown again before the next upload of its
    project costs nothing. At most ~16 MB for 1,024 histories of 500 runs."""
    return tuple(e_divisive(values))


def change_points(points: list[Point], stat: str) -> list[ChangePointOut]:
    """E-divisive change points of one benchmark's history, each attributed to the commit of
    the first run at the new level."""
    found = _found(tuple(p.stat(stat) for p in points))
    return [
        ChangePointOut(
            index=cp.index,
            run_id=points[cp.index].run_id,
            commit=points[cp.index].commit,
            run_time=points[cp.index].run_time,
            p_value=cp.p_value,
            mean_before=cp.mean_before,
            mean_after=cp.mean_after,
            change=cp.relative_change,
        )
        for cp in found
    ]
