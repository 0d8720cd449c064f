"""The server's own web pages; the flame graph itself is speedscope, embedded in an iframe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hotpath.profiler.model import CPU, HELD_BYTES, ProfileType
from hotpath.server.auth import page_reader
from hotpath.server.hotpath_api import attribution_for, summarise
from hotpath.server.leak_report import bytes_text, finite, leak_report
from hotpath.server.params import Profiles, Tenant, parse_type, selection
from hotpath.server.storage.profiles import ProfileStore, Selection

router = APIRouter(include_in_schema=False, dependencies=[Depends(page_reader)])
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
templates.env.filters["bytes_text"] = bytes_text
templates.env.filters["finite"] = finite


@router.get("/", response_class=HTMLResponse)
def home(request: Request, store: Profiles, tenant_id: Tenant) -> HTMLResponse:
    services = store.services(tenant_id)
    return templates.TemplateResponse(request, "home.html", {"services": services})


def page_type(store: ProfileStore, tenant_id: str, service: str, chosen: str | None) -> ProfileType:
    """The type a page shows: the one asked for, else cpu, else the first the service has
    (a service attached only with --idle opens on its wall-clock profile)."""
    if chosen:
        return parse_type(chosen)
    types = store.profile_types(tenant_id, service)
    return CPU if CPU in types or not types else types[0]


@router.get("/services/{service}", response_class=HTMLResponse)
def service_page(
    request: Request,
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    type: str | None = None,
    from_: Annotated[str, Query(alias="from")] = "-15m",
    until: str = "now",
    label: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    kind = page_type(store, tenant_id, service, type)
    chosen = selection(tenant_id, service, kind.id, from_, until, label)
    start, end, labels = chosen.start, chosen.end, dict(chosen.labels)
    samples = store.sample_count(chosen)
    hot_paths = [
        summarise(name, budget, calls)
        for name, (budget, calls) in sorted(store.hot_path_histograms(chosen).items())
        if calls.count
    ]
    # Absolute times, so the viewer shows exactly the range this page describes.
    params = [("service", service), ("type", kind.id)]
    params += [("from", start.isoformat()), ("until", end.isoformat())]
    params += [("label", f"{k}={v}") for k, v in labels.items()]
    profile_url = "/api/v1/profile?" + urlencode([*params, ("format", "speedscope")])
    title = f"{service} · {kind.id} · {start:%H:%M}-{end:%H:%M} UTC"
    label_query = "".join(f"&label={quote(f'{k}={v}')}" for k, v in labels.items())
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
            "type": kind,
            "types": store.profile_types(tenant_id, service),
            "start": start,
            "end": end,
            "samples": samples,
            "hot_paths": hot_paths,
            "presets": RANGE_PRESETS,
            "selected": from_,
            "label_query": label_query,
            # The range presets and hot-path links keep the type; the type links keep the range.
            "type_query": f"&type={quote(kind.id)}",
            "range_query": urlencode([("from", from_), ("until", until)]) + label_query,
            "viewer_url": viewer_url,
            "collapsed_url": "/api/v1/profile?" + urlencode([*params, ("format", "collapsed")]),
            # Every pid of the service: memory has no labels to filter by.
            "memory_url": "/api/v1/memory?"
            + urlencode({"service": service, "from": start.isoformat(), "until": end.isoformat()}),
            "speedscope_ready": (speedscope_dir / "index.html").is_file(),
            # For timeline.js, which rebuilds the viewer's URL when a range is dragged out.
            "labels": [f"{k}={v}" for k, v in labels.items()],
            "label_keys": store.label_keys(tenant_id, service, kind),
        },
    )


@dataclass(frozen=True)
class DiffSide:
    start: datetime
    end: datetime
    labels: dict[str, str]
    samples: int
    type: ProfileType

    @property
    def range_text(self) -> str:
        end = "%H:%M:%S" if self.start.date() == self.end.date() else "%Y-%m-%d %H:%M:%S"
        return f"{self.start:%Y-%m-%d %H:%M:%S} \N{EN DASH} {self.end.strftime(end)} UTC"

    def service_query(self) -> str:
        """The service page's query for this side, to open its plain flame graph."""
        pairs = [("type", self.type.id)]
        pairs += [("from", self.start.isoformat()), ("until", self.end.isoformat())]
        return urlencode(pairs + [("label", f"{k}={v}") for k, v in self.labels.items()])


@router.get("/services/{service}/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    type: str = CPU.id,
    base_type: str | None = None,
    head_type: str | None = None,
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
    sides = [
        selection(tenant_id, service, base_type or type, base_from, base_until, base_label),
        selection(tenant_id, service, head_type or type, head_from, head_until, head_label),
    ]
    if sides[0].type != sides[1].type:
        raise HTTPException(
            422, f"cannot compare a {sides[0].type} profile with a {sides[1].type} profile"
        )
    base, head = (
        DiffSide(s.start, s.end, dict(s.labels), store.sample_count(s), s.type) for s in sides
    )
    params: list[tuple[str, str]] = [("service", service), ("type", base.type.id)]
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
            "type": base.type,
            "base": base,
            "head": head,
            "tree_url": "/api/v1/diff/tree?" + urlencode(params),
            "diff_url": "/api/v1/diff?" + urlencode(diff_params),
        },
    )


@router.get("/services/{service}/hotpaths/{name}", response_class=HTMLResponse)
def hot_path_page(
    request: Request,
    store: Profiles,
    tenant_id: Tenant,
    service: str,
    name: str,
    type: str | None = None,
    from_: Annotated[str, Query(alias="from")] = "-15m",
    until: str = "now",
    label: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    """One hot path: latency against its budget over time (hotpath_chart.js), and where its
    time goes (budget attribution), with its own flame graph."""
    kind = page_type(store, tenant_id, service, type)
    chosen: Selection = selection(tenant_id, service, kind.id, from_, until, label)
    start, end, labels = chosen.start, chosen.end, dict(chosen.labels)
    problem = None
    try:
        split = attribution_for(store, name, chosen)
    except HTTPException as exc:
        split, problem = None, exc.detail  # no calls in this range, or no function on record
    params = [("service", service), ("type", kind.id)]
    params += [("from", start.isoformat()), ("until", end.isoformat())]
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
            "type": kind,
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


@router.get("/services/{service}/leaks", response_class=HTMLResponse)
def leaks_page(
    request: Request,
    tenant_id: Tenant,
    service: str,
    from_: Annotated[str, Query(alias="from")] = "-7d",
    until: str = "now",
    label: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    """The functions whose held bytes grow, ranked, with their stacks; the captures with the
    target's pauses; a link to the held-bytes flame graph of the range in speedscope."""
    chosen = selection(tenant_id, service, HELD_BYTES.id, from_, until, label)
    report = leak_report(request.app.state.storage, chosen)
    speedscope_dir: Path = request.app.state.settings.speedscope_dir
    labels = dict(chosen.labels)
    return templates.TemplateResponse(
        request,
        "leaks.html",
        {
            "service": service,
            "report": report,
            "presets": RANGE_PRESETS,
            "selected": from_,
            "label_query": "".join(f"&label={quote(f'{k}={v}')}" for k, v in labels.items()),
            "speedscope_ready": (speedscope_dir / "index.html").is_file(),
        },
    )
