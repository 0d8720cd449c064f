"""Putting a piece: its series, new frames and stacks, its (stack id, count) pairs and its
hot-path calls, in one transaction or not at all.

The idempotency key is unique per service (the database enforces it), so a retried piece is
stored once even when two servers receive it at the same time. Service, series, frame and
stack ids are cached by content, and published only once their transaction has committed.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotpath.server.storage.profiles import HotPathCalls, IngestResult, Piece
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.hotpath_rollups import encode as encode_histogram
from hotpath.server.storage.sql.interning import LRU, Interner, Learned
from hotpath.server.storage.sql.series import (
    find_service,
    series_digest,
    series_id_for,
    service_id_for,
)
from hotpath.server.storage.sql.tables import hot_path_calls, series, windows
from hotpath.server.storage.sql.timeplan import to_us


class PieceWriter:
    def __init__(self, engine: Engine, interner: Interner) -> None:
        self.engine = engine
        self.interner = interner
        self._service_ids: LRU[tuple[str, str], int] = LRU(100_000)
        self._series_ids: LRU[tuple[int, bytes], int] = LRU(1_000_000)

    def put(self, piece: Piece) -> IngestResult:
        key = piece.key
        samples = piece.total
        digest = series_digest(key.type.id, key.labels)
        learned = Learned()
        service_key = (key.tenant, key.service)
        try:
            with write_transaction(self.engine) as conn:
                service_id = self._service_ids.get(service_key)
                if service_id is None:
                    service_id = service_id_for(conn, key.tenant, key.service)
                if _window_exists(conn, service_id, piece.idempotency_key):
                    return IngestResult(None, True, samples)
                start_us, end_us = to_us(piece.start), to_us(piece.end)
                series_id = self._series_ids.get((service_id, digest))
                if series_id is None:
                    series_id = series_id_for(
                        conn,
                        service_id,
                        digest,
                        key.type.id,
                        key.labels,
                        piece.sample_rate_hz,
                        start_us,
                    )
                stack_ids = self.interner.intern(conn, piece.frames, piece.stacks, learned)
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
                if piece.hot_paths:
                    conn.execute(
                        insert(hot_path_calls),
                        [
                            _hot_path_row(h, window_id, service_id, series_id, start_us)
                            for h in piece.hot_paths
                        ],
                    )
                _touch_series(conn, series_id, samples, end_us)
        except IntegrityError:
            # Lost a race with a concurrent insert of the same key: that copy is the one stored.
            with self.engine.connect() as conn:
                service_id = find_service(conn, *service_key)
                if service_id is not None and _window_exists(
                    conn, service_id, piece.idempotency_key
                ):
                    return IngestResult(None, True, samples)
            raise
        # Ids are cached only once committed: an id from a rolled-back insert must not be reused.
        self.interner.publish(learned)
        self._service_ids.put_many([(service_key, service_id)])
        self._series_ids.put_many([((service_id, digest), series_id)])
        return IngestResult(window_id, False, samples)


def _touch_series(conn: Connection, series_id: int, samples: int, end_us: int) -> None:
    latest = func.max if conn.dialect.name == "sqlite" else func.greatest
    conn.execute(
        update(series)
        .where(series.c.id == series_id)
        .values(
            samples=series.c.samples + samples,
            last_seen_us=latest(series.c.last_seen_us, end_us),
        )
    )


def _window_exists(conn: Connection, service_id: int, key: str) -> bool:
    query = select(windows.c.id).where(
        windows.c.service_id == service_id, windows.c.idempotency_key == key
    )
    return conn.execute(query).first() is not None


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
