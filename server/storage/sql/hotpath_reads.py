"""Reading hot-path calls back: merged histograms, the timed functions, latency over time.

Hot-path calls belong to a series (the window that carried them), so a read of one profile
type counts the calls that type's agent shipped: two agents attached to one process (CPU and
wall clock) both ship its hot paths, and reading across types would count each call twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, or_, select

from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.server.storage.profiles import HotPathHistograms, Selection
from hotpath.server.storage.sql.database import read_snapshot
from hotpath.server.storage.sql.hotpath_rollups import HOUR_US
from hotpath.server.storage.sql.hotpath_rollups import decode as decode_histogram
from hotpath.server.storage.sql.series import known_service, matching_series
from hotpath.server.storage.sql.tables import hot_path_calls, hot_path_hours
from hotpath.server.storage.sql.timeplan import from_us, to_us


def histograms(engine: Engine, chosen: Selection) -> HotPathHistograms:
    """Whole hours come from hour rows, which outlive raw windows; the edges need raw rows."""
    merged: HotPathHistograms = {}
    with read_snapshot(engine) as conn:
        for row in _rows(conn, chosen):
            calls = decode_histogram(row.sum_ns, row.max_ns, row.buckets)
            budget = row.budget_ns
            previous = merged.get(row.name)
            if previous is not None:
                calls = previous[1].merge(calls)
                budget = budget if budget is not None else previous[0]
            merged[row.name] = (budget, calls)
    return merged


def functions(engine: Engine, chosen: Selection) -> dict[str, str]:
    found: dict[str, str] = {}
    with read_snapshot(engine) as conn:
        for row in _rows(conn, chosen):
            if row.function is not None:
                found[row.name] = row.function
    return found


def timeline(
    engine: Engine, chosen: Selection, name: str, step_s: int
) -> list[tuple[datetime, Histogram]]:
    step_us = step_s * 1_000_000
    merged: dict[int, Histogram] = {}
    with read_snapshot(engine) as conn:
        for row in _rows(conn, chosen, name=name, hours=step_us % HOUR_US == 0):
            calls = decode_histogram(row.sum_ns, row.max_ns, row.buckets)
            bucket = row.at_us - row.at_us % step_us
            previous = merged.get(bucket)
            merged[bucket] = calls if previous is None else previous.merge(calls)
    return [(from_us(bucket), calls) for bucket, calls in sorted(merged.items())]


def _rows(
    conn: Connection, chosen: Selection, *, name: str | None = None, hours: bool = True
) -> list[Row[Any]]:
    """The hot-path rows that make up the selection, oldest first: an hour row for each
    whole hour (with `hours`), raw rows for the rest and for any raw row not merged into its
    hour yet (hotpath_rollups.py), so nothing is counted twice or missed."""
    service_id = known_service(conn, chosen.tenant, chosen.service)
    series_ids = matching_series(conn, service_id, chosen.type.id, chosen.labels)
    if not series_ids:
        return []
    start_us, end_us = to_us(chosen.start), to_us(chosen.end)
    raw, hour = hot_path_calls.c, hot_path_hours.c
    first_hour = -(-start_us // HOUR_US) * HOUR_US
    last_hour = end_us - end_us % HOUR_US
    use_hours = hours and first_hour < last_hour
    columns = (raw.name, raw.budget_ns, raw.function, raw.sum_ns, raw.max_ns, raw.buckets)
    query = select(raw.start_us.label("at_us"), *columns).where(
        raw.service_id == service_id,
        raw.series_id.in_(series_ids),
        raw.start_us >= start_us,
        raw.start_us < end_us,
    )
    if use_hours:
        query = query.where(
            or_(raw.start_us < first_hour, raw.start_us >= last_hour, raw.rolled_up.is_(False))
        )
    queries = [(query, raw)]
    if use_hours:
        columns = (hour.name, hour.budget_ns, hour.function, hour.sum_ns, hour.max_ns, hour.buckets)
        hour_query = select(hour.hour_us.label("at_us"), *columns).where(
            hour.service_id == service_id,
            hour.series_id.in_(series_ids),
            hour.hour_us >= first_hour,
            hour.hour_us < last_hour,
        )
        queries.append((hour_query, hour))
    rows: list[Row[Any]] = []
    for chosen_query, table in queries:
        if name is not None:
            chosen_query = chosen_query.where(table.name == name)
        rows.extend(conn.execute(chosen_query))
    rows.sort(key=lambda row: row.at_us)
    return rows
