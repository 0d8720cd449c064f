"""What a tenant has: its services with their profile types, label keys, and the timeline
(weight per minute or hour, per label value) of one type."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Connection, Engine, and_, func, or_, select

from hotpath.profiler.model import PROFILE_TYPES, ProfileType
from hotpath.server.storage.profiles import Selection, ServiceSummary, Timeline, TypeSummary
from hotpath.server.storage.sql.database import read_snapshot
from hotpath.server.storage.sql.series import known_service, matching_series
from hotpath.server.storage.sql.tables import (
    rollup_progress,
    series,
    series_labels,
    series_rollups,
    services,
)
from hotpath.server.storage.sql.tables import windows as windows_table
from hotpath.server.storage.sql.timeplan import HOUR, MINUTE, from_us, to_us

_ORDER = {type_id: i for i, type_id in enumerate(PROFILE_TYPES)}


def services_of(engine: Engine, tenant: str) -> list[ServiceSummary]:
    query = (
        select(
            services.c.name,
            series.c.profile_type,
            func.max(series.c.last_seen_us),
            func.sum(series.c.samples),
            func.count(series.c.id),
        )
        .join(series, series.c.service_id == services.c.id)
        .where(services.c.tenant == tenant)
        .group_by(services.c.name, series.c.profile_type)
    )
    by_service: dict[str, list[TypeSummary]] = {}
    with engine.connect() as conn:
        for name, type_id, last, total, count in conn.execute(query):
            kind = PROFILE_TYPES.get(type_id)
            if kind is not None:  # a type this server does not know is not served
                summary = TypeSummary(kind, from_us(last), int(total), int(count))
                by_service.setdefault(name, []).append(summary)
    return [
        ServiceSummary(
            name=name,
            last_seen=max(t.last_seen for t in types),
            series=sum(t.series for t in types),
            types=tuple(sorted(types, key=lambda t: _ORDER[t.type.id])),
        )
        for name, types in sorted(by_service.items())
    ]


def profile_types(engine: Engine, tenant: str, service: str) -> list[ProfileType]:
    with engine.connect() as conn:
        service_id = known_service(conn, tenant, service)
        ids = conn.execute(
            select(series.c.profile_type).distinct().where(series.c.service_id == service_id)
        ).scalars()
        return sorted(
            (PROFILE_TYPES[i] for i in ids if i in PROFILE_TYPES), key=lambda t: _ORDER[t.id]
        )


def label_keys(
    engine: Engine, tenant: str, service: str, kind: ProfileType | None = None
) -> list[str]:
    with engine.connect() as conn:
        service_id = known_service(conn, tenant, service)
        query = (
            select(series_labels.c.key)
            .distinct()
            .join(series, series.c.id == series_labels.c.series_id)
            .where(series.c.service_id == service_id)
            .order_by(series_labels.c.key)
        )
        if kind is not None:
            query = query.where(series.c.profile_type == kind.id)
        return list(conn.execute(query).scalars())


def timeline(engine: Engine, chosen: Selection, by: str | None) -> Timeline:
    """Minutes up to two days, else hours (built hours, then the minutes after them), plus
    the windows not rolled up yet."""
    step = MINUTE if chosen.end - chosen.start <= timedelta(days=2) else HOUR
    start_us, end_us = to_us(chosen.start), to_us(chosen.end)
    lines: dict[str, dict[int, int]] = {}
    with read_snapshot(engine) as conn:
        service_id = known_service(conn, chosen.tenant, chosen.service)
        ids = matching_series(conn, service_id, chosen.type.id, chosen.labels)
        if not ids:
            return Timeline(step, lines)
        line_of = _line_names(conn, ids, by)
        rollups = series_rollups.c
        buckets = select(rollups.series_id, rollups.bucket_us, rollups.sample_count).where(
            rollups.series_id.in_(ids), rollups.bucket_us >= start_us, rollups.bucket_us < end_us
        )
        if step == MINUTE:
            buckets = buckets.where(rollups.resolution_s == MINUTE)
        else:
            built_hours = _built_until(conn, HOUR)
            buckets = buckets.where(
                or_(
                    and_(rollups.resolution_s == HOUR, rollups.bucket_us < built_hours),
                    and_(rollups.resolution_s == MINUTE, rollups.bucket_us >= built_hours),
                )
            )
        w = windows_table.c
        unrolled = select(w.series_id, w.start_us, w.sample_count).where(
            w.series_id.in_(ids),
            w.rolled_up.is_(False),
            w.start_us >= start_us,
            w.start_us < end_us,
        )
        for query in (buckets, unrolled):
            for series_id, at_us, count in conn.execute(query):
                line = lines.setdefault(line_of[series_id], {})
                at = at_us // 1_000_000 // step * step
                line[at] = line.get(at, 0) + count
    return Timeline(step, lines)


def _line_names(conn: Connection, ids: list[int], by: str | None) -> dict[int, str]:
    if not by:
        return dict.fromkeys(ids, "all")
    rows = conn.execute(select(series.c.id, series.c.labels).where(series.c.id.in_(ids)))
    return {row.id: json.loads(row.labels).get(by, "(none)") for row in rows}


def _built_until(conn: Connection, resolution: int) -> int:
    built = conn.execute(
        select(rollup_progress.c.built_until_us).where(rollup_progress.c.resolution_s == resolution)
    ).scalar()
    return built or 0
