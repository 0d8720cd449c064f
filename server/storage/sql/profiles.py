"""The SQL `ProfileStore`: pieces written by `writing`, profiles read back here.

Reads follow `timeplan`: rollups for whole buckets, raw windows for the edges and for what is
not rolled up yet, all in one snapshot. A read without a label filter uses the rollups of
(service, type); a filtered one the rollups of the matching series. The catalog (services,
types, label keys, timeline) and the hot-path reads live in `catalog` and `hotpath_reads`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select

from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import Profile, ProfileType
from hotpath.server.storage.profiles import (
    HotPathHistograms,
    IngestResult,
    Limits,
    Piece,
    Retention,
    Selection,
    ServiceSummary,
    Timeline,
)
from hotpath.server.storage.sql import catalog, hotpath_reads
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.database import read_snapshot
from hotpath.server.storage.sql.interning import Interner
from hotpath.server.storage.sql.series import known_service, matching_series
from hotpath.server.storage.sql.tables import rollup_progress, series, service_rollups, windows
from hotpath.server.storage.sql.tables import series_rollups as series_rollups_table
from hotpath.server.storage.sql.timeplan import RAW, Availability, Segment, plan, to_us
from hotpath.server.storage.sql.writing import PieceWriter

Condition = ColumnElement[bool]


class SqlProfileStore:
    """Profiles and hot paths on SQLite or PostgreSQL (see `ProfileStore` for the contract)."""

    def __init__(
        self, engine: Engine, retention: Retention | None = None, limits: Limits | None = None
    ) -> None:
        self.engine = engine
        self.retention = retention or Retention()
        self.interner = Interner()
        self._writer = PieceWriter(engine, self.interner, limits)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------------------

    def put(self, piece: Piece) -> IngestResult:
        return self._writer.put(piece)

    @property
    def writer(self) -> PieceWriter:
        """The piece writer, for stores that write pieces with rows of their own (captures)."""
        return self._writer

    # -- profiles -----------------------------------------------------------------------------

    def profile(self, selection: Selection) -> Profile:
        with read_snapshot(self.engine) as conn:
            blobs, rate = self._pieces(conn, selection, "pairs")
            merged = pairs_codec.merge(pairs_codec.decode(blob) for blob in blobs)
            stacks = self.interner.resolve(conn, merged.ids.tolist())
        profile = Profile(
            type=selection.type,
            sample_rate_hz=rate,
            start=selection.start,
            end=selection.end,
            labels=dict(selection.labels),
        )
        for stack_id, count in zip(merged.ids.tolist(), merged.counts.tolist(), strict=True):
            profile.samples[stacks[stack_id]] += count
        return profile

    def sample_count(self, selection: Selection) -> int:
        with read_snapshot(self.engine) as conn:
            return sum(self._pieces(conn, selection, "sample_count")[0])

    def window_profiles(self, selection: Selection, limit: int = 120) -> list[Profile]:
        with read_snapshot(self.engine) as conn:
            service_id = known_service(conn, selection.tenant, selection.service)
            query = (
                select(windows.c.pairs)
                .where(
                    windows.c.start_us >= to_us(selection.start),
                    windows.c.start_us < to_us(selection.end),
                    *_windows_of(conn, service_id, selection),
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
            profile = Profile(type=selection.type)
            for stack_id, count in zip(part.ids.tolist(), part.counts.tolist(), strict=True):
                profile.samples[stacks[stack_id]] += count
            profiles.append(profile)
        return profiles

    # -- the catalog and hot paths --------------------------------------------------------------

    def services(self, tenant: str) -> list[ServiceSummary]:
        return catalog.services_of(self.engine, tenant)

    def profile_types(self, tenant: str, service: str) -> list[ProfileType]:
        return catalog.profile_types(self.engine, tenant, service)

    def label_keys(self, tenant: str, service: str, type: ProfileType | None = None) -> list[str]:
        return catalog.label_keys(self.engine, tenant, service, type)

    def timeline(self, selection: Selection, by: str | None = None) -> Timeline:
        return catalog.timeline(self.engine, selection, by)

    def hot_path_histograms(self, selection: Selection) -> HotPathHistograms:
        return hotpath_reads.histograms(self.engine, selection)

    def hot_path_functions(self, selection: Selection) -> dict[str, str]:
        return hotpath_reads.functions(self.engine, selection)

    def hot_path_timeline(
        self, selection: Selection, name: str, step_s: int
    ) -> list[tuple[datetime, Histogram]]:
        return hotpath_reads.timeline(self.engine, selection, name, step_s)

    # -- the plan -------------------------------------------------------------------------------

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

    def _pieces(
        self, conn: Connection, chosen: Selection, column: str
    ) -> tuple[list[Any], float | None]:
        """`column` ("pairs" or "sample_count") of every window and bucket the selection
        needs, and the sample rate of its series."""
        service_id = known_service(conn, chosen.tenant, chosen.service)
        type_id = chosen.type.id
        if chosen.labels:
            series_ids = matching_series(conn, service_id, type_id, chosen.labels)
            if not series_ids:
                return [], None
            owner_filter = [windows.c.series_id.in_(series_ids)]
            rollups = series_rollups_table
            owner = [rollups.c.series_id.in_(series_ids)]
            rate_filter = series.c.id.in_(series_ids)
        else:
            owner_filter = _windows_of(conn, service_id, chosen)
            rollups = service_rollups
            owner = [rollups.c.service_id == service_id, rollups.c.profile_type == type_id]
            rate_filter = and_(series.c.service_id == service_id, series.c.profile_type == type_id)
        segments = plan(to_us(chosen.start), to_us(chosen.end), self.availability(conn))
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
                select(getattr(rollups.c, column)).where(*owner, or_(*rollup_ranges))
            )
            values.extend(rows.scalars())
        rate = conn.execute(select(func.max(series.c.sample_rate_hz)).where(rate_filter)).scalar()
        return values, rate


def _windows_of(conn: Connection, service_id: int, chosen: Selection) -> list[Condition]:
    """Conditions on `windows` for the selection's series."""
    if chosen.labels:
        return [
            windows.c.series_id.in_(
                matching_series(conn, service_id, chosen.type.id, chosen.labels)
            )
        ]
    return [windows.c.service_id == service_id, windows.c.profile_type == chosen.type.id]


def _read_windows(
    conn: Connection, owner_filter: list[Condition], segments: list[Segment], column: Any
) -> list[Any]:
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
    return list(conn.execute(select(column).where(*owner_filter, or_(*ranges))).scalars())
