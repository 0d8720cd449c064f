"""Services and series: finding and creating them, and choosing the series a read covers.

A service is unique per (tenant, name); a series per (service, digest of its profile type and
labels). Every read starts from `known_service` (inside the caller's tenant) and, for one
type or a label filter, from `matching_series`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hotpath.server.storage.profiles import Limits, SeriesKey, UnknownService
from hotpath.server.storage.sql.cardinality import check_series_room, lock_service
from hotpath.server.storage.sql.tables import series, series_labels, services


def series_digest(type_id: str, labels: Mapping[str, str]) -> bytes:
    text = json.dumps([type_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def insert_ignoring_conflict(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: list[str]
) -> None:
    if rows:
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert_(table).on_conflict_do_nothing(index_elements=keys), list(rows))


def find_service(conn: Connection, tenant: str, name: str) -> int | None:
    return conn.execute(
        select(services.c.id).where(services.c.tenant == tenant, services.c.name == name)
    ).scalar_one_or_none()


def known_service(conn: Connection, tenant: str, name: str) -> int:
    service_id = find_service(conn, tenant, name)
    if service_id is None:
        raise UnknownService(name)
    return service_id


def service_id_for(conn: Connection, tenant: str, name: str) -> int:
    """The service's id, created if new (safe against a concurrent creation)."""
    insert_ignoring_conflict(conn, services, [{"tenant": tenant, "name": name}], ["tenant", "name"])
    return known_service(conn, tenant, name)


def series_id_for(
    conn: Connection,
    service_id: int,
    key: SeriesKey,
    digest: bytes,
    sample_rate_hz: float,
    first_seen_us: int,
    limits: Limits,
    now_us: int,
) -> int:
    """The series' id, created with its labels if new and the service has room for it
    (`SeriesLimitExceeded` otherwise; see cardinality.py for the lock)."""
    query = select(series.c.id).where(series.c.service_id == service_id, series.c.digest == digest)
    series_id = conn.execute(query).scalar_one_or_none()
    if series_id is None:
        lock_service(conn, service_id)
        series_id = conn.execute(query).scalar_one_or_none()  # made while this one waited
    if series_id is not None:
        return series_id
    check_series_room(conn, service_id, key, limits, now_us)
    labels = key.labels
    row = {
        "service_id": service_id,
        "digest": digest,
        "labels": json.dumps(dict(labels), sort_keys=True),
        "profile_type": key.type.id,
        "sample_rate_hz": sample_rate_hz,
        "first_seen_us": first_seen_us,
        "last_seen_us": first_seen_us,
        "samples": 0,
        "arrived_us": now_us,
    }
    insert_ignoring_conflict(conn, series, [row], ["service_id", "digest"])
    series_id = conn.execute(query).scalar_one()
    insert_ignoring_conflict(
        conn,
        series_labels,
        [{"series_id": series_id, "key": k, "value": v} for k, v in labels.items()],
        ["series_id", "key"],
    )
    return series_id


def matching_series(
    conn: Connection, service_id: int, type_id: str, labels: Mapping[str, str] | None = None
) -> list[int]:
    """The service's series of one type whose labels include every `labels` pair."""
    conditions = [
        exists().where(
            series_labels.c.series_id == series.c.id,
            series_labels.c.key == key,
            series_labels.c.value == value,
        )
        for key, value in (labels or {}).items()
    ]
    query = select(series.c.id).where(
        series.c.service_id == service_id, series.c.profile_type == type_id, *conditions
    )
    return list(conn.execute(query).scalars())
