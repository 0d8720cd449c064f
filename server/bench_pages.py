"""Benchmark pages: projects, a project's benchmarks on a branch, one benchmark's history.

The history chart is drawn in the browser by static/benchcharts.js from
/api/v1/bench/history; the tables here are rendered on the server from the same store and the
same (seeded, so identical) change-point detection.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from hotpath.server.auth import page_reader
from hotpath.server.bench_api import (
    BRANCH_PATTERN,
    PROJECT_PATTERN,
    ChangePointOut,
    bench_store,
    change_points,
)
from hotpath.server.pages import templates
from hotpath.server.storage.bench import Point, ProfileSeries, RunMeta
from hotpath.server.tenancy import tenant

router = APIRouter(include_in_schema=False, dependencies=[Depends(page_reader)])
Tenant = Annotated[str, Depends(tenant)]

# The project page detects change points over this many newest runs of each benchmark.
PAGE_HISTORY = 100
STAT = "median"


@dataclass(frozen=True)
class BenchmarkRow:
    fullname: str
    value: float | None  # the selected run's (or the newest) median, seconds
    previous: float | None  # the run before it
    runs: int
    change_points: list[ChangePointOut]
    history_url: str

    @property
    def change(self) -> float | None:
        if self.value is None or not self.previous:
            return None
        return self.value / self.previous - 1

    @property
    def last_change(self) -> ChangePointOut | None:
        return self.change_points[-1] if self.change_points else None


@dataclass(frozen=True)
class ProfileDiff:
    head_commit: str
    base_commit: str
    when: datetime
    url: str


def seconds(value: float | None) -> str:
    """A time per call in the unit that suits it."""
    if value is None:
        return "\N{EN DASH}"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def percent(value: float | None) -> str:
    return "\N{EN DASH}" if value is None else f"{value:+.1%}"


templates.env.filters["seconds"] = seconds
templates.env.filters["percent"] = percent


def history_url(project: str, branch: str, fullname: str) -> str:
    return f"/benchmarks/{quote(project, safe='')}/history?" + urlencode(
        {"branch": branch, "fullname": fullname}
    )


@router.get("/benchmarks", response_class=HTMLResponse)
def projects_page(request: Request, tenant: Tenant) -> HTMLResponse:
    projects = bench_store(request).projects(tenant)
    return templates.TemplateResponse(request, "bench_projects.html", {"projects": projects})


@router.get("/benchmarks/{project}", response_class=HTMLResponse)
def project_page(
    request: Request,
    tenant: Tenant,
    project: str,
    branch: Annotated[str | None, Query(pattern=BRANCH_PATTERN)] = None,
    run: int | None = None,
) -> HTMLResponse:
    store = bench_store(request)
    branches = store.branches(tenant, project)
    if not branches:
        raise HTTPException(404, f"no benchmark runs for project {project!r}")
    branch = branch or ("main" if "main" in branches else branches[0])
    runs = store.runs(tenant, project, branch, PAGE_HISTORY)
    if not runs:
        raise HTTPException(404, f"no benchmark runs for {project} on branch {branch!r}")
    selected = next((r for r in runs if r.id == run), None) if run is not None else runs[-1]
    if selected is None:
        raise HTTPException(404, f"run {run} is not among the newest runs of {project} {branch}")
    points = store.history(tenant, project, branch, None, PAGE_HISTORY)
    rows = _benchmark_rows(project, branch, points, selected, runs)
    return templates.TemplateResponse(
        request,
        "bench_project.html",
        {
            "project": project,
            "branch": branch,
            "branches": branches,
            "run": selected,
            "is_newest": selected.id == runs[-1].id,
            "rows": rows,
            "flagged": sum(1 for r in rows if r.change_points),
        },
    )


@router.get("/benchmarks/{project}/history", response_class=HTMLResponse)
def history_page(
    request: Request,
    tenant: Tenant,
    project: str,
    branch: Annotated[str, Query(pattern=BRANCH_PATTERN)],
    fullname: Annotated[str, Query(min_length=1)],
) -> HTMLResponse:
    if not _valid_project(project):
        raise HTTPException(422, f"invalid project name {project!r}")
    store = bench_store(request)
    points = store.history(tenant, project, branch, fullname, PAGE_HISTORY * 5)
    if not points:
        raise HTTPException(404, f"no runs of benchmark {fullname!r} on {project} {branch!r}")
    changes = change_points(points, STAT)
    service = f"bench-{project}"
    diffs = profile_diffs(service, store.profiles(tenant, service, _benchmark_label(fullname)))
    by_commit = {d.head_commit: d for d in diffs}
    api_url = "/api/v1/bench/history?" + urlencode(
        {"project": project, "branch": branch, "fullname": fullname, "stat": STAT}
    )
    return templates.TemplateResponse(
        request,
        "bench_history.html",
        {
            "project": project,
            "branch": branch,
            "fullname": fullname,
            "points": points,
            "change_points": changes,
            "profile_by_commit": by_commit,
            "profile_diffs": diffs,
            "api_url": api_url,
        },
    )


def profile_diffs(service: str, profiles: list[ProfileSeries]) -> list[ProfileDiff]:
    """Differential flame graphs of the base and head profiles one `hotpath gate --profile`
    run uploaded (same `pair` label), newest first."""
    sides: dict[str, dict[str, ProfileSeries]] = defaultdict(dict)
    for profile in profiles:
        pair, role = profile.labels.get("pair"), profile.labels.get("role")
        if pair and role in ("base", "head"):
            sides[pair][role] = profile
    found = []
    for pair, both in sides.items():
        if "base" not in both or "head" not in both:
            continue
        base, head = both["base"], both["head"]
        params: list[tuple[str, str]] = []
        for name, side in (("base", base), ("head", head)):
            params += [
                (f"{name}_from", side.first_seen.isoformat()),
                (f"{name}_until", side.last_seen.isoformat()),
                (f"{name}_label", f"pair={pair}"),
                (f"{name}_label", f"role={name}"),
                (f"{name}_label", f"benchmark={side.labels.get('benchmark', '')}"),
            ]
        found.append(
            ProfileDiff(
                head_commit=head.labels.get("commit", ""),
                base_commit=base.labels.get("commit", ""),
                when=head.last_seen,
                url=f"/services/{quote(service, safe='')}/diff?" + urlencode(params),
            )
        )
    return sorted(found, key=lambda d: d.when, reverse=True)


def _benchmark_rows(
    project: str, branch: str, points: list[Point], selected: RunMeta, runs: list[RunMeta]
) -> list[BenchmarkRow]:
    by_name: dict[str, list[Point]] = defaultdict(list)
    for point in points:
        by_name[point.fullname].append(point)
    order = {r.id: i for i, r in enumerate(runs)}
    at = order[selected.id]
    rows = []
    for fullname in sorted(by_name):
        history = [p for p in by_name[fullname] if order.get(p.run_id, -1) <= at]
        current = history[-1].median if history and history[-1].run_id == selected.id else None
        before = [p for p in history if p.run_id != selected.id]
        rows.append(
            BenchmarkRow(
                fullname=fullname,
                value=current,
                previous=before[-1].median if before else None,
                runs=len(by_name[fullname]),
                change_points=change_points(by_name[fullname], STAT),
                history_url=history_url(project, branch, fullname),
            )
        )
    return rows


def _valid_project(project: str) -> bool:
    return re.fullmatch(PROJECT_PATTERN, project) is not None


def _benchmark_label(fullname: str) -> str:
    # The same label value `hotpath gate --profile` gives a benchmark (hotpath.gate.profile).
    if len(fullname) <= 256:
        return fullname
    return "sha256:" + hashlib.sha256(fullname.encode()).hexdigest()
