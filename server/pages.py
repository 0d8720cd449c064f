"""The server's own web pages; the flame graph itself is speedscope, embedded in an iframe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from profiler.labels import parse_labels
from profiler.timespec import parse_range
from server.store import UnknownService

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
    try:
        samples = request.app.state.store.sample_count(service, start, end, labels)
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
            "presets": RANGE_PRESETS,
            "selected": from_,
            "label_query": "".join(f"&label={quote(f'{k}={v}')}" for k, v in labels.items()),
            "viewer_url": viewer_url,
            "collapsed_url": "/api/v1/profile?" + urlencode([*params, ("format", "collapsed")]),
            "speedscope_ready": (speedscope_dir / "index.html").is_file(),
        },
    )
