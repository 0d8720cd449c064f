"""The process-memory store contract: the RSS (and PSS, USS) an agent read from /proc at each
window's end, kept as a series per process (pid) of a service.

A point is written with its window, in the window's transaction (`Piece.memory`, put by
`ProfileStore.put`): a retried window adds no second point, a refused one none at all.
Reads are bounded whatever the range: at most `max_pids` processes (those seen last) and at
most `max_points` points each (averaged per equal step of time when there are more).
`tests/test_storage_contract_memory.py` runs on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

MAX_POINTS = 500  # per process per read: the trend test is O(n^2), a chart is a few hundred px
MAX_PIDS = 50
MAX_SERVICES = 1_000  # per `services_with_readings`: what one alert round judges


@dataclass(frozen=True)
class MemorySample:
    """One reading of one process, as the agent shipped it."""

    pid: int
    rss_bytes: int
    pss_bytes: int | None = None
    uss_bytes: int | None = None


@dataclass(frozen=True)
class MemoryPoint:
    at: datetime  # the window's end (the mean time of the points an averaged point stands for)
    rss_bytes: int
    pss_bytes: int | None
    uss_bytes: int | None


@dataclass(frozen=True)
class ProcessMemorySeries:
    pid: int
    points: list[MemoryPoint]  # oldest first
    latest: MemoryPoint  # the last reading in the range, never averaged
    readings: int  # how many readings the points stand for


class MemoryStore(Protocol):
    def memory(
        self,
        tenant: str,
        service: str,
        start: datetime,
        end: datetime,
        pid: int | None = None,
        max_points: int = MAX_POINTS,
        max_pids: int = MAX_PIDS,
    ) -> list[ProcessMemorySeries]:
        """The readings in [start, end) per pid (of `pid` only when given), the most recently
        seen `max_pids` pids, ordered by pid. `UnknownService` when the tenant has no such
        service; an empty list when it has no readings there."""
        ...

    def services_with_readings(
        self, since: datetime, limit: int = MAX_SERVICES
    ) -> list[tuple[str, str]]:
        """(tenant, service) of every service with a reading at or after `since`, across
        tenants (the RSS alerts judge them all), the most recently read first."""
        ...
