"""Merging hot-path calls into hours per series, so latency history outlives raw windows.

Like the minute roll-ups of stacks (server/storage/sql/rollups.py, in whose transaction and lock
this runs), rows are merged as they arrive: each run takes the rows not rolled up yet, merges them
into their (series, hot path, hour) row, and marks them. A late row (an agent's spool replayed
hours later) is merged into its hour the same way. Queries read an hour row for every whole
hour of a range plus the raw rows at the edges and any row not rolled up yet, so answers are
exact at any moment (`hotpath_reads.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, insert, select, tuple_, update

from hotpath.profiler.hotpath.histogram import NUM_BUCKETS, Histogram
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.tables import hot_path_calls, hot_path_hours

HOUR_US = 3_600 * 1_000_000
_MAX_BIGINT = 2**63 - 1


@dataclass
class _Hour:
    service_id: int
    histogram: Histogram
    budget_ns: int | None
    function: str | None


def decode(sum_ns: int, max_ns: int, blob: bytes) -> Histogram:
    buckets = pairs_codec.decode(blob)
    counts = np.zeros(NUM_BUCKETS, dtype=np.int64)
    counts[buckets.ids.astype(np.int64)] = buckets.counts.astype(np.int64)
    return Histogram(counts, sum_ns, max_ns)


def encode(calls: Histogram) -> bytes:
    nonzero = np.flatnonzero(calls.counts)
    return pairs_codec.encode(
        pairs_codec.Pairs(nonzero.astype(np.uint64), calls.counts[nonzero].astype(np.uint64))
    )


def roll_up_hot_paths(conn: Connection, batch: int = 5_000) -> int:
    """Merge up to `batch` raw rows into their hours; returns how many were merged."""
    c = hot_path_calls.c
    rows = conn.execute(
        select(
            c.id,
            c.service_id,
            c.series_id,
            c.name,
            c.start_us,
            c.budget_ns,
            c.function,
            c.sum_ns,
            c.max_ns,
            c.buckets,
        )
        .where(c.rolled_up.is_(False))
        .order_by(c.id)
        .limit(batch)
    ).all()
    if not rows:
        return 0
    hours: dict[tuple[int, str, int], _Hour] = {}
    for row in sorted(rows, key=lambda r: r.start_us):
        key = (row.series_id, row.name, row.start_us - row.start_us % HOUR_US)
        calls = decode(row.sum_ns, row.max_ns, row.buckets)
        _add(hours, key, row.service_id, calls, row.budget_ns, row.function)
    existing = _existing(conn, list(hours))
    for key, hour in hours.items():
        values = {
            "budget_ns": hour.budget_ns,
            "function": hour.function,
            # Saturated at what BIGINT holds: one row over it would stop every roll-up for good.
            "count": min(hour.histogram.count, _MAX_BIGINT),
            "sum_ns": min(hour.histogram.sum, _MAX_BIGINT),
            "max_ns": min(hour.histogram.max, _MAX_BIGINT),
            "buckets": encode(hour.histogram),
        }
        if key in existing:
            row_id, stored = existing[key]
            merged = stored.histogram.merge(hour.histogram)
            values.update(
                count=min(merged.count, _MAX_BIGINT),
                sum_ns=min(merged.sum, _MAX_BIGINT),
                max_ns=min(merged.max, _MAX_BIGINT),
                buckets=encode(merged),
            )
            # The budget and function last shipped win; rows without them change nothing.
            if hour.budget_ns is None:
                values["budget_ns"] = stored.budget_ns
            if hour.function is None:
                values["function"] = stored.function
            conn.execute(update(hot_path_hours).where(hot_path_hours.c.id == row_id), values)
        else:
            series_id, name, hour_us = key
            conn.execute(
                insert(hot_path_hours),
                {
                    **values,
                    "service_id": hour.service_id,
                    "series_id": series_id,
                    "name": name,
                    "hour_us": hour_us,
                },
            )
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 2_000):
        conn.execute(
            update(hot_path_calls)
            .where(hot_path_calls.c.id.in_(ids[start : start + 2_000]))
            .values(rolled_up=True)
        )
    return len(rows)


def _add(
    hours: dict[tuple[int, str, int], _Hour],
    key: tuple[int, str, int],
    service_id: int,
    calls: Histogram,
    budget_ns: int | None,
    function: str | None,
) -> None:
    hour = hours.get(key)
    if hour is None:
        hours[key] = _Hour(service_id, calls, budget_ns, function)
        return
    hour.histogram = hour.histogram.merge(calls)
    hour.budget_ns = budget_ns if budget_ns is not None else hour.budget_ns
    hour.function = function if function is not None else hour.function


def _existing(
    conn: Connection, keys: list[tuple[int, str, int]]
) -> dict[tuple[int, str, int], tuple[int, _Hour]]:
    h = hot_path_hours.c
    found: dict[tuple[int, str, int], tuple[int, _Hour]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = conn.execute(
            select(
                h.id,
                h.series_id,
                h.name,
                h.hour_us,
                h.service_id,
                h.budget_ns,
                h.function,
                h.sum_ns,
                h.max_ns,
                h.buckets,
            ).where(tuple_(h.series_id, h.name, h.hour_us).in_(chunk))
        )
        for row in rows:
            calls = decode(row.sum_ns, row.max_ns, row.buckets)
            hour = _Hour(row.service_id, calls, row.budget_ns, row.function)
            found[(row.series_id, row.name, row.hour_us)] = (row.id, hour)
    return found
