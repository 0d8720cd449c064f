"""The process-memory store's contract (`server/storage/memory.py`) on every backend: readings
are written with their window (duplicates and refused windows add none), read per pid within
one tenant, and bounded in points and pids."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.errors import HotPathLimitExceeded
from hotpath.server.storage.memory import MemorySample
from hotpath.server.storage.profiles import (
    HotPathCalls,
    Limits,
    Piece,
    SeriesKey,
    UnknownService,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MB = 1024 * 1024


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url, limits=Limits(hot_paths_per_service=1))
    yield opened
    opened.close()


def reading(
    end: datetime,
    sample: MemorySample | None,
    *,
    tenant: str = "default",
    service: str = "svc",
    key: str | None = None,
    stacks: bool = False,
) -> Piece:
    """A window that may carry no samples at all, only the process's memory."""
    return Piece(
        key=SeriesKey(tenant, service, CPU, {"pid": str(sample.pid if sample else 0)}),
        start=end - timedelta(seconds=10),
        end=end,
        sample_rate_hz=100,
        frames=[("main", "app.py", 1)] if stacks else [],
        stacks=[[0]] if stacks else [],
        counts=[3] if stacks else [],
        idempotency_key=key or uuid.uuid4().hex,
        memory=sample,
    )


def test_readings_come_back_per_pid_in_order_with_the_latest(storage: Storage) -> None:
    store = storage.profiles
    for i in range(5):
        at = T0 + timedelta(seconds=10 * i)
        store.put(reading(at, MemorySample(4242, (100 + i) * MB, (90 + i) * MB, (80 + i) * MB)))
        store.put(reading(at, MemorySample(7, 50 * MB), stacks=True))  # statm only: no PSS/USS
    store.put(reading(T0, None))  # an old agent's window: no reading
    found = storage.memory.memory(
        "default", "svc", T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    )
    assert [s.pid for s in found] == [7, 4242]
    steady, growing = found
    assert [p.rss_bytes for p in growing.points] == [(100 + i) * MB for i in range(5)]
    assert [p.at for p in growing.points] == [T0 + timedelta(seconds=10 * i) for i in range(5)]
    assert growing.latest.uss_bytes == 84 * MB and growing.latest.pss_bytes == 94 * MB
    assert growing.readings == 5
    assert steady.latest.pss_bytes is None and steady.latest.uss_bytes is None
    # One pid, and a range that is half-open at its end.
    only = storage.memory.memory("default", "svc", T0, T0 + timedelta(seconds=40), pid=4242)
    assert [s.pid for s in only] == [4242] and only[0].readings == 4


def test_a_duplicate_window_adds_no_reading_and_a_refused_one_none_at_all(
    storage: Storage,
) -> None:
    store = storage.profiles
    first = reading(T0, MemorySample(1, 10 * MB), key="same-key-1")
    assert not store.put(first).duplicate
    assert store.put(dataclasses.replace(first, memory=MemorySample(1, 99 * MB))).duplicate
    # The service allows one hot-path name: a window bringing two is refused whole.
    hot = [HotPathCalls(name, Histogram()) for name in ("a", "b")]
    refused = dataclasses.replace(
        reading(T0 + timedelta(seconds=10), MemorySample(1, 20 * MB)), hot_paths=hot
    )
    with pytest.raises(HotPathLimitExceeded):
        store.put(refused)
    (series,) = storage.memory.memory("default", "svc", T0 - timedelta(hours=1), T0 + timedelta(1))
    assert [p.rss_bytes for p in series.points] == [10 * MB]


def test_readings_stay_inside_their_tenant(storage: Storage) -> None:
    storage.profiles.put(reading(T0, MemorySample(5, MB), tenant="alpha"))
    storage.profiles.put(reading(T0, MemorySample(6, 2 * MB), tenant="beta"))
    span = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert [s.pid for s in storage.memory.memory("alpha", "svc", *span)] == [5]
    with pytest.raises(UnknownService):
        storage.memory.memory("gamma", "svc", *span)
    assert (
        storage.memory.memory("alpha", "svc", T0 + timedelta(hours=2), T0 + timedelta(hours=3))
        == []
    )


def test_long_ranges_are_averaged_to_at_most_max_points_and_pids_are_capped(
    storage: Storage,
) -> None:
    store = storage.profiles
    for i in range(100):  # 100 readings rising by 1 MB each
        store.put(reading(T0 + timedelta(seconds=10 * i), MemorySample(1, (100 + i) * MB)))
    for pid in (2, 3, 4):  # seen later than pid 1, pid 4 last
        store.put(reading(T0 + timedelta(seconds=1000 + pid), MemorySample(pid, MB)))
    span = (T0, T0 + timedelta(hours=1))
    (thin,) = storage.memory.memory("default", "svc", *span, pid=1, max_points=10)
    assert 1 <= len(thin.points) <= 10 and thin.readings == 100
    rss = [p.rss_bytes for p in thin.points]
    assert rss == sorted(rss) and rss[0] < 110 * MB and rss[-1] > 190 * MB
    assert thin.latest.rss_bytes == 199 * MB  # the last reading itself, never averaged
    assert thin.points[0].at >= T0 and thin.points[-1].at <= T0 + timedelta(seconds=990)
    capped = storage.memory.memory("default", "svc", *span, max_pids=2)
    assert [s.pid for s in capped] == [3, 4]


def test_readings_expire_with_raw_retention(storage: Storage) -> None:
    now = datetime.now(UTC)
    storage.profiles.put(reading(now - timedelta(days=8), MemorySample(1, MB)))
    storage.profiles.put(reading(now - timedelta(minutes=1), MemorySample(1, 2 * MB)))
    storage.upkeep.enforce_retention()
    (series,) = storage.memory.memory("default", "svc", now - timedelta(days=30), now)
    assert [p.rss_bytes for p in series.points] == [2 * MB]


def test_services_with_recent_readings_are_listed_across_tenants(storage: Storage) -> None:
    storage.profiles.put(reading(T0, MemorySample(1, MB), tenant="alpha", service="old"))
    storage.profiles.put(reading(T0 + timedelta(minutes=5), MemorySample(1, MB), tenant="alpha"))
    storage.profiles.put(reading(T0 + timedelta(minutes=6), MemorySample(2, MB), tenant="beta"))
    storage.profiles.put(reading(T0 + timedelta(minutes=7), None, tenant="gamma"))  # no reading
    since = T0 + timedelta(minutes=1)
    assert storage.memory.services_with_readings(since) == [("beta", "svc"), ("alpha", "svc")]
    assert storage.memory.services_with_readings(since, limit=1) == [("beta", "svc")]
