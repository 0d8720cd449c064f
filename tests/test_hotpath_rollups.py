"""Hot-path calls merged into hours: answers equal merging every raw row, at any moment, and
outlive raw windows (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import Histogram, merge_all
from hotpath.profiler.model import CPU, Profile
from hotpath.server.storage.profiles import DEFAULT_TENANT, Piece, Retention, Selection
from hotpath.server.storage.sql import retention, rollups
from hotpath.server.storage.sql.database import make_engine, upgrade
from hotpath.server.storage.sql.profiles import SqlProfileStore
from hotpath.server.storage.sql.tables import windows

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=30)
NAMES = ("order_execution", "quote")


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    upgrade(engine)
    yield SqlProfileStore(engine)
    engine.dispose()


def calls(rng: random.Random) -> Histogram:
    h = Histogram()
    for _ in range(rng.randint(1, 40)):
        h.record(int(rng.lognormvariate(14, 1)), rng.randint(1, 3))
    return h


def window(
    rng: random.Random, start: datetime, host: str, every: bool = False
) -> tuple[wire.Window, dict[str, Histogram]]:
    shipped = {name: calls(rng) for name in NAMES if every or rng.random() < 0.8}
    hot_paths = [
        wire.HotPathWindow(
            name=name,
            budget_ns=5_000_000,
            function=f"{name} (app/{name}.py)",
            histogram=h.to_wire(),
        )
        for name, h in shipped.items()
    ]
    profile = Profile()
    profile.add([], 0)
    w = wire.from_profile(
        profile,
        service="svc",
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels={"host": host},
        hot_paths=hot_paths,
    )
    return w, shipped


def truth(
    sent: list[tuple[wire.Window, dict[str, Histogram]]],
    start: datetime,
    end: datetime,
    host: str | None = None,
) -> dict[str, Histogram]:
    parts: dict[str, list[Histogram]] = {}
    for w, shipped in sent:
        if start <= w.start < end and (host is None or w.labels["host"] == host):
            for name, h in shipped.items():
                parts.setdefault(name, []).append(h)
    return {name: merge_all(hs) for name, hs in parts.items()}


def chosen(start: datetime, end: datetime, labels: dict[str, str] | None = None) -> Selection:
    return Selection(DEFAULT_TENANT, "svc", CPU, start, end, labels or {})


def ingest(store: SqlProfileStore, w: wire.Window) -> None:
    store.put(Piece.from_window(w, DEFAULT_TENANT))


def answer(store: SqlProfileStore, start: datetime, end: datetime, host: str | None = None):  # type: ignore[no-untyped-def]
    labels = {"host": host} if host else None
    return {
        name: h
        for name, (_budget, h) in store.hot_path_histograms(chosen(start, end, labels)).items()
    }


def same(a: dict[str, Histogram], b: dict[str, Histogram]) -> bool:
    return a.keys() == b.keys() and all(
        (a[k].counts == b[k].counts).all() and a[k].sum == b[k].sum and a[k].max == b[k].max
        for k in a
    )


def random_ranges(rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    ranges = [(T0, NOW), (T0 + timedelta(hours=2), T0 + timedelta(hours=5))]  # whole hours
    for _ in range(n):
        a = T0 + timedelta(seconds=rng.randint(0, 30 * 3600))
        ranges.append((a, a + timedelta(seconds=rng.randint(60, 12 * 3600))))
    return ranges


def test_hours_answer_exactly_what_raw_rows_would_before_during_and_after(
    store: SqlProfileStore,
) -> None:
    rng = random.Random(5)
    sent = []
    for i in range(0, 30 * 3600, 600):  # every 10 minutes for 30 hours, two hosts
        for host in ("a", "b"):
            w, shipped = window(rng, T0 + timedelta(seconds=i + rng.randint(0, 500)), host)
            ingest(store, w)
            sent.append((w, shipped))
    ranges = random_ranges(rng, 12)
    for start, end in ranges:  # nothing rolled up: raw rows only
        assert same(answer(store, start, end), truth(sent, start, end))
    rollups.roll_up(store.engine, batch=100)  # part of the rows are in hours
    for start, end in ranges:
        assert same(answer(store, start, end), truth(sent, start, end))
        assert same(answer(store, start, end, "b"), truth(sent, start, end, "b"))
    while rollups.roll_up(store.engine, batch=500):
        pass
    # A late window lands in an hour that is already built: counted at once, merged later.
    late, shipped = window(rng, T0 + timedelta(hours=3, minutes=7), "a")
    ingest(store, late)
    sent.append((late, shipped))
    for start, end in ranges:
        assert same(answer(store, start, end), truth(sent, start, end))
        assert same(answer(store, start, end, "a"), truth(sent, start, end, "a"))
    while rollups.roll_up(store.engine, batch=500):
        pass
    for start, end in ranges:
        assert same(answer(store, start, end), truth(sent, start, end))
    functions = store.hot_path_functions(chosen(T0, NOW))
    assert functions == {name: f"{name} (app/{name}.py)" for name in NAMES}


def test_latency_history_outlives_raw_windows(store: SqlProfileStore) -> None:
    rng = random.Random(9)
    sent = []
    for i in range(0, 6 * 3600, 300):
        w, shipped = window(rng, T0 + timedelta(seconds=i), "a")
        ingest(store, w)
        sent.append((w, shipped))
    while rollups.roll_up(store.engine, batch=500):
        pass
    store.retention = Retention(raw=timedelta(hours=1))
    assert retention.enforce(store.engine, store.retention, now=NOW) > 0
    assert store.sample_count(chosen(T0, NOW)) == 0  # the raw windows are gone...
    start, end = T0, T0 + timedelta(hours=6)
    assert same(answer(store, start, end), truth(sent, start, end))  # ...their latency is not
    hourly = store.hot_path_timeline(chosen(start, end), "quote", step_s=3600)
    assert len(hourly) == 6
    expected = truth(sent, T0 + timedelta(hours=2), T0 + timedelta(hours=3))["quote"]
    assert hourly[2][1].count == expected.count
    assert store.hot_path_timeline(chosen(start, end), "quote", step_s=600) == []


def test_a_window_whose_calls_are_not_in_their_hour_yet_is_kept(store: SqlProfileStore) -> None:
    rng = random.Random(2)
    w, shipped = window(rng, T0, "a", every=True)
    ingest(store, w)
    with store.engine.begin() as conn:  # its stacks rolled up, its hot-path rows not yet
        conn.execute(windows.update().values(rolled_up=True))
    store.retention = Retention(raw=timedelta(hours=1))
    retention.enforce(store.engine, store.retention, now=NOW)
    assert same(answer(store, T0, T0 + timedelta(hours=1)), truth([(w, shipped)], T0, NOW))
    while rollups.roll_up(store.engine, batch=500):
        pass
    retention.enforce(store.engine, store.retention, now=NOW)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(windows)).scalar() == 0
    assert same(answer(store, T0, T0 + timedelta(hours=1)), truth([(w, shipped)], T0, NOW))
