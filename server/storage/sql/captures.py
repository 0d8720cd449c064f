"""The SQL memory-capture store (`server/storage/captures.py` is its contract).

A capture's row and its three pieces go in one write transaction, the pieces through the
profile store's own writer (`PieceWriter.write`), so they are checked, interned and rolled
up like any window; the writer's caches learn only once the transaction has committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import zstandard
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.formats.memory_capture import HeldSeries
from hotpath.profiler.formats.window import MAX_INT64
from hotpath.server.storage.captures import MAX_READ, Capture, CaptureResult, StoredCapture
from hotpath.server.storage.errors import Conflict
from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.series import find_service, known_service, service_id_for
from hotpath.server.storage.sql.tables import memory_captures
from hotpath.server.storage.sql.timeplan import to_us
from hotpath.server.storage.sql.writing import Pending, PieceWriter


def _from_us(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def encode_functions(functions: list[HeldSeries]) -> bytes:
    rows = [f.model_dump(mode="json") for f in functions]
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(rows).encode())


def decode_functions(blob: bytes) -> list[HeldSeries]:
    rows = json.loads(zstandard.ZstdDecompressor().decompress(blob))
    # Checked when they came in: constructed, not validated again (a read of 200 captures
    # of 500 functions would otherwise validate 24 million points).
    return [
        HeldSeries.model_construct(**{**row, "points": [tuple(p) for p in row["points"]]})
        for row in rows
    ]


class SqlCaptureStore:
    def __init__(self, engine: Engine, writer: PieceWriter) -> None:
        self.engine = engine
        self.writer = writer

    def put_capture(self, capture: Capture) -> CaptureResult:
        pending = Pending()
        try:
            with write_transaction(self.engine) as conn:
                service_id = service_id_for(conn, capture.tenant, capture.service)
                earlier = _capture_id(conn, service_id, capture.idempotency_key)
                if earlier is not None:
                    return CaptureResult(earlier, True)
                for piece in capture.pieces:
                    if self.writer.write(conn, piece, pending).duplicate:
                        # Its key is derived from the capture's, which is new: someone else's.
                        raise Conflict(
                            f"the key of the capture's {piece.key.type.id} profile is taken "
                            "by another window: nothing was stored"
                        )
                capture_id = conn.execute(
                    insert(memory_captures).returning(memory_captures.c.id),
                    _row(capture, service_id),
                ).scalar_one()
        except IntegrityError:
            # Lost a race with the same capture arriving at another server: that copy stands.
            with self.engine.connect() as conn:
                service_id = find_service(conn, capture.tenant, capture.service)
                earlier = (
                    None
                    if service_id is None
                    else _capture_id(conn, service_id, capture.idempotency_key)
                )
            if earlier is not None:
                return CaptureResult(earlier, True)
            raise
        self.writer.publish(pending)
        return CaptureResult(capture_id, False)

    def captures(
        self,
        tenant: str,
        service: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = MAX_READ,
        functions: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> list[StoredCapture]:
        limit = max(0, min(limit, MAX_READ))
        c = memory_captures.c
        light = [col for col in memory_captures.columns if col.name != "functions"]
        wanted = dict(labels or {})
        with read_snapshot(self.engine) as conn:
            service_id = known_service(conn, tenant, service)
            query = (
                select(*light)
                .where(
                    c.service_id == service_id,
                    c.start_us >= to_us(start),
                    c.start_us < to_us(end),
                )
                .order_by(c.start_us.desc(), c.id.desc())
            )
            # Captures are few (on demand): a label filter reads the range's rows, without
            # their series, and keeps the matching ones.
            rows = conn.execute(query if wanted else query.limit(limit)).all()
            if wanted:
                rows = [r for r in rows if wanted.items() <= json.loads(r.labels).items()][:limit]
            series: dict[int, bytes] = {}
            if functions and rows:
                series = dict(
                    conn.execute(
                        select(c.id, c.functions).where(c.id.in_([r.id for r in rows]))
                    ).all()
                )
        return [
            _stored(row, service, decode_functions(series[row.id]) if row.id in series else ())
            for row in reversed(rows)
        ]


def _capture_id(conn: Connection, service_id: int, key: str) -> int | None:
    c = memory_captures.c
    return conn.execute(
        select(c.id).where(c.service_id == service_id, c.idempotency_key == key)
    ).scalar_one_or_none()


def _row(capture: Capture, service_id: int) -> dict[str, Any]:
    functions = list(capture.functions)
    return {
        "service_id": service_id,
        "idempotency_key": capture.idempotency_key,
        "pid": capture.pid,
        "labels": json.dumps(dict(capture.labels), sort_keys=True),
        "start_us": to_us(capture.start),
        "end_us": to_us(capture.end),
        "pause_attach_ms": capture.pause_attach_ms,
        "pause_detach_ms": capture.pause_detach_ms,
        "tool": capture.tool,
        "held_bytes": min(MAX_INT64, sum(f.held_bytes for f in functions)),
        "function_count": len(functions),
        "functions": encode_functions(functions),
        "received_us": to_us(datetime.now(UTC)),
    }


def _stored(row: Any, service: str, functions: list[HeldSeries] | tuple[()]) -> StoredCapture:
    return StoredCapture(
        id=row.id,
        service=service,
        pid=row.pid,
        labels=json.loads(row.labels),
        start=_from_us(row.start_us),
        end=_from_us(row.end_us),
        pause_attach_ms=row.pause_attach_ms,
        pause_detach_ms=row.pause_detach_ms,
        tool=row.tool,
        held_bytes=row.held_bytes,
        function_count=row.function_count,
        received=_from_us(row.received_us),
        functions=functions,
    )
