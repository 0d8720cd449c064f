"""The SQL process-memory store (`server/storage/memory.py` is its contract). Rows are written
by `writing.PieceWriter.put` with their window; this module only reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from hotpath.server.storage.memory import (
    MAX_PIDS,
    MAX_POINTS,
    MAX_SERVICES,
    MemoryPoint,
    ProcessMemorySeries,
)
from hotpath.server.storage.sql.database import read_snapshot
from hotpath.server.storage.sql.series import known_service
from hotpath.server.storage.sql.tables import process_memory as pm
from hotpath.server.storage.sql.tables import services
from hotpath.server.storage.sql.timeplan import to_us


def _at(micros: float) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _point(row: Any) -> MemoryPoint:
    return MemoryPoint(_at(float(row.t_us)), round(float(row.rss)), _int(row.pss), _int(row.uss))


class SqlMemoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def memory(
        self,
        tenant: str,
        service: str,
        start: datetime,
        end: datetime,
        pid: int | None = None,
        max_points: int = MAX_POINTS,
        max_pids: int = MAX_PIDS,
    ) -> list[ProcessMemorySeries]:
        max_points, max_pids = max(1, max_points), max(1, max_pids)
        with read_snapshot(self.engine) as conn:
            service_id = known_service(conn, tenant, service)
            within = [pm.c.service_id == service_id, pm.c.t_us >= to_us(start)]
            within.append(pm.c.t_us < to_us(end))
            if pid is not None:
                within.append(pm.c.pid == pid)
            last = func.max(pm.c.t_us)
            chosen = conn.execute(
                select(pm.c.pid, func.min(pm.c.t_us), last, func.count())
                .where(*within)
                .group_by(pm.c.pid)
                .order_by(last.desc(), pm.c.pid)
                .limit(max_pids)
            ).all()
            found = [
                self._series(conn, within, p, first, final, count, max_points)
                for p, first, final, count in chosen
            ]
        return sorted(found, key=lambda s: s.pid)

    def services_with_readings(
        self, since: datetime, limit: int = MAX_SERVICES
    ) -> list[tuple[str, str]]:
        last = func.max(pm.c.t_us)
        with read_snapshot(self.engine) as conn:
            rows = conn.execute(
                select(services.c.tenant, services.c.name)
                .join(pm, pm.c.service_id == services.c.id)
                .where(pm.c.t_us >= to_us(since))
                .group_by(services.c.id, services.c.tenant, services.c.name)
                .order_by(last.desc())
                .limit(max(1, limit))
            ).all()
        return [(tenant, name) for tenant, name in rows]

    def _series(
        self,
        conn: Connection,
        within: list[Any],
        pid: int,
        first: int,
        final: int,
        count: int,
        max_points: int,
    ) -> ProcessMemorySeries:
        mine = [*within, pm.c.pid == pid]
        latest = conn.execute(
            select(
                pm.c.t_us,
                pm.c.rss_bytes.label("rss"),
                pm.c.pss_bytes.label("pss"),
                pm.c.uss_bytes.label("uss"),
            )
            .where(*mine, pm.c.t_us == final)
            .order_by(pm.c.id.desc())
            .limit(1)
        ).one()
        if count <= max_points:
            rows = conn.execute(
                select(
                    pm.c.t_us,
                    pm.c.rss_bytes.label("rss"),
                    pm.c.pss_bytes.label("pss"),
                    pm.c.uss_bytes.label("uss"),
                )
                .where(*mine)
                .order_by(pm.c.t_us, pm.c.id)
            ).all()
        else:
            # Equal steps over the pid's own span, so no more than max_points buckets.
            step = -(-(final - first + 1) // max_points)
            bucket = ((pm.c.t_us - first) // step).label("bucket")
            rows = conn.execute(
                select(
                    func.avg(pm.c.t_us).label("t_us"),
                    func.avg(pm.c.rss_bytes).label("rss"),
                    func.avg(pm.c.pss_bytes).label("pss"),
                    func.avg(pm.c.uss_bytes).label("uss"),
                )
                .where(*mine)
                .group_by(bucket)
                .order_by(bucket)
            ).all()
        return ProcessMemorySeries(pid, [_point(r) for r in rows], _point(latest), count)
