"""Storing windows and reading merged profiles back, through SQLAlchemy Core.

A window is written in one transaction or not at all: its series, any new frames and stacks,
and its (stack id, count) pairs. Its idempotency key is unique, so a retried window is stored
once even when two servers receive it at the same time. Reads follow `server.timeplan`:
rollups for whole buckets, raw windows for the edges and for what is not rolled up yet.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU, Profile
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.hotpath_rollups import HOUR_US
from hotpath.server.storage.sql.hotpath_rollups import decode as _histogram
from hotpath.server.storage.sql.hotpath_rollups import encode as _encode_histogram
from hotpath.server.storage.sql.interning import LRU, Interner, Learned
from hotpath.server.storage.sql.tables import (
    hot_path_calls,
    hot_path_hours,
    rollup_progress,
    series,
    series_labels,
    series_rollups,
    service_rollups,
    services,
    windows,
)
from hotpath.server.storage.sql.timeplan import HOUR, MINUTE, RAW, Availability, plan


class UnknownService(LookupError):
    pass


@dataclass(frozen=True)
class IngestResult:
    window_id: int | None
    duplicate: bool
    samples: int


@dataclass(frozen=True)
class ServiceSummary:
    name: str
    last_seen: datetime
    samples: int
    series: int


@dataclass(frozen=True)
class Retention:
    """How long each level is kept; `server.retention` enforces it."""

    raw: timedelta = timedelta(days=7)
    minute: timedelta = timedelta(days=30)
    hour: timedelta = timedelta(days=365)
    day: timedelta = timedelta(days=5 * 365)

    def by_resolution(self) -> dict[int, timedelta]:
        return {RAW: self.raw, 60: self.minute, 3600: self.hour, 86400: self.day}


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_us(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def series_digest(labels: dict[str, str], unit: str) -> bytes:
    text = json.dumps([unit, sorted(labels.items())], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Store:
    def __init__(self, engine: Engine, retention: Retention | None = None) -> None:
        self.engine = engine
        self.retention = retention or Retention()
        self.interner = Interner()
        self._service_ids: LRU[str, int] = LRU(100_000)
        self._series_ids: LRU[tuple[int, bytes], int] = LRU(1_000_000)

    # -- writing ------------------------------------------------------------------------------

    def ingest(self, window: wire.Window) -> IngestResult:
        samples = sum(window.counts)
        digest = series_digest(window.labels, str(window.unit))
        learned = Learned()
        try:
            with write_transaction(self.engine) as conn:
                if _window_exists(conn, window.idempotency_key):
                    return IngestResult(None, True, samples)
                service_id = self._service_id(conn, window.service)
                series_id = self._series_id(conn, service_id, digest, window)
                stack_ids = self.interner.intern(conn, window.frames, window.stacks, learned)
                pairs = pairs_codec.from_lists(stack_ids, window.counts)
                start_us, end_us = to_us(window.start), to_us(window.end)
                window_id = conn.execute(
                    insert(windows).returning(windows.c.id),
                    {
                        "service_id": service_id,
                        "series_id": series_id,
                        "idempotency_key": window.idempotency_key,
                        "start_us": start_us,
                        "end_us": end_us,
                        "sample_count": samples,
                        "rolled_up": False,
                        "pairs": pairs_codec.encode(pairs),
                    },
                ).scalar_one()
                if window.hot_paths:
                    conn.execute(
                        insert(hot_path_calls),
                        [
                            _hot_path_row(h, window_id, service_id, series_id, start_us)
                            for h in window.hot_paths
                        ],
                    )
                conn.execute(
                    update(series)
                    .where(series.c.id == series_id)
                    .values(
                        samples=series.c.samples + samples,
                        last_seen_us=func.max(series.c.last_seen_us, end_us)
                        if conn.dialect.name == "sqlite"
                        else func.greatest(series.c.last_seen_us, end_us),
                    )
                )
        except IntegrityError:
            # Lost a race with a concurrent insert of the same key: that copy is the one stored.
            with self.engine.connect() as conn:
                if _window_exists(conn, window.idempotency_key):
                    return IngestResult(None, True, samples)
            raise
        # Ids are cached only once committed: an id from a rolled-back insert must not be reused.
        self.interner.publish(learned)
        self._service_ids.put_many([(window.service, service_id)])
        self._series_ids.put_many([((service_id, digest), series_id)])
        return IngestResult(window_id, False, samples)

    def _service_id(self, conn: Connection, name: str) -> int:
        cached = self._service_ids.get(name)
        if cached is not None:
            return cached
        _insert_ignoring_conflict(conn, services, [{"name": name}], ["name"])
        return conn.execute(select(services.c.id).where(services.c.name == name)).scalar_one()

    def _series_id(
        self, conn: Connection, service_id: int, digest: bytes, window: wire.Window
    ) -> int:
        key = (service_id, digest)
        cached = self._series_ids.get(key)
        if cached is not None:
            return cached
        query = select(series.c.id).where(
            series.c.service_id == service_id, series.c.digest == digest
        )
        series_id = conn.execute(query).scalar_one_or_none()
        if series_id is None:
            now = to_us(window.start)
            _insert_ignoring_conflict(
                conn,
                series,
                [
                    {
                        "service_id": service_id,
                        "digest": digest,
                        "labels": json.dumps(window.labels, sort_keys=True),
                        "unit": str(window.unit),
                        "sample_rate_hz": window.sample_rate_hz,
                        "first_seen_us": now,
                        "last_seen_us": now,
                        "samples": 0,
                    }
                ],
                ["service_id", "digest"],
            )
            series_id = conn.execute(query).scalar_one()
            _insert_ignoring_conflict(
                conn,
                series_labels,
                [{"series_id": series_id, "key": k, "value": v} for k, v in window.labels.items()],
                ["series_id", "key"],
            )
        return series_id

    # -- reading ------------------------------------------------------------------------------

    def services(self) -> list[ServiceSummary]:
        query = (
            select(
                services.c.name,
                func.max(series.c.last_seen_us),
                func.sum(series.c.samples),
                func.count(series.c.id),
            )
            .join(series, series.c.service_id == services.c.id)
            .group_by(services.c.name)
            .order_by(services.c.name)
        )
        with self.engine.connect() as conn:
            return [
                ServiceSummary(name, from_us(last), int(total), int(count))
                for name, last, total, count in conn.execute(query)
            ]

    def hot_path_histograms(
        self,
        service: str,
        start: datetime,
        end: datetime,
        labels: dict[str, str] | None = None,
    ) -> dict[str, tuple[int | None, Histogram]]:
        """Per hot path: its budget (the latest one shipped) and the merged histogram of the
        calls in windows that start in [start, end). Whole hours come from hour rows, which
        outlive raw windows; the edges of the range need raw windows."""
        merged: dict[str, tuple[int | None, Histogram]] = {}
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            for row in _hot_path_rows(conn, service_id, to_us(start), to_us(end), labels):
                calls = _histogram(row.sum_ns, row.max_ns, row.buckets)
                budget = row.budget_ns
                previous = merged.get(row.name)
                if previous is not None:
                    calls = previous[1].merge(calls)
                    budget = budget if budget is not None else previous[0]
                merged[row.name] = (budget, calls)
        return merged

    def hot_path_functions(self, service: str, start: datetime, end: datetime) -> dict[str, str]:
        """Per hot path, the function it times ("qualname (filename)"), as last shipped in
        windows starting in [start, end)."""
        functions: dict[str, str] = {}
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            for row in _hot_path_rows(conn, service_id, to_us(start), to_us(end), None):
                if row.function is not None:
                    functions[row.name] = row.function
        return functions

    def hot_path_timeline(
        self,
        service: str,
        name: str,
        start: datetime,
        end: datetime,
        step_s: int,
        labels: dict[str, str] | None = None,
    ) -> list[tuple[datetime, Histogram]]:
        """The calls of one hot path merged per `step_s` bucket (by window start), for the
        latency-over-time chart. Buckets without calls are left out. Steps of whole hours
        read hour rows (and reach past raw retention); finer steps need raw windows."""
        step_us = step_s * 1_000_000
        merged: dict[int, Histogram] = {}
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            rows = _hot_path_rows(
                conn,
                service_id,
                to_us(start),
                to_us(end),
                labels,
                name=name,
                hours=step_us % HOUR_US == 0,
            )
            for row in rows:
                calls = _histogram(row.sum_ns, row.max_ns, row.buckets)
                bucket = row.at_us - row.at_us % step_us
                previous = merged.get(bucket)
                merged[bucket] = calls if previous is None else previous.merge(calls)
        return [(from_us(bucket), calls) for bucket, calls in sorted(merged.items())]

    def window_profiles(
        self,
        service: str,
        start: datetime,
        end: datetime,
        labels: dict[str, str] | None = None,
        limit: int = 120,
    ) -> list[Profile]:
        """Up to `limit` raw windows starting in [start, end), evenly spread, each as its own
        profile (for the window-to-window variability of a comparison). Windows past raw
        retention are gone: then fewer, or none."""
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            query = (
                select(windows.c.pairs)
                .where(
                    windows.c.start_us >= to_us(start),
                    windows.c.start_us < to_us(end),
                    windows.c.series_id.in_(_matching_series(conn, service_id, labels))
                    if labels
                    else windows.c.service_id == service_id,
                )
                .order_by(windows.c.start_us)
            )
            blobs = list(conn.execute(query).scalars())
            step = max(1, len(blobs) // limit)
            parts = [pairs_codec.decode(blob) for blob in blobs[::step][:limit]]
            stacks = self.interner.resolve(
                conn, sorted({int(i) for part in parts for i in part.ids.tolist()})
            )
        profiles = []
        for part in parts:
            profile = Profile()
            for stack_id, count in zip(part.ids.tolist(), part.counts.tolist(), strict=True):
                profile.samples[stacks[stack_id]] += count
            profiles.append(profile)
        return profiles

    def label_keys(self, service: str) -> list[str]:
        """The label keys the series of `service` carry, for "lines by" choices."""
        query = (
            select(series_labels.c.key)
            .distinct()
            .join(series, series.c.id == series_labels.c.series_id)
            .join(services, services.c.id == series.c.service_id)
            .where(services.c.name == service)
            .order_by(series_labels.c.key)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def profile(
        self, service: str, start: datetime, end: datetime, labels: dict[str, str] | None = None
    ) -> Profile:
        """The merged profile of the windows of `service` that start in [start, end)."""
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            blobs = self._pieces(conn, service_id, start, end, labels, "pairs")
            merged = pairs_codec.merge(pairs_codec.decode(blob) for blob in blobs)
            stacks = self.interner.resolve(conn, merged.ids.tolist())
            rate = conn.execute(
                select(func.max(series.c.sample_rate_hz)).where(series.c.service_id == service_id)
            ).scalar()
        profile = Profile(
            type=CPU, sample_rate_hz=rate, start=start, end=end, labels=dict(labels or {})
        )
        for stack_id, count in zip(merged.ids.tolist(), merged.counts.tolist(), strict=True):
            profile.samples[stacks[stack_id]] += count
        return profile

    def sample_count(
        self, service: str, start: datetime, end: datetime, labels: dict[str, str] | None = None
    ) -> int:
        """What `profile(...).total` would be, without decoding a single stack."""
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            return sum(self._pieces(conn, service_id, start, end, labels, "sample_count"))

    def timeline(
        self,
        service: str,
        start: datetime,
        end: datetime,
        labels: dict[str, str] | None = None,
        by: str | None = None,
    ) -> tuple[int, dict[str, dict[int, int]]]:
        """Samples per time step (minutes up to two days, else hours), one line per value of
        the label `by` (or one line, "all"). Returns (step in seconds, {line: {unix s: n}})."""
        step = MINUTE if end - start <= timedelta(days=2) else HOUR
        start_us, end_us = to_us(start), to_us(end)
        lines: dict[str, dict[int, int]] = {}
        with read_snapshot(self.engine) as conn:
            service_id = self._known_service(conn, service)
            series_rows = conn.execute(
                select(series.c.id, series.c.labels).where(series.c.service_id == service_id)
            ).all()
            wanted = set(_matching_series(conn, service_id, labels)) if labels else None
            line_of = {
                row.id: (json.loads(row.labels).get(by, "(none)") if by else "all")
                for row in series_rows
                if wanted is None or row.id in wanted
            }
            built_hours = self.availability(conn).built_until_us.get(HOUR, 0)
            ids = list(line_of)
            buckets = select(
                series_rollups.c.series_id,
                series_rollups.c.bucket_us,
                series_rollups.c.sample_count,
            ).where(
                series_rollups.c.series_id.in_(ids),
                series_rollups.c.bucket_us >= start_us,
                series_rollups.c.bucket_us < end_us,
            )
            if step == MINUTE:
                buckets = buckets.where(series_rollups.c.resolution_s == MINUTE)
            else:  # built hours, then the minutes after them
                buckets = buckets.where(
                    or_(
                        and_(
                            series_rollups.c.resolution_s == HOUR,
                            series_rollups.c.bucket_us < built_hours,
                        ),
                        and_(
                            series_rollups.c.resolution_s == MINUTE,
                            series_rollups.c.bucket_us >= built_hours,
                        ),
                    )
                )
            unrolled = select(
                windows.c.series_id, windows.c.start_us, windows.c.sample_count
            ).where(
                windows.c.series_id.in_(ids),
                windows.c.rolled_up.is_(False),
                windows.c.start_us >= start_us,
                windows.c.start_us < end_us,
            )
            for query in (buckets, unrolled):
                for series_id, at_us, count in conn.execute(query):
                    line = lines.setdefault(line_of[series_id], {})
                    at = at_us // 1_000_000 // step * step
                    line[at] = line.get(at, 0) + count
        return step, lines

    @staticmethod
    def _known_service(conn: Connection, name: str) -> int:
        service_id = conn.execute(
            select(services.c.id).where(services.c.name == name)
        ).scalar_one_or_none()
        if service_id is None:
            raise UnknownService(name)
        return service_id

    def _pieces(
        self,
        conn: Connection,
        service_id: int,
        start: datetime,
        end: datetime,
        labels: dict[str, str] | None,
        column: str,
    ) -> list:  # type: ignore[type-arg]
        """`column` ("pairs" or "sample_count") of every window and bucket the range needs."""
        if labels:
            series_ids = _matching_series(conn, service_id, labels)
            owner_filter = windows.c.series_id.in_(series_ids)
            rollups, owner = series_rollups, series_rollups.c.series_id.in_(series_ids)
        else:
            owner_filter = windows.c.service_id == service_id
            rollups, owner = service_rollups, service_rollups.c.service_id == service_id
        segments = plan(to_us(start), to_us(end), self.availability(conn))
        values = _read_windows(conn, owner_filter, segments, getattr(windows.c, column))
        rollup_ranges = [
            and_(
                rollups.c.resolution_s == s.resolution_s,
                rollups.c.bucket_us >= s.start_us,
                rollups.c.bucket_us < s.end_us,
            )
            for s in segments
            if s.resolution_s != RAW
        ]
        if rollup_ranges:
            rows = conn.execute(
                select(getattr(rollups.c, column)).where(owner, or_(*rollup_ranges))
            )
            values.extend(rows.scalars())
        return values

    def availability(self, conn: Connection, now: datetime | None = None) -> Availability:
        now_us = to_us(now or datetime.now(UTC))
        oldest = {
            res: now_us - int(age.total_seconds() * 1_000_000)
            for res, age in self.retention.by_resolution().items()
        }
        built = dict(
            conn.execute(
                select(rollup_progress.c.resolution_s, rollup_progress.c.built_until_us)
            ).all()
        )
        return Availability(oldest, {3600: built.get(3600, 0), 86400: built.get(86400, 0)})


def _hot_path_rows(
    conn: Connection,
    service_id: int,
    start_us: int,
    end_us: int,
    labels: dict[str, str] | None,
    *,
    name: str | None = None,
    hours: bool = True,
) -> list[Row[Any]]:
    """The hot-path rows that make up [start_us, end_us), oldest first: an hour row for each
    whole hour (with `hours`), raw rows for the rest and for any raw row not merged into its
    hour yet (server/storage/sql/hotpath_rollups.py), so nothing is counted twice or missed."""
    raw, hour = hot_path_calls.c, hot_path_hours.c
    first_hour = -(-start_us // HOUR_US) * HOUR_US
    last_hour = end_us - end_us % HOUR_US
    use_hours = hours and first_hour < last_hour
    columns = (raw.name, raw.budget_ns, raw.function, raw.sum_ns, raw.max_ns, raw.buckets)
    query = select(raw.start_us.label("at_us"), *columns).where(
        raw.service_id == service_id, raw.start_us >= start_us, raw.start_us < end_us
    )
    if use_hours:
        query = query.where(
            or_(
                raw.start_us < first_hour,
                raw.start_us >= last_hour,
                raw.rolled_up.is_(False),
            )
        )
    queries = [(query, raw)]
    if use_hours:
        columns = (hour.name, hour.budget_ns, hour.function, hour.sum_ns, hour.max_ns, hour.buckets)
        queries.append(
            (
                select(hour.hour_us.label("at_us"), *columns).where(
                    hour.service_id == service_id,
                    hour.hour_us >= first_hour,
                    hour.hour_us < last_hour,
                ),
                hour,
            )
        )
    series_ids = _matching_series(conn, service_id, labels) if labels else None
    rows: list[Row[Any]] = []
    for chosen, table in queries:
        if name is not None:
            chosen = chosen.where(table.name == name)
        if series_ids is not None:
            chosen = chosen.where(table.series_id.in_(series_ids))
        rows.extend(conn.execute(chosen))
    rows.sort(key=lambda row: row.at_us)
    return rows


def _hot_path_row(
    hot_path: wire.HotPathWindow, window_id: int, service_id: int, series_id: int, start_us: int
) -> dict[str, object]:
    calls = Histogram.from_wire(hot_path.histogram)
    return {
        "window_id": window_id,
        "service_id": service_id,
        "series_id": series_id,
        "name": hot_path.name,
        "start_us": start_us,
        "budget_ns": hot_path.budget_ns,
        "function": hot_path.function,
        "count": calls.count,
        "sum_ns": calls.sum,
        "max_ns": calls.max,
        "buckets": _encode_histogram(calls),
    }


def _window_exists(conn: Connection, key: str) -> bool:
    return (
        conn.execute(select(windows.c.id).where(windows.c.idempotency_key == key)).first()
        is not None
    )


def _insert_ignoring_conflict(conn: Connection, table, rows: list[dict], keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    if rows:
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert_(table).on_conflict_do_nothing(index_elements=keys), rows)


def _matching_series(conn: Connection, service_id: int, labels: dict[str, str]) -> list[int]:
    conditions = [
        exists().where(
            series_labels.c.series_id == series.c.id,
            series_labels.c.key == key,
            series_labels.c.value == value,
        )
        for key, value in labels.items()
    ]
    query = select(series.c.id).where(series.c.service_id == service_id, *conditions)
    return list(conn.execute(query).scalars())


def _read_windows(conn: Connection, owner_filter, segments, column) -> list:  # type: ignore[no-untyped-def]
    """Windows of the raw segments, plus windows not rolled up yet inside rollup segments."""
    raw = [s for s in segments if s.resolution_s == RAW]
    rolled = [s for s in segments if s.resolution_s != RAW]
    ranges = [and_(windows.c.start_us >= s.start_us, windows.c.start_us < s.end_us) for s in raw]
    ranges += [
        and_(
            windows.c.rolled_up.is_(False),
            windows.c.start_us >= s.start_us,
            windows.c.start_us < s.end_us,
        )
        for s in rolled
    ]
    if not ranges:
        return []
    return list(conn.execute(select(column).where(owner_filter, or_(*ranges))).scalars())
