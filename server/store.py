"""Storing windows of stacks and reading merged profiles back, through SQLAlchemy Core.

A window is written in one transaction or not at all; its idempotency key is unique, so a
retried window (same key) is stored once even when two servers receive it at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import zstandard
from sqlalchemy import Engine, and_, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from profiler.formats import collapsed
from profiler.model import Profile, Unit, merge
from server.tables import services, window_labels, windows


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
    windows: int


@dataclass(frozen=True)
class ProfileResult:
    profile: Profile
    windows: int


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_us(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ingest(self, service: str, idempotency_key: str, profile: Profile) -> IngestResult:
        if profile.start is None or profile.end is None or profile.sample_rate_hz is None:
            raise ValueError("a stored window needs its start, end and sample rate")
        samples = profile.total
        with self.engine.connect() as conn:
            if self._window_id(conn, idempotency_key) is not None:
                return IngestResult(None, True, samples)
        service_id = self._service_id(service, create=True)
        assert service_id is not None
        payload = zstandard.ZstdCompressor(level=3).compress(collapsed.dumps(profile).encode())
        try:
            with self.engine.begin() as conn:
                window_id = conn.execute(
                    insert(windows).returning(windows.c.id),
                    {
                        "service_id": service_id,
                        "idempotency_key": idempotency_key,
                        "start_us": to_us(profile.start),
                        "end_us": to_us(profile.end),
                        "received_us": to_us(datetime.now(UTC)),
                        "unit": str(profile.unit),
                        "sample_rate_hz": profile.sample_rate_hz,
                        "sample_count": samples,
                        "stack_count": len(profile.samples),
                        "payload": payload,
                    },
                ).scalar_one()
                if profile.labels:
                    conn.execute(
                        insert(window_labels),
                        [
                            {"window_id": window_id, "key": k, "value": v}
                            for k, v in profile.labels.items()
                        ],
                    )
        except IntegrityError:
            # Lost a race with a concurrent insert of the same key: that copy is the one stored.
            with self.engine.connect() as conn:
                if self._window_id(conn, idempotency_key) is not None:
                    return IngestResult(None, True, samples)
            raise
        return IngestResult(window_id, False, samples)

    def services(self) -> list[ServiceSummary]:
        query = (
            select(
                services.c.name,
                func.max(windows.c.end_us),
                func.sum(windows.c.sample_count),
                func.count(windows.c.id),
            )
            .join(windows, windows.c.service_id == services.c.id)
            .group_by(services.c.name)
            .order_by(services.c.name)
        )
        with self.engine.connect() as conn:
            return [
                ServiceSummary(name, from_us(last), int(total), int(count))
                for name, last, total, count in conn.execute(query)
            ]

    def profile(
        self, service: str, start: datetime, end: datetime, labels: dict[str, str] | None = None
    ) -> ProfileResult:
        """The merged profile of the windows of `service` that overlap [start, end)."""
        service_id = self._service_id(service, create=False)
        if service_id is None:
            raise UnknownService(service)
        conditions = [
            windows.c.service_id == service_id,
            windows.c.start_us < to_us(end),
            windows.c.end_us > to_us(start),
        ]
        for key, value in (labels or {}).items():
            conditions.append(
                exists().where(
                    window_labels.c.window_id == windows.c.id,
                    window_labels.c.key == key,
                    window_labels.c.value == value,
                )
            )
        query = select(
            windows.c.unit,
            windows.c.sample_rate_hz,
            windows.c.start_us,
            windows.c.end_us,
            windows.c.payload,
        ).where(and_(*conditions))
        decompressor = zstandard.ZstdDecompressor()
        parts: list[Profile] = []
        with self.engine.connect() as conn:
            for unit, rate, start_us, end_us, payload in conn.execute(query):
                part = Profile(
                    unit=Unit(unit),
                    sample_rate_hz=rate,
                    start=from_us(start_us),
                    end=from_us(end_us),
                )
                collapsed.loads(decompressor.decompress(payload).decode(), part)
                parts.append(part)
        merged = merge(parts)
        merged.labels = dict(labels or {})
        return ProfileResult(merged, len(parts))

    def _service_id(self, name: str, *, create: bool) -> int | None:
        query = select(services.c.id).where(services.c.name == name)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        if found is not None or not create:
            return found
        try:
            with self.engine.begin() as conn:
                return conn.execute(
                    insert(services).returning(services.c.id), {"name": name}
                ).scalar_one()
        except IntegrityError:  # another server created it first
            with self.engine.connect() as conn:
                return conn.execute(query).scalar_one()

    @staticmethod
    def _window_id(conn, key: str) -> int | None:  # type: ignore[no-untyped-def]
        return conn.execute(
            select(windows.c.id).where(windows.c.idempotency_key == key)
        ).scalar_one_or_none()
