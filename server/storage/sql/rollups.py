"""Rolling windows up into minute, hour and day buckets, per series and per (service, type).

Minute buckets follow ingest: each run merges the windows not rolled up yet into them. Hour
buckets are built from the 60 minute buckets once an hour has closed (plus a grace period
for late windows), day buckets from 24 hour buckets; `rollup_progress` records how far each
is built, and queries use a level only where it is built. A window that arrives after its
hour (or day) was built, e.g. replayed from an agent's spool, is merged into that bucket too.

One run is one transaction. On PostgreSQL a transaction-scoped advisory lock lets one server
at a time do it; on SQLite the write lock already does.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, or_, select, text, update

from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.hotpath_rollups import roll_up_hot_paths
from hotpath.server.storage.sql.tables import (
    rollup_progress,
    series_rollups,
    service_rollups,
    windows,
)
from hotpath.server.storage.sql.timeplan import DAY, HOUR, MINUTE, from_us, to_us

log = logging.getLogger("hotpath.rollups")

_US = 1_000_000
_LOCK_ID = 0x68707275  # any constant shared by every hotpath server on one database
GRACE_S = 120  # an hour is built this long after it ends, so that late windows make it in
BUILT_FROM = {HOUR: MINUTE, DAY: HOUR}
# The key columns of each rollup's owner: a service's buckets are per profile type (never
# merged across types), a series has one type.
_OWNERS = ((service_rollups, ("service_id", "profile_type")), (series_rollups, ("series_id",)))

Key = tuple[tuple[object, ...], int, int]  # owner key, resolution, bucket start


def roll_up(engine: Engine, *, batch: int = 5_000, now: datetime | None = None) -> int:
    """One run: roll up to `batch` windows, then build closed hours and days, and merge up to
    `batch` hot-path rows into their hours. Returns the number of windows and hot-path rows
    rolled up (0 when another server holds the lock)."""
    with write_transaction(engine) as conn:
        if not _take_lock(conn):
            return 0
        rolled = _roll_windows(conn, batch)
        if rolled < batch:  # all windows are in minute buckets: closed periods can be built
            now_us = to_us(now or datetime.now(UTC))
            for resolution in (HOUR, DAY):
                _build_closed(conn, resolution, now_us)
        rolled += roll_up_hot_paths(conn, batch)
    return rolled


def _take_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    return bool(
        conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}).scalar()
    )


def _roll_windows(conn: Connection, batch: int) -> int:
    rows = conn.execute(
        select(
            windows.c.id,
            windows.c.service_id,
            windows.c.series_id,
            windows.c.profile_type,
            windows.c.start_us,
            windows.c.sample_count,
            windows.c.pairs,
        )
        .where(windows.c.rolled_up.is_(False))
        .order_by(windows.c.id)
        .limit(batch)
    ).all()
    if not rows:
        return 0
    built = _built_until(conn)
    for table, owner in _OWNERS:
        parts: dict[Key, list[pairs_codec.Pairs]] = defaultdict(list)
        counts: dict[Key, int] = defaultdict(int)
        for row in rows:
            decoded = pairs_codec.decode(row.pairs)
            owner_id = tuple(getattr(row, column) for column in owner)
            for resolution in (MINUTE, HOUR, DAY):
                bucket = _bucket(row.start_us, resolution)
                # Hours and days not built yet are built later from the minutes.
                if resolution == MINUTE or bucket < built.get(resolution, 0):
                    parts[(owner_id, resolution, bucket)].append(decoded)
                    counts[(owner_id, resolution, bucket)] += row.sample_count
        _merge_into(conn, table, owner, parts, counts)
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 2_000):
        conn.execute(
            update(windows)
            .where(windows.c.id.in_(ids[start : start + 2_000]))
            .values(rolled_up=True)
        )
    return len(rows)


def _build_closed(conn: Connection, resolution: int, now_us: int) -> None:
    """Build every closed bucket of `resolution` after the progress mark, from finer ones."""
    source = BUILT_FROM[resolution]
    built = _built_until(conn).get(resolution)
    if built is None:  # first run: start at the oldest finer bucket there is
        oldest = conn.execute(
            select(service_rollups.c.bucket_us)
            .where(service_rollups.c.resolution_s == source)
            .order_by(service_rollups.c.bucket_us)
            .limit(1)
        ).scalar()
        if oldest is None:
            return
        built = _bucket(oldest, resolution)
    closed_until = _bucket(now_us - GRACE_S * _US, resolution)
    if resolution == DAY:  # days are built from hours, so only as far as hours are built
        closed_until = min(closed_until, _bucket(_built_until(conn).get(HOUR, 0), DAY))
    if closed_until <= built:
        _set_built(conn, resolution, built)
        return
    for table, owner in _OWNERS:
        parts: dict[Key, list[pairs_codec.Pairs]] = defaultdict(list)
        counts: dict[Key, int] = defaultdict(int)
        rows = conn.execute(
            select(
                *(getattr(table.c, column) for column in owner),
                table.c.bucket_us,
                table.c.sample_count,
                table.c.pairs,
            ).where(
                table.c.resolution_s == source,
                table.c.bucket_us >= built,
                table.c.bucket_us < closed_until,
            )
        )
        for *owner_id, bucket_us, count, blob in rows:
            key = (tuple(owner_id), resolution, _bucket(bucket_us, resolution))
            parts[key].append(pairs_codec.decode(blob))
            counts[key] += count
        _merge_into(conn, table, owner, parts, counts)
    _set_built(conn, resolution, closed_until)
    log.info("built %s s rollups until %s", resolution, from_us(closed_until))


def _merge_into(
    conn: Connection,
    table: Table,
    owner: tuple[str, ...],
    parts: dict[Key, list[pairs_codec.Pairs]],
    counts: dict[Key, int],
) -> None:
    """Add `parts` to the buckets `table` has (read, merge, write back) or create them."""
    if not parts:
        return
    owner_cols = [getattr(table.c, column) for column in owner]

    def is_owner(owner_id: tuple[object, ...]) -> ColumnElement[bool]:
        return and_(*(col == value for col, value in zip(owner_cols, owner_id, strict=True)))

    n = len(owner_cols)
    existing: dict[Key, tuple[int, bytes]] = {}
    for chunk in _chunks(list(parts), 500):
        condition = or_(
            *(
                and_(is_owner(o), table.c.resolution_s == r, table.c.bucket_us == b)
                for o, r, b in chunk
            )
        )
        for row in conn.execute(
            select(
                *owner_cols,
                table.c.resolution_s,
                table.c.bucket_us,
                table.c.sample_count,
                table.c.pairs,
            ).where(condition)
        ):
            existing[(tuple(row[:n]), row[n], row[n + 1])] = (row[n + 2], row[n + 3])
    inserts = []
    for key, new_parts in parts.items():
        owner_id, resolution, bucket = key
        if key in existing:
            count, blob = existing[key]
            merged = pairs_codec.merge([pairs_codec.decode(blob), *new_parts])
            conn.execute(
                update(table)
                .where(
                    is_owner(owner_id),
                    table.c.resolution_s == resolution,
                    table.c.bucket_us == bucket,
                )
                .values(sample_count=count + counts[key], pairs=pairs_codec.encode(merged))
            )
        else:
            inserts.append(
                {
                    **dict(zip(owner, owner_id, strict=True)),
                    "resolution_s": resolution,
                    "bucket_us": bucket,
                    "sample_count": counts[key],
                    "pairs": pairs_codec.encode(pairs_codec.merge(new_parts)),
                }
            )
    if inserts:
        conn.execute(table.insert(), inserts)


def _built_until(conn: Connection) -> dict[int, int]:
    return dict(
        conn.execute(select(rollup_progress.c.resolution_s, rollup_progress.c.built_until_us)).all()
    )


def _set_built(conn: Connection, resolution: int, until_us: int) -> None:
    changed = conn.execute(
        update(rollup_progress)
        .where(rollup_progress.c.resolution_s == resolution)
        .values(built_until_us=until_us)
    ).rowcount
    if not changed:
        conn.execute(
            rollup_progress.insert(), {"resolution_s": resolution, "built_until_us": until_us}
        )


def _bucket(micros: int, resolution: int) -> int:
    size = resolution * _US
    return micros // size * size


def _chunks(items: list[Key], size: int) -> Iterable[list[Key]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
