"""Alerts over HTTP: the rules (`/api/v1/alert-rules`), the alerts (`/api/v1/alerts`) and the
`/alerts` page. Evaluation itself is server/alerts.py, run by the maintenance thread."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.formats.window import SERVICE_NAME_PATTERN
from hotpath.server.alerts import Rule, default_rule, load_rule
from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.tables import alert_notifications, alert_rules, alerts

router = APIRouter(prefix="/api/v1", tags=["alerts"])
page_router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

ServiceName = Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
HotPathName = Annotated[str, Field(min_length=1, max_length=112)]


class RuleIn(BaseModel):
    """An override of the default rule for one hot path; omitted fields keep the default."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName
    hot_path: HotPathName
    quantile: Annotated[float, Field(gt=0, le=1)] | None = None
    budget_ms: Annotated[float, Field(gt=0, le=100_000)] | None = None  # None: shipped budget
    fire_after: Annotated[int, Field(ge=1, le=10_000)] | None = None
    resolve_after: Annotated[int, Field(ge=1, le=10_000)] | None = None
    min_calls: Annotated[int, Field(ge=0)] | None = None
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
    value_ms: float
    peak_ms: float
    budget_ms: float
    starts_at: datetime
    ends_at: datetime | None
    notifications_pending: int


def _engine(request: Request) -> Engine:
    return request.app.state.store.engine


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


@router.get("/alert-rules", response_model=RulesOut)
def list_rules(request: Request) -> RulesOut:
    """The default rule (from settings) and every per-hot-path override, as applied."""
    defaults = _defaults(request)
    interval = request.app.state.settings.alert_interval_s
    with _engine(request).connect() as conn:
        rows = conn.execute(
            select(alert_rules).order_by(alert_rules.c.service, alert_rules.c.hot_path)
        ).all()
    return RulesOut(
        defaults=_rule_out(defaults, None, None, interval),
        rules=[_rule_out(load_rule(defaults, r), r.service, r.hot_path, interval) for r in rows],
    )


@router.put("/alert-rules", response_model=RuleOut, responses={409: {}, 422: {}})
def put_rule(request: Request, rule: RuleIn) -> RuleOut:
    """Create or replace the override of one hot path's rule."""
    values: dict[str, Any] = {
        "quantile": rule.quantile,
        "budget_ns": round(rule.budget_ms * 1e6) if rule.budget_ms is not None else None,
        "fire_after": rule.fire_after,
        "resolve_after": rule.resolve_after,
        "min_calls": rule.min_calls,
        "severity": rule.severity,
        "enabled": rule.enabled,
        "updated_us": int(time.time() * 1e6),
    }
    where = (alert_rules.c.service == rule.service) & (alert_rules.c.hot_path == rule.hot_path)
    try:
        with write_transaction(_engine(request)) as conn:
            if conn.execute(update(alert_rules).where(where).values(**values)).rowcount == 0:
                conn.execute(
                    insert(alert_rules),
                    {"service": rule.service, "hot_path": rule.hot_path, **values},
                )
            row = conn.execute(select(alert_rules).where(where)).one()
    except IntegrityError:
        raise HTTPException(409, "the rule was written concurrently; retry") from None
    interval = request.app.state.settings.alert_interval_s
    return _rule_out(load_rule(_defaults(request), row), rule.service, rule.hot_path, interval)


@router.delete("/alert-rules", status_code=204, responses={404: {}})
def delete_rule(request: Request, service: str, hot_path: str) -> Response:
    """Drop an override: the hot path goes back to the default rule."""
    with write_transaction(_engine(request)) as conn:
        deleted = conn.execute(
            delete(alert_rules).where(
                alert_rules.c.service == service, alert_rules.c.hot_path == hot_path
            )
        ).rowcount
    if not deleted:
        raise HTTPException(404, f"no rule for hot path {hot_path!r} of service {service!r}")
    return Response(status_code=204)


def query_alerts(
    engine: Engine, state: str | None, service: str | None, limit: int
) -> list[AlertOut]:
    """Firing alerts first, then the most recent."""
    pending = (
        select(func.count())
        .where(
            alert_notifications.c.alert_id == alerts.c.id,
            alert_notifications.c.delivered_us.is_(None),
        )
        .scalar_subquery()
    )
    query = select(alerts, pending.label("pending")).order_by(
        (alerts.c.state == "firing").desc(), alerts.c.starts_us.desc(), alerts.c.id.desc()
    )
    if state:
        query = query.where(alerts.c.state == state)
    if service:
        query = query.where(alerts.c.service == service)
    with read_snapshot(engine) as conn:
        rows = conn.execute(query.limit(limit)).all()
    return [_alert_out(r._mapping) for r in rows]


def _alert_out(m: Any) -> AlertOut:
    q = f"p{m['quantile'] * 100:g}"
    return AlertOut(
        id=m["id"],
        fingerprint=m["fingerprint"],
        service=m["service"],
        hot_path=m["hot_path"],
        severity=m["severity"],
        state=m["state"],
        rule=f"{q} > budget in {m['fire_after']} consecutive {m['interval_s']:g} s intervals",
        quantile=m["quantile"],
        value_ms=m["value_ns"] / 1e6,
        peak_ms=m["peak_ns"] / 1e6,
        budget_ms=m["budget_ns"] / 1e6,
        starts_at=datetime.fromtimestamp(m["starts_us"] / 1e6, UTC),
        ends_at=datetime.fromtimestamp(m["ends_us"] / 1e6, UTC) if m["ends_us"] else None,
        notifications_pending=m["pending"],
    )


StateParam = Annotated[Literal["firing", "resolved"] | None, Query()]
LimitParam = Annotated[int, Query(ge=1, le=1000)]


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    request: Request, state: StateParam = None, service: str | None = None, limit: LimitParam = 100
) -> list[AlertOut]:
    """Hot-path alerts, firing first, then by start (newest first)."""
    return query_alerts(_engine(request), state, service, limit)


@page_router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request, state: StateParam = None, service: str | None = None, limit: LimitParam = 200
) -> HTMLResponse:
    rows = query_alerts(_engine(request), state, service, limit)
    return templates.TemplateResponse(
        request,
        "alerts.html",
        {
            "firing": [a for a in rows if a.state == "firing"],
            "resolved": [a for a in rows if a.state == "resolved"],
            "service": service,
        },
    )
