"""The memory-capture store contract: on-demand memray captures, kept whole or not at all.

A capture is a row (its process, span, the target's pauses at attach and detach, the tool,
each function's held bytes over the capture) and three typed profiles (allocated bytes,
allocation count, bytes held at the end) stored as pieces of the service's series, so the
flame graphs, exports and roll-ups of memory types are those of every other type. Guarantees
every backend gives (`tests/test_storage_contract_captures.py`): the row and its three pieces
are written in one transaction (a failure leaves none of them); a capture's idempotency key
is unique per (tenant, service), and a capture put twice is stored once; reads stay inside one
tenant and return at most `limit` captures, the most recent ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hotpath.profiler.formats.memory_capture import HeldSeries, MemoryCapture
from hotpath.server.storage.profiles import Piece

MAX_READ = 200  # captures one read returns at most (the most recent)


def piece_key(capture_key: str, type_id: str) -> str:
    """The idempotency key of one of a capture's pieces: derived from the capture's, so the
    capture's key is its only identity (an agent's window keys cannot collide with it), and
    within the 128 characters the windows' column holds."""
    digest = hashlib.sha256(capture_key.encode()).hexdigest()[:40]
    return f"memory-capture:{digest}:{type_id}"


@dataclass(frozen=True)
class Capture:
    """What `put_capture` stores: the capture's row and its three pieces."""

    tenant: str
    service: str
    idempotency_key: str
    pid: int
    labels: Mapping[str, str]
    start: datetime
    end: datetime
    pause_attach_ms: float
    pause_detach_ms: float
    tool: str
    pieces: Sequence[Piece]
    functions: Sequence[HeldSeries]

    @classmethod
    def from_wire(cls, capture: MemoryCapture, tenant: str) -> Capture:
        """The capture as it came; its windows' own idempotency keys are replaced (see
        `piece_key`), its labels are those of its held-bytes window."""
        pieces = [
            dataclasses.replace(
                Piece.from_window(window, tenant),
                idempotency_key=piece_key(capture.idempotency_key, window.type),
            )
            for window in capture.windows
        ]
        return cls(
            tenant=tenant,
            service=capture.service,
            idempotency_key=capture.idempotency_key,
            pid=capture.pid,
            labels=dict(capture.window("held_bytes").labels),
            start=capture.start,
            end=capture.end,
            pause_attach_ms=capture.pause_attach_ms,
            pause_detach_ms=capture.pause_detach_ms,
            tool=capture.tool,
            pieces=pieces,
            functions=list(capture.functions),
        )


@dataclass(frozen=True)
class CaptureResult:
    capture_id: int  # the stored copy's id (the earlier one's for a duplicate)
    duplicate: bool


@dataclass(frozen=True)
class StoredCapture:
    """A capture as read back: what the leak ranking reads (`start`, `end`, `functions`)
    and what the pages show. `functions` is empty when the read did not ask for them."""

    id: int
    service: str
    pid: int
    labels: Mapping[str, str]
    start: datetime
    end: datetime
    pause_attach_ms: float
    pause_detach_ms: float
    tool: str
    held_bytes: int  # the sum of its functions' held bytes at the end
    function_count: int
    received: datetime
    functions: Sequence[HeldSeries] = ()

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


class CaptureStore(Protocol):
    def put_capture(self, capture: Capture) -> CaptureResult:
        """Store the capture's row and its pieces in one transaction, or recognise its key as
        a duplicate (nothing written). Raises as `ProfileStore.put` does for its pieces
        (`SeriesLimitExceeded`), storing nothing; `Conflict` when one of its pieces' keys is
        taken by something that is not this capture."""
        ...

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
        """The service's captures that start in [start, end) and carry every `labels` pair,
        the most recent `limit` of them (at most MAX_READ), oldest first; with their
        functions' series when `functions`. `UnknownService` when the tenant has no such
        service."""
        ...
