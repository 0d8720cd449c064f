"""The server's own web pages; the flame graph itself is speedscope, embedded in an iframe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hotpath.profiler.labels import parse_labels
from hotpath.profiler.timespec import parse_range
from hotpath.server.compare_api import Selection
from hotpath.server.hotpath_api import attribution_for, summarise
from hotpath.server.storage.sql.profiles import UnknownService

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

RANGE_PRESETS = [
    ("-5m", "5 min"),
    ("-15m", "15 min"),
    ("-1h", "1 hour"),
    ("-6h", "6 hours"),
    ("-24h", "24 hours"),
    ("-7d", "7 days"),
]


def ago(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


templates.env.globals["ago"] = ago


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    services = request.app.state.store.services()
    return templates.TemplateResponse(request, "home.html", {"services": services})


@router.get("/services/{service}", response_class=HTMLResponse)
def service_page(
    request: Request,
    service: str,
    from_: Annotated[str, Query(alias="from")] = "-15m",
    until: str = "now",
    label: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    try:
        start, end = parse_range(from_, until)
        labels = parse_labels(label or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    store = request.app.state.store
    try:
        samples = store.sample_count(service, start, end, labels)
        hot_paths = [
            summarise(name, budget, calls)
            for name, (budget, calls) in sorted(
                store.hot_path_histograms(service, start, end, labels).items()
            )
            if calls.count
        ]
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None
    # Absolute times, so the viewer shows exactly the range this page describes.
    params = [("service", service), ("from", start.isoformat()), ("until", end.isoformat())]
    params += [("label", f"{k}={v}") for k, v in labels.items()]
    profile_url = "/api/v1/profile?" + urlencode([*params, ("format", "speedscope")])
    title = f"{service} · {start:%H:%M}-{end:%H:%M} UTC"
    viewer_url = (
        f"/speedscope/index.html#profileURL={quote(profile_url, safe='')}"
        f"&title={quote(title, safe='')}&view=left-heavy"
    )
    speedscope_dir: Path = request.app.state.settings.speedscope_dir
    return templates.TemplateResponse(
        request,
        "service.html",
        {
            "service": service,
            "start": start,
            "end": end,
            "samples": samples,
            "hot_paths": hot_paths,
            "presets": RANGE_PRESETS,
            "selected": from_,
            "label_query": "".join(f"&label={quote(f'{k}={v}')}" for k, v in labels.items()),
            "viewer_url": viewer_url,
            "collapsed_url": "/api/v1/profile?" + urlencode([*params, ("format", "collapsed")]),
            "speedscope_ready": (speedscope_dir / "index.html").is_file(),
            # For timeline.js, which rebuilds the viewer's URL when a range is dragged out.
            "labels": [f"{k}={v}" for k, v in labels.items()],
            "label_keys": request.app.state.store.label_keys(service),
        },
    )


@dataclass(frozen=True)
class DiffSide:
    start: datetime
    end: datetime
    labels: dict[str, str]
    samples: int

    @property
    def range_text(self) -> str:
        end = "%H:%M:%S" if self.start.date() == self.end.date() else "%Y-%m-%d %H:%M:%S"
        return f"{self.start:%Y-%m-%d %H:%M:%S} \N{EN DASH} {self.end.strftime(end)} UTC"

    def service_query(self) -> str:
        """The service page's query for this side, to open its plain flame graph."""
        pairs = [("from", self.start.isoformat()), ("until", self.end.isoformat())]
        return urlencode(pairs + [("label", f"{k}={v}") for k, v in self.labels.items()])


@router.get("/services/{service}/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    service: str,
    base_from: str | None = None,
    base_until: str | None = None,
    base_label: Annotated[list[str] | None, Query()] = None,
    head_from: str | None = None,
    head_until: str | None = None,
    head_label: Annotated[list[str] | None, Query()] = None,
    alpha: Annotated[float | None, Query(gt=0, lt=1)] = None,
    min_change_pp: Annotated[float | None, Query(ge=0)] = None,
) -> HTMLResponse:
    """The differential flame graph (diffgraph.js) of two selections, beside the table of the
    functions that got slower. Both sides are resolved to absolute times here, so the two API
    calls the page makes describe exactly the same ranges as its headings."""
    try:
        base_range = parse_range(base_from, base_until)
        head_range = parse_range(head_from, head_until)
        base_labels, head_labels = parse_labels(base_label or []), parse_labels(head_label or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    store = request.app.state.store
    try:
        base = DiffSide(
            *base_range, base_labels, store.sample_count(service, *base_range, base_labels)
        )
        head = DiffSide(
            *head_range, head_labels, store.sample_count(service, *head_range, head_labels)
        )
    except UnknownService:
        raise HTTPException(404, f"unknown service {service!r}") from None
    params: list[tuple[str, str]] = [("service", service)]
    for side, chosen in (("base", base), ("head", head)):
        params += [
            (f"{side}_from", chosen.start.isoformat()),
            (f"{side}_until", chosen.end.isoformat()),
        ]
        params += [(f"{side}_label", f"{k}={v}") for k, v in chosen.labels.items()]
    tests = [("alpha", alpha), ("min_change_pp", min_change_pp)]
    diff_params = params + [(name, str(value)) for name, value in tests if value is not None]
    return templates.TemplateResponse(
        request,
        "diff.html",
        {
            "service": service,
            "base": base,
            "head": head,
            "tree_url": "/api/v1/diff/tree?" + urlencode(params),
            "diff_url": "/api/v1/diff?" + urlencode(diff_params),
        },
    )


@router.get("/services/{service}/hotpaths/{name}", response_class=HTMLResponse)
def hot_path_page(
    request: Request,
    service: str,
    name: str,
    from_: Annotated[str, Query(alias="from")] = "-15m",
    until: str = "now",
    label: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    """One hot path: latency against its budget over time (hotpath_chart.js), and where its
    time goes (budget attribution), with its own flame graph."""
    try:
        start, end = parse_range(from_, until)
        labels = parse_labels(label or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    chosen = Selection(start, end, labels)
    problem = None
    try:
        split = attribution_for(request.app.state.store, service, name, chosen)
    except HTTPException as exc:
        if str(exc.detail).startswith("unknown service"):
            raise
        split, problem = None, exc.detail  # no calls in this range, or no function on record
    params = [("service", service), ("from", start.isoformat()), ("until", end.isoformat())]
    params += [("label", f"{k}={v}") for k, v in labels.items()]
    viewer_url = None
    if split is not None and split.samples_inside:
        title = f"{service} · hot path {name} · {start:%H:%M}-{end:%H:%M} UTC"
        viewer_url = (
            f"/speedscope/index.html#profileURL={quote(split.flamegraph_url, safe='')}"
            f"&title={quote(title, safe='')}&view=left-heavy"
        )
    return templates.TemplateResponse(
        request,
        "hotpath.html",
        {
            "service": service,
            "name": name,
            "start": start,
            "end": end,
            "presets": RANGE_PRESETS,
            "selected": from_,
            "label_query": "".join(f"&label={quote(f'{k}={v}')}" for k, v in labels.items()),
            "split": split,
            "problem": problem,
            "viewer_url": viewer_url,
            "timeline_url": f"/api/v1/hotpaths/{quote(name, safe='')}/timeline?"
            + urlencode(params),
        },
    )
