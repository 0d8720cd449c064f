"""Enforcing retention per level: raw windows, then minute, hour and day buckets expire.

Deletes go in small batches, each its own short transaction, so ingest (which needs the same
write lock on SQLite) never waits long. A raw window is deleted only once rolled up, so a
lagging roll-up never loses data.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, exists, select

from hotpath.server.storage.profiles import Retention
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.tables import (
    hot_path_calls,
    hot_path_hours,
    hot_path_names,
    memory_captures,
    process_memory,
    series_rollups,
    service_rollups,
    windows,
)
from hotpath.server.storage.sql.timeplan import DAY, HOUR, MINUTE, to_us

BATCH = 5_000


def enforce(engine: Engine, retention: Retention, now: datetime | None = None) -> int:
    """Delete what has expired; returns the number of rows deleted."""
    now_us = to_us(now or datetime.now(UTC))
    cutoff = {
        level: now_us - int(age.total_seconds() * 1_000_000)
        for level, age in retention.by_resolution().items()
    }
    deleted = 0
    while True:  # raw windows are many: batches, each a short transaction
        with write_transaction(engine) as conn:
            victims = (
                select(windows.c.id)
                .where(
                    windows.c.start_us < cutoff[0],
                    windows.c.rolled_up.is_(True),
                    # its hot-path calls (deleted with it) must be in their hours first
                    ~exists().where(
                        hot_path_calls.c.window_id == windows.c.id,
                        hot_path_calls.c.rolled_up.is_(False),
                    ),
                )
                .limit(BATCH)
            )
            count = conn.execute(delete(windows).where(windows.c.id.in_(victims))).rowcount
        deleted += count
        if count < BATCH:
            break
    while True:  # memory readings go with the raw windows they came with
        with write_transaction(engine) as conn:
            victims = select(process_memory.c.id).where(process_memory.c.t_us < cutoff[0])
            count = conn.execute(
                delete(process_memory).where(process_memory.c.id.in_(victims.limit(BATCH)))
            ).rowcount
        deleted += count
        if count < BATCH:
            break
    with write_transaction(engine) as conn:  # a capture's facts go with its raw pieces
        deleted += conn.execute(
            delete(memory_captures).where(memory_captures.c.start_us < cutoff[0])
        ).rowcount
    # Buckets expire a few per owner per run: one statement per level is short enough.
    for table in (service_rollups, series_rollups):
        for resolution in (MINUTE, HOUR, DAY):
            with write_transaction(engine) as conn:
                deleted += conn.execute(
                    delete(table).where(
                        table.c.resolution_s == resolution, table.c.bucket_us < cutoff[resolution]
                    )
                ).rowcount
    with write_transaction(engine) as conn:  # hot-path hours live as long as stack hours
        deleted += conn.execute(
            delete(hot_path_hours).where(hot_path_hours.c.hour_us < cutoff[HOUR])
        ).rowcount
        # A name goes with its last hour (the names limit counts only active ones anyway).
        deleted += conn.execute(
            delete(hot_path_names).where(hot_path_names.c.arrived_us < cutoff[HOUR])
        ).rowcount
    return deleted
