"""Alerts over HTTP: the rules (`/api/v1/alert-rules`), the alerts (`/api/v1/alerts`) and the
`/alerts` page. Evaluation itself is server/alerts.py, run by the maintenance thread."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hotpath.profiler.formats.window import SERVICE_NAME_PATTERN, printable
from hotpath.server.alerts import Rule, apply_override, default_rule
from hotpath.server.auth import page_reader, requires
from hotpath.server.auth_tokens import ADMIN, READ
from hotpath.server.storage.alerts import AlertRecord, AlertStatus, AlertStore, StoredRule
from hotpath.server.tenancy import tenant

router = APIRouter(prefix="/api/v1", tags=["alerts"])
page_router = APIRouter(include_in_schema=False, dependencies=[Depends(page_reader)])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

Tenant = Annotated[str, Depends(tenant)]
ServiceName = Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
HotPathName = Annotated[str, Field(min_length=1, max_length=112), AfterValidator(printable)]


class RuleIn(BaseModel):
    """An override of the default rule for one hot path; omitted fields keep the default."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName
    hot_path: HotPathName
    quantile: Annotated[float, Field(gt=0, le=1)] | None = None
    budget_ms: Annotated[float, Field(gt=0, le=100_000)] | None = None  # None: shipped budget
    fire_after: Annotated[int, Field(ge=1, le=10_000)] | None = None
    resolve_after: Annotated[int, Field(ge=1, le=10_000)] | None = None
    min_calls: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    severity: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    enabled: bool = True


class RuleOut(BaseModel):
    service: str | None  # None for the defaults
    hot_path: str | None
    quantile: float
    budget_ms: float | None  # None: the budget the hot path ships
    fire_after: int
    resolve_after: int
    min_calls: int
    severity: str
    enabled: bool
    interval_s: float


class RulesOut(BaseModel):
    defaults: RuleOut
    rules: list[RuleOut]


class AlertOut(BaseModel):
    id: int
    fingerprint: str
    service: str
    hot_path: str
    severity: str
    state: Literal["firing", "resolved"]
    rule: str
    quantile: float
    # Of a hot_path alert; None for an rss_growth alert (hot_path is then "pid N").
    value_ms: float | None
    peak_ms: float | None
    budget_ms: float | None
    starts_at: datetime
    ends_at: datetime | None
    notifications_pending: int
    kind: Literal["hot_path", "rss_growth"] = "hot_path"
    summary: str | None = None  # an rss_growth alert's sentence, as it fired
    # Of an rss_growth alert: its RSS slope when it fired, the highest since, and the floor.
    value_bytes_per_min: float | None = None
    peak_bytes_per_min: float | None = None
    floor_bytes_per_min: float | None = None


def _alerts(request: Request) -> AlertStore:
    return request.app.state.storage.alerts  # type: ignore[no-any-return]


def _defaults(request: Request) -> Rule:
    return default_rule(request.app.state.settings)


def _rule_out(rule: Rule, service: str | None, hot_path: str | None, interval_s: float) -> RuleOut:
    return RuleOut(
        service=service,
        hot_path=hot_path,
        quantile=rule.quantile,
        budget_ms=rule.budget_ns / 1e6 if rule.budget_ns is not None else None,
        fire_after=rule.fire_after,
        resolve_after=rule.resolve_after,
        min_calls=rule.min_calls,
        severity=rule.severity,
        enabled=rule.enabled,
        interval_s=interval_s,
    )


@router.get("/alert-rules", response_model=RulesOut, dependencies=[Depends(requires(READ))])
def list_rules(request: Request, tenant: Tenant) -> RulesOut:
    """The default rule (from settings) and every per-hot-path override, as applied."""
    defaults = _defaults(request)
    interval = request.app.state.settings.alert_interval_s
    return RulesOut(
        defaults=_rule_out(defaults, None, None, interval),
        rules=[
            _rule_out(apply_override(defaults, r), r.service, r.hot_path, interval)
            for r in _alerts(request).rules(tenant)
        ],
    )


@router.put(
    "/alert-rules",
    response_model=RuleOut,
    responses={409: {}, 422: {}},
    dependencies=[Depends(requires(ADMIN))],
)
def put_rule(request: Request, tenant: Tenant, rule: RuleIn) -> RuleOut:
    """Create or replace the override of one hot path's rule."""
    stored = _alerts(request).put_rule(
        StoredRule(
            tenant=tenant,
            service=rule.service,
            hot_path=rule.hot_path,
            quantile=rule.quantile,
            budget_ns=round(rule.budget_ms * 1e6) if rule.budget_ms is not None else None,
            fire_after=rule.fire_after,
            resolve_after=rule.resolve_after,
            min_calls=rule.min_calls,
            severity=rule.severity,
            enabled=rule.enabled,
        ),
        now_us=int(time.time() * 1e6),
    )  # a concurrent write of the same rule: `Conflict`, answered 409 (server/error_handlers.py)
    interval = request.app.state.settings.alert_interval_s
    applied = apply_override(_defaults(request), stored)
    return _rule_out(applied, stored.service, stored.hot_path, interval)


@router.delete(
    "/alert-rules",
    status_code=204,
    responses={404: {}},
    dependencies=[Depends(requires(ADMIN))],
)
def delete_rule(request: Request, tenant: Tenant, service: str, hot_path: str) -> Response:
    """Drop an override: the hot path goes back to the default rule."""
    if not _alerts(request).delete_rule(tenant, service, hot_path):
        raise HTTPException(404, f"no rule for hot path {hot_path!r} of service {service!r}")
    return Response(status_code=204)


def _rss_alert_out(a: AlertRecord) -> AlertOut:
    return AlertOut(
        id=a.id,
        fingerprint=a.fingerprint,
        service=a.service,
        hot_path=a.hot_path,
        severity=a.severity,
        state=a.state,
        rule=f"RSS trend over {a.interval_s / 60:g} min growing faster than "
        f"{a.budget_ns / 1e6:.2f} MB/min",
        quantile=a.quantile,
        value_ms=None,
        peak_ms=None,
        budget_ms=None,
        starts_at=datetime.fromtimestamp(a.starts_us / 1e6, UTC),
        ends_at=datetime.fromtimestamp(a.ends_us / 1e6, UTC) if a.ends_us else None,
        notifications_pending=a.notifications_pending,
        kind="rss_growth",
        summary=a.summary,
        value_bytes_per_min=a.value_ns,
        peak_bytes_per_min=a.peak_ns,
        floor_bytes_per_min=a.budget_ns,
    )


def _alert_out(a: AlertRecord) -> AlertOut:
    if a.kind == "rss_growth":
        return _rss_alert_out(a)
    q = f"p{a.quantile * 100:g}"
    return AlertOut(
        id=a.id,
        fingerprint=a.fingerprint,
        service=a.service,
        hot_path=a.hot_path,
        severity=a.severity,
        state=a.state,
        rule=f"{q} > budget in {a.fire_after} consecutive {a.interval_s:g} s intervals",
        quantile=a.quantile,
        value_ms=a.value_ns / 1e6,
        peak_ms=a.peak_ns / 1e6,
        budget_ms=a.budget_ns / 1e6,
        starts_at=datetime.fromtimestamp(a.starts_us / 1e6, UTC),
        ends_at=datetime.fromtimestamp(a.ends_us / 1e6, UTC) if a.ends_us else None,
        notifications_pending=a.notifications_pending,
    )


def query_alerts(
    request: Request, tenant: str, state: AlertStatus | None, service: str | None, limit: int
) -> list[AlertOut]:
    """Firing alerts first, then the most recent."""
    found = _alerts(request).alerts(tenant, state=state, service=service, limit=limit)
    return [_alert_out(a) for a in found]


StateParam = Annotated[Literal["firing", "resolved"] | None, Query()]
LimitParam = Annotated[int, Query(ge=1, le=1000)]


@router.get("/alerts", response_model=list[AlertOut], dependencies=[Depends(requires(READ))])
def list_alerts(
    request: Request,
    tenant: Tenant,
    state: StateParam = None,
    service: str | None = None,
    limit: LimitParam = 100,
) -> list[AlertOut]:
    """Hot-path alerts, firing first, then by start (newest first)."""
    return query_alerts(request, tenant, state, service, limit)


@page_router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    tenant: Tenant,
    state: StateParam = None,
    service: str | None = None,
    limit: LimitParam = 200,
) -> HTMLResponse:
    rows = query_alerts(request, tenant, state, service, limit)
    return templates.TemplateResponse(
        request,
        "alerts.html",
        {
            "firing": [a for a in rows if a.state == "firing"],
            "resolved": [a for a in rows if a.state == "resolved"],
            "service": service,
        },
    )
