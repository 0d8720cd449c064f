"""The profile storage contract (`ProfileStore`), run on every backend (SQLite, PostgreSQL).

Only the contract is used here (and the upkeep part's roll-up): a new backend passes this
file or is not done. Series are keyed by (tenant, service, type, labels); types are never
merged, tenants never mixed, idempotency keys are per (tenant, service).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hotpath.profiler.formats import collapsed
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import ALLOC_BYTES, CPU, WALL, ProfileType
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.profiles import (
    DEFAULT_TENANT,
    HotPathCalls,
    Piece,
    Selection,
    SeriesKey,
    UnknownService,
)

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR_AGO = NOW - timedelta(hours=1)


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url)
    yield opened
    opened.close()


def piece(
    stacks: str,
    *,
    service: str = "svc",
    type: ProfileType = CPU,
    labels: dict[str, str] | None = None,
    start: datetime = NOW - timedelta(minutes=5),
    tenant: str = DEFAULT_TENANT,
    key: str | None = None,
    hot_paths: list[HotPathCalls] | None = None,
) -> Piece:
    profile = collapsed.loads(stacks)
    profile.type = type
    made = Piece.from_profile(
        profile,
        SeriesKey(tenant, service, type, labels or {}),
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100.0,
        idempotency_key=key or uuid.uuid4().hex,
    )
    if hot_paths:
        made = Piece(**{**vars(made), "hot_paths": hot_paths})
    return made


def select(
    service: str = "svc",
    type: ProfileType = CPU,
    start: datetime = HOUR_AGO,
    end: datetime = NOW,
    labels: dict[str, str] | None = None,
    tenant: str = DEFAULT_TENANT,
) -> Selection:
    return Selection(tenant, service, type, start, end, labels or {})


def folded(stacks: Counter) -> dict[str, int]:  # type: ignore[type-arg]
    return {";".join(f.name for f in stack): n for stack, n in stacks.items()}


def roll_up(storage: Storage) -> None:
    while storage.upkeep.roll_up():
        pass


def calls(*durations_ns: int) -> Histogram:
    histogram = Histogram()
    for duration in durations_ns:
        histogram.record(duration)
    return histogram


def test_put_then_select_merge_gives_back_the_stacks_and_totals(storage: Storage) -> None:
    store = storage.profiles
    first = store.put(piece("main;a;b 3\nmain;c 2\n"))
    second = store.put(piece("main;a;b 4\n", start=NOW - timedelta(minutes=3)))
    assert (first.duplicate, first.samples, second.samples) == (False, 5, 4)
    profile = store.profile(select())
    assert folded(profile.samples) == {"main;a;b": 7, "main;c": 2}
    assert profile.type == CPU and profile.sample_rate_hz == 100.0
    assert store.sample_count(select()) == 9
    # The range is by piece start: a piece starting at the end is outside.
    assert store.sample_count(select(end=NOW - timedelta(minutes=4))) == 5


def test_types_are_never_merged(storage: Storage) -> None:
    store = storage.profiles
    store.put(piece("main;compute 90\nmain;sleep 10\n"))
    store.put(piece("main;compute 50\nmain;sleep 50\n", type=WALL, labels={"pid": "1"}))
    store.put(piece("main;alloc 4096\n", type=ALLOC_BYTES))
    cpu, wall = store.profile(select()), store.profile(select(type=WALL))
    assert folded(cpu.samples) == {"main;compute": 90, "main;sleep": 10}
    assert folded(wall.samples) == {"main;compute": 50, "main;sleep": 50}
    assert wall.type == WALL and cpu.type == CPU
    memory = store.profile(select(type=ALLOC_BYTES))
    assert memory.total == 4096 and str(memory.unit) == "bytes"
    assert store.profile_types(DEFAULT_TENANT, "svc") == [CPU, WALL, ALLOC_BYTES]
    (summary,) = store.services(DEFAULT_TENANT)
    assert [(t.type, t.total) for t in summary.types] == [
        (CPU, 100),
        (WALL, 100),
        (ALLOC_BYTES, 4096),
    ]
    assert summary.samples == 100  # the CPU figure, not a sum of units
    # Label keys per type: only the wall series has pid.
    assert store.label_keys(DEFAULT_TENANT, "svc", WALL) == ["pid"]
    assert store.label_keys(DEFAULT_TENANT, "svc", CPU) == []


def test_types_stay_apart_in_rollups(storage: Storage) -> None:
    """Minute, hour and day roll-ups are per type: a range answered from them still separates
    a cpu and a wall series of one service."""
    store = storage.profiles
    two_days_ago = NOW - timedelta(days=2, hours=3)
    for hours in range(0, 30, 3):
        start = two_days_ago + timedelta(hours=hours)
        store.put(piece("main;work 10\n", start=start))
        store.put(piece("main;work 6\nmain;idle 14\n", type=WALL, start=start))
    roll_up(storage)
    week = select(start=NOW - timedelta(days=7))
    assert folded(store.profile(week).samples) == {"main;work": 100}
    assert folded(store.profile(select(type=WALL, start=week.start)).samples) == {
        "main;work": 60,
        "main;idle": 140,
    }
    assert store.sample_count(select(type=WALL, start=week.start)) == 200


def test_tenants_are_never_mixed(storage: Storage) -> None:
    store = storage.profiles
    store.put(piece("main;ours 5\n", tenant="acme"))
    store.put(piece("main;theirs 7\n", tenant="globex"))
    assert folded(store.profile(select(tenant="acme")).samples) == {"main;ours": 5}
    assert folded(store.profile(select(tenant="globex")).samples) == {"main;theirs": 7}
    assert [s.name for s in store.services("acme")] == ["svc"]
    assert store.services(DEFAULT_TENANT) == []
    with pytest.raises(UnknownService):
        store.profile(select(tenant=DEFAULT_TENANT))
    with pytest.raises(UnknownService):
        store.hot_path_histograms(select(tenant="initech"))


def test_idempotency_is_per_tenant_and_service(storage: Storage) -> None:
    store = storage.profiles
    assert not store.put(piece("main;a 1\n", key="window-0001")).duplicate
    assert store.put(piece("main;a 1\n", key="window-0001")).duplicate
    assert not store.put(piece("main;a 1\n", key="window-0001", service="other")).duplicate
    assert not store.put(piece("main;a 1\n", key="window-0001", tenant="acme")).duplicate
    # Same key, same service, another type: still the same window, stored once.
    assert store.put(piece("main;a 1\n", key="window-0001", type=WALL)).duplicate
    assert store.sample_count(select()) == 1
    assert store.sample_count(select(service="other")) == 1
    assert store.sample_count(select(tenant="acme")) == 1


def test_label_filters_select_series(storage: Storage) -> None:
    store = storage.profiles
    store.put(piece("main;a 1\n", labels={"pid": "1", "version": "1.0"}))
    store.put(piece("main;b 2\n", labels={"pid": "2", "version": "1.0"}))
    store.put(piece("main;c 4\n", labels={"pid": "3", "version": "2.0"}))
    assert store.sample_count(select(labels={"version": "1.0"})) == 3
    assert folded(store.profile(select(labels={"pid": "3"})).samples) == {"main;c": 4}
    assert store.sample_count(select(labels={"pid": "1", "version": "2.0"})) == 0
    assert store.sample_count(select(labels={"nope": "x"})) == 0
    assert store.label_keys(DEFAULT_TENANT, "svc") == ["pid", "version"]


def test_ranges_that_cross_minute_and_hour_rollups(storage: Storage) -> None:
    """Pieces every 7 minutes over 30 hours, read over ranges with raw edges, minutes and
    hours in them, before and after the roll-up: always the sum of the pieces inside."""
    store = storage.profiles
    origin = (NOW - timedelta(hours=31)).replace(minute=0, second=0)
    starts = [origin + timedelta(minutes=7 * i, seconds=13) for i in range(30 * 60 // 7)]
    for i, start in enumerate(starts):
        labels = {"pid": str(i % 2)}
        store.put(piece(f"main;f{i % 5} {1 + i % 3}\n", start=start, labels=labels))
    ranges = [
        (origin + timedelta(minutes=1, seconds=30), origin + timedelta(hours=25, minutes=7)),
        (origin + timedelta(hours=2, seconds=1), origin + timedelta(hours=3, minutes=59)),
        (origin, NOW),
    ]

    def expected(start: datetime, end: datetime, pid: str | None) -> int:
        return sum(
            1 + i % 3
            for i, s in enumerate(starts)
            if start <= s < end and (pid is None or str(i % 2) == pid)
        )

    for stage in ("raw", "rolled up"):
        for start, end in ranges:
            for pid in (None, "1"):
                labels = {"pid": pid} if pid else {}
                chosen = select(start=start, end=end, labels=labels)
                assert store.sample_count(chosen) == expected(start, end, pid), (stage, start)
                assert store.profile(chosen).total == expected(start, end, pid), (stage, start)
        roll_up(storage)


def test_timeline_is_per_type_and_per_label(storage: Storage) -> None:
    store = storage.profiles
    minute = (NOW - timedelta(minutes=30)).replace(second=0)
    store.put(piece("main;a 3\n", start=minute, labels={"pid": "1"}))
    store.put(piece("main;a 4\n", start=minute, labels={"pid": "2"}))
    store.put(piece("main;a 50\n", start=minute, type=WALL, labels={"pid": "1"}))
    at = int(minute.timestamp())
    for stage in ("raw", "rolled up"):
        cpu = store.timeline(select())
        assert cpu.step_s == 60 and cpu.lines == {"all": {at: 7}}, stage
        assert store.timeline(select(), by="pid").lines == {"1": {at: 3}, "2": {at: 4}}
        assert store.timeline(select(type=WALL)).lines == {"all": {at: 50}}
        roll_up(storage)


def test_hot_path_histograms_functions_and_timeline(storage: Storage) -> None:
    store = storage.profiles
    start = (NOW - timedelta(minutes=20)).replace(second=0)
    quote = [HotPathCalls("quote", calls(1_000_000, 3_000_000), 2_000_000, "quote (app.py)")]
    later = [HotPathCalls("quote", calls(5_000_000), None, None)]
    store.put(piece("main;quote 5\n", start=start, hot_paths=quote))
    store.put(piece("main;quote 5\n", start=start + timedelta(minutes=1), hot_paths=later))
    # The same hot path shipped by a wall-clock agent on the same process: another type.
    store.put(piece("main;quote 9\n", type=WALL, start=start, hot_paths=later))
    merged = store.hot_path_histograms(select())
    budget, histogram = merged["quote"]
    assert budget == 2_000_000 and histogram.count == 3 and histogram.max == 5_000_000
    assert store.hot_path_histograms(select(type=WALL))["quote"][1].count == 1
    assert store.hot_path_functions(select()) == {"quote": "quote (app.py)"}
    points = store.hot_path_timeline(select(), "quote", 60)
    assert [(moment, h.count) for moment, h in points] == [
        (start, 2),
        (start + timedelta(minutes=1), 1),
    ]
    roll_up(storage)
    hourly = store.hot_path_timeline(select(start=NOW - timedelta(hours=3)), "quote", 3600)
    assert sum(h.count for _, h in hourly) == 3


def test_window_profiles_are_spread_and_typed(storage: Storage) -> None:
    store = storage.profiles
    for i in range(10):
        store.put(piece(f"main;w{i} 1\n", start=NOW - timedelta(minutes=30 - i)))
    store.put(piece("main;wall 1\n", type=WALL))
    spread = store.window_profiles(select(), limit=5)
    assert len(spread) == 5 and all(p.type == CPU and p.total == 1 for p in spread)
    assert {next(iter(folded(p.samples))) for p in spread} == {
        f"main;w{i}" for i in range(0, 10, 2)
    }
    assert [p.type for p in store.window_profiles(select(type=WALL))] == [WALL]


def test_unknown_service_and_empty_selections(storage: Storage) -> None:
    store = storage.profiles
    with pytest.raises(UnknownService, match="nope"):
        store.profile(select(service="nope"))
    with pytest.raises(UnknownService):
        store.profile_types(DEFAULT_TENANT, "nope")
    store.put(piece("main;a 1\n"))
    assert store.profile(select(type=WALL)).total == 0  # a known service, a type it lacks
    assert store.timeline(select(type=WALL)).lines == {}
    assert store.hot_path_histograms(select(type=WALL)) == {}


def test_a_piece_is_all_or_nothing(storage: Storage) -> None:
    """A piece whose hot-path row cannot be stored leaves nothing behind: no window, no
    series total, and its key stays free for the retry."""
    store = storage.profiles
    good = calls(1_000)
    # A sum past 64 bits: no backend stores it, and it fails after the window row is written.
    overflowing = Histogram(good.counts, 2**64, good.max)
    bad = [HotPathCalls("quote", overflowing, None, None)]
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises
        store.put(piece("main;a 3\n", key="window-0002", hot_paths=bad))
    with pytest.raises(UnknownService):  # not even the new service was kept
        store.profile(select())
    assert not store.put(piece("main;a 3\n", key="window-0002")).duplicate
    assert store.sample_count(select()) == 3
