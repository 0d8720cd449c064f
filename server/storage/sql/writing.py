"""Putting a piece: its series, new frames and stacks, its (stack id, count) pairs and its
hot-path calls, in one transaction or not at all.

The idempotency key is unique per service (the database enforces it), so a retried piece is
stored once even when two servers receive it at the same time. Service, series, frame and
stack ids are cached by content, and published only once their transaction has committed.
A new series or hot-path name is checked against the service's `Limits` (cardinality.py)
before anything else is inserted; known ones cost no check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotpath.server.storage.errors import HotPathLimitExceeded, SeriesLimitExceeded
from hotpath.server.storage.profiles import HotPathCalls, IngestResult, Limits, Piece
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.cardinality import HotPathNames, SeriesRefusals
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.hotpath_rollups import encode as encode_histogram
from hotpath.server.storage.sql.interning import LRU, Interner, Learned
from hotpath.server.storage.sql.series import (
    find_service,
    series_digest,
    series_id_for,
    service_id_for,
)
from hotpath.server.storage.sql.tables import hot_path_calls, process_memory, series, windows
from hotpath.server.storage.sql.timeplan import to_us


@dataclass
class Pending:
    """Ids learned in an open transaction, published once it commits."""

    learned: Learned = field(default_factory=Learned)
    names: dict[tuple[int, str], int] = field(default_factory=dict)
    service_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    series_ids: dict[tuple[int, bytes], int] = field(default_factory=dict)


class PieceWriter:
    def __init__(self, engine: Engine, interner: Interner, limits: Limits | None = None) -> None:
        self.engine = engine
        self.interner = interner
        self.limits = limits or Limits()
        self._names = HotPathNames(self.limits)
        self._refusals = SeriesRefusals(self.limits)
        self._service_ids: LRU[tuple[str, str], int] = LRU(100_000)
        self._series_ids: LRU[tuple[int, bytes], int] = LRU(1_000_000)

    def put(self, piece: Piece) -> IngestResult:
        pending = Pending()
        service_key = (piece.key.tenant, piece.key.service)
        try:
            with write_transaction(self.engine) as conn:
                result = self.write(conn, piece, pending)
        except IntegrityError:
            # Lost a race with a concurrent insert of the same key: that copy is the one stored.
            with self.engine.connect() as conn:
                service_id = find_service(conn, *service_key)
                if service_id is not None and _window_exists(
                    conn, service_id, piece.idempotency_key
                ):
                    return IngestResult(None, True, piece.total)
            raise
        self.publish(pending)
        return result

    def write(self, conn: Connection, piece: Piece, pending: Pending) -> IngestResult:
        """Write the piece inside the caller's transaction (a memory capture writes three
        pieces and its own row in one); what it learns goes to `pending`, for `publish` once
        that transaction has committed."""
        key = piece.key
        samples = piece.total
        digest = series_digest(key.type.id, key.labels)
        hot_paths = piece.hot_paths
        service_key = (key.tenant, key.service)
        now_us = to_us(datetime.now(UTC))  # arrival, for the limits' active counts
        service_id = self._service_ids.get(service_key) or pending.service_ids.get(service_key)
        if service_id is None:
            service_id = service_id_for(conn, key.tenant, key.service)
        pending.service_ids[service_key] = service_id
        if _window_exists(conn, service_id, piece.idempotency_key):
            return IngestResult(None, True, samples)
        start_us, end_us = to_us(piece.start), to_us(piece.end)
        series_id = self._series_ids.get((service_id, digest))
        if series_id is None:
            series_id = self._series_id(conn, service_id, piece, digest, now_us)
        pending.series_ids[(service_id, digest)] = series_id
        if hot_paths:
            refused, active = self._names.admit(
                conn,
                service_id,
                [h.name for h in hot_paths],
                now_us,
                pending.names,
            )
            if refused:  # nothing of the window is stored (the transaction rolls back)
                raise HotPathLimitExceeded(
                    key.service, refused, active, self.limits.hot_paths_per_service
                )
        stack_ids = self.interner.intern(conn, piece.frames, piece.stacks, pending.learned)
        pairs = pairs_codec.from_lists(stack_ids, piece.counts)
        window_id = conn.execute(
            insert(windows).returning(windows.c.id),
            {
                "service_id": service_id,
                "series_id": series_id,
                "profile_type": key.type.id,
                "idempotency_key": piece.idempotency_key,
                "start_us": start_us,
                "end_us": end_us,
                "sample_count": samples,
                "rolled_up": False,
                "pairs": pairs_codec.encode(pairs),
            },
        ).scalar_one()
        if hot_paths:
            conn.execute(
                insert(hot_path_calls),
                [_hot_path_row(h, window_id, service_id, series_id, start_us) for h in hot_paths],
            )
        if piece.memory is not None:  # committed with its window or not at all
            conn.execute(insert(process_memory), _memory_row(piece, service_id, end_us))
        _touch_series(conn, series_id, samples, end_us, now_us)
        return IngestResult(window_id, False, samples)

    def publish(self, pending: Pending) -> None:
        """Cache what a committed transaction learned: an id from a rolled-back insert must
        not be reused."""
        self.interner.publish(pending.learned)
        self._names.publish(pending.names)
        self._service_ids.put_many(pending.service_ids.items())
        self._series_ids.put_many(pending.series_ids.items())

    def _series_id(
        self, conn: Connection, service_id: int, piece: Piece, digest: bytes, now_us: int
    ) -> int:
        """A series not cached: found, or made if the service has room (remembered when not)."""
        self._refusals.check(service_id, digest, now_us)
        try:
            return series_id_for(
                conn,
                service_id,
                piece.key,
                digest,
                piece.sample_rate_hz,
                to_us(piece.start),
                self.limits,
                now_us,
            )
        except SeriesLimitExceeded as refused:
            self._refusals.note(service_id, digest, refused, now_us)
            raise


def _touch_series(conn: Connection, series_id: int, samples: int, end_us: int, now_us: int) -> None:
    latest = func.max if conn.dialect.name == "sqlite" else func.greatest
    conn.execute(
        update(series)
        .where(series.c.id == series_id)
        .values(
            samples=series.c.samples + samples,
            last_seen_us=latest(series.c.last_seen_us, end_us),
            arrived_us=now_us,
        )
    )


def _window_exists(conn: Connection, service_id: int, key: str) -> bool:
    query = select(windows.c.id).where(
        windows.c.service_id == service_id, windows.c.idempotency_key == key
    )
    return conn.execute(query).first() is not None


def _memory_row(piece: Piece, service_id: int, end_us: int) -> dict[str, object]:
    memory = piece.memory
    assert memory is not None
    return {
        "service_id": service_id,
        "pid": memory.pid,
        "t_us": end_us,
        "rss_bytes": memory.rss_bytes,
        "pss_bytes": memory.pss_bytes,
        "uss_bytes": memory.uss_bytes,
    }


def _hot_path_row(
    hot_path: HotPathCalls, window_id: int, service_id: int, series_id: int, start_us: int
) -> dict[str, object]:
    calls = hot_path.calls
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
        "buckets": encode_histogram(calls),
    }
