"""Storage on SQLite and PostgreSQL: interning, rollups that answer exactly what the raw
windows would, retention, and the time planner."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import CPU
from hotpath.server.storage.profiles import (
    DEFAULT_TENANT,
    Piece,
    Retention,
    Selection,
    UnknownService,
)
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql import retention, rollups
from hotpath.server.storage.sql.database import make_engine, upgrade
from hotpath.server.storage.sql.profiles import SqlProfileStore
from hotpath.server.storage.sql.tables import (
    frames,
    series_rollups,
    service_rollups,
    stacks,
    windows,
)
from hotpath.server.storage.sql.timeplan import (
    DAY,
    HOUR,
    MINUTE,
    RAW,
    Availability,
    Segment,
    plan,
    to_us,
)

NOW = datetime.now(UTC).replace(microsecond=0)
FUNCS = [f"fn{i} (app/mod{i % 7}.py:{10 * i})" for i in range(40)]


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    upgrade(engine)
    yield SqlProfileStore(engine)
    engine.dispose()


def random_stacks(rng: random.Random, n: int) -> dict[str, int]:
    stacks_: Counter[str] = Counter()
    for _ in range(n):
        depth = rng.randint(2, 8)
        stacks_[";".join(["main (app/main.py:1)", *rng.sample(FUNCS, depth)])] += rng.randint(1, 9)
    return dict(stacks_)


def window_of(
    stacks_: dict[str, int],
    start: datetime,
    labels: dict[str, str],
    service: str = "svc",
    seconds: float = 10,
) -> wire.Window:
    return wire.from_profile(
        collapsed.loads("".join(f"{s} {n}\n" for s, n in stacks_.items())),
        service=service,
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=seconds),
        sample_rate_hz=100,
        labels=labels,
    )


def expected(
    windows_: list[wire.Window],
    start: datetime,
    end: datetime,
    labels: dict[str, str] | None = None,
) -> Counter:
    total: Counter = Counter()
    for w in windows_:
        if start <= w.start < end and all(w.labels.get(k) == v for k, v in (labels or {}).items()):
            total.update(wire.to_profile(w).samples)
    return total


def chosen(
    start: datetime, end: datetime, labels: dict[str, str] | None = None, service: str = "svc"
) -> Selection:
    return Selection(DEFAULT_TENANT, service, CPU, start, end, labels or {})


def ingest(store: SqlProfileStore, window: wire.Window):  # type: ignore[no-untyped-def]
    return store.put(Piece.from_window(window, DEFAULT_TENANT))


def roll_everything(store: SqlProfileStore) -> None:
    while rollups.roll_up(store.engine, batch=200):
        pass


def test_the_same_stack_is_stored_once_across_windows_and_series(store: SqlProfileStore) -> None:
    stacks_ = {"main;a;b": 3, "main;a;c": 2}
    for pid in ("1", "2", "3"):
        ingest(store, window_of(stacks_, NOW - timedelta(minutes=5), {"pid": pid}))
        ingest(store, window_of(stacks_, NOW - timedelta(minutes=4), {"pid": pid}))
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stacks)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(frames)).scalar() == 4
        assert conn.execute(select(func.count()).select_from(windows)).scalar() == 6
    assert store.profile(chosen(NOW - timedelta(hours=1), NOW)).total == 30


def test_a_retried_window_is_stored_once(store: SqlProfileStore) -> None:
    window = window_of({"main;a": 5}, NOW - timedelta(minutes=1), {})
    assert not ingest(store, window).duplicate
    assert ingest(store, window).duplicate
    assert store.profile(chosen(NOW - timedelta(hours=1), NOW)).total == 5


def test_rollups_answer_exactly_what_raw_windows_would(store: SqlProfileStore) -> None:
    """Random windows over three days, random ranges and label filters, before and after
    rolling up (minutes, then hours and days): always the brute-force answer."""
    rng = random.Random(11)
    sent: list[wire.Window] = []
    for _ in range(150):
        start = NOW - timedelta(seconds=rng.randint(0, 3 * 86400))
        labels = {"pid": str(rng.randint(1, 3)), "version": rng.choice(["1.0", "2.0"])}
        window = window_of(random_stacks(rng, rng.randint(1, 6)), start, labels)
        ingest(store, window)
        sent.append(window)
    ranges = [(NOW - timedelta(seconds=rng.randint(60, 3 * 86400 + 600)), None) for _ in range(12)]
    ranges = [(a, a + timedelta(seconds=rng.randint(30, 2 * 86400))) for a, _ in ranges]
    ranges.append((NOW - timedelta(days=4), NOW + timedelta(minutes=1)))
    filters = [None, {"version": "2.0"}, {"pid": "1", "version": "1.0"}]

    def check(stage: str) -> None:
        for start, end in ranges:
            for labels in filters:
                got = store.profile(chosen(start, end, labels))
                assert got.samples == expected(sent, start, end, labels), (
                    stage,
                    start,
                    end,
                    labels,
                )
                assert store.sample_count(chosen(start, end, labels)) == got.total

    check("raw")
    roll_everything(store)  # minutes are built; hours and days wait for rollup_progress
    with store.engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(windows).where(windows.c.rolled_up.is_(False))
            ).scalar()
            == 0
        )
        built = conn.execute(
            select(func.count())
            .select_from(service_rollups)
            .where(service_rollups.c.resolution_s == HOUR)
        ).scalar()
        assert built > 0, "closed hours were built from minutes"
        assert (
            conn.execute(
                select(func.count())
                .select_from(series_rollups)
                .where(series_rollups.c.resolution_s == DAY)
            ).scalar()
            > 0
        )
    check("rolled up")
    # Late windows (an agent's spool replayed) land in hours and days already built.
    for _ in range(20):
        start = NOW - timedelta(seconds=rng.randint(86400, 3 * 86400))
        late = window_of(random_stacks(rng, 3), start, {"pid": "9", "version": "2.0"})
        ingest(store, late)
        sent.append(late)
    check("late, not rolled yet")
    roll_everything(store)
    check("late, rolled up")


def test_queries_read_rollups_not_every_window(store: SqlProfileStore) -> None:
    """Two days of windows: the 24 h query reads a few dozen rows, not 17,280 windows."""
    stacks_ = {"main;a;b": 600, "main;c": 400}
    start = (NOW - timedelta(days=2)).replace(minute=0, second=0)
    batch = [
        window_of(stacks_, start + timedelta(minutes=m), {"pid": "1"}, seconds=60)
        for m in range(0, 2 * 24 * 60, 1)
    ]
    for window in batch:
        ingest(store, window)
    roll_everything(store)
    with store.engine.connect() as conn:
        segments = plan(to_us(NOW - timedelta(hours=24)), to_us(NOW), store.availability(conn))
    pieces = sum(
        (s.end_us - s.start_us) // (s.resolution_s * 1_000_000) for s in segments if s.resolution_s
    )
    assert pieces < 24 + 2 * 60, segments
    got = store.profile(chosen(NOW - timedelta(hours=24), NOW))
    assert got.total == 1000 * len([w for w in batch if w.start >= NOW - timedelta(hours=24)])


def test_retention_expires_each_level_and_queries_fall_back(store: SqlProfileStore) -> None:
    store.retention = Retention(
        raw=timedelta(days=1),
        minute=timedelta(days=2),
        hour=timedelta(days=4),
        day=timedelta(days=30),
    )
    old = NOW - timedelta(days=3, hours=5)
    for start in (old, NOW - timedelta(hours=36), NOW - timedelta(hours=1)):
        ingest(store, window_of({"main;a": 10}, start, {"pid": "1"}))
    roll_everything(store)
    deleted = retention.enforce(store.engine, store.retention)
    assert deleted > 0
    with store.engine.connect() as conn:
        starts = sorted(conn.execute(select(windows.c.start_us)).scalars())
        assert starts == [to_us(NOW - timedelta(hours=1))], "raw windows older than 1 day go"
        minutes = conn.execute(
            select(func.min(service_rollups.c.bucket_us)).where(
                service_rollups.c.resolution_s == MINUTE
            )
        ).scalar()
        assert minutes >= to_us(NOW - timedelta(days=2))
    # The 3-day-old window is still in its hour and day buckets: a week's query sees all.
    assert store.profile(chosen(NOW - timedelta(days=7), NOW)).total == 30
    assert retention.enforce(store.engine, store.retention) == 0


def test_unrolled_windows_are_never_expired(store: SqlProfileStore) -> None:
    store.retention = Retention(raw=timedelta(hours=1))
    ingest(store, window_of({"main;a": 10}, NOW - timedelta(hours=5), {}))
    retention.enforce(store.engine, store.retention)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(windows)).scalar() == 1


def test_unknown_service(store: SqlProfileStore) -> None:
    with pytest.raises(UnknownService):
        store.profile(chosen(NOW - timedelta(hours=1), NOW, service="nope"))


# -- the planner, pure ----------------------------------------------------------------------

US = 1_000_000
T0 = 1_000 * DAY * US  # a day boundary


def test_plan_uses_coarse_buckets_inside_and_raw_at_the_edges() -> None:
    available = Availability({}, {HOUR: T0 + 10 * DAY * US, DAY: T0 + 10 * DAY * US})
    start, end = T0 - 90 * US, T0 + 2 * DAY * US + HOUR * US + 150 * US
    segments = plan(start, end, available)
    assert segments == [
        Segment(RAW, start, T0 - 60 * US),
        Segment(MINUTE, T0 - 60 * US, T0),
        Segment(DAY, T0, T0 + 2 * DAY * US),
        Segment(HOUR, T0 + 2 * DAY * US, T0 + 2 * DAY * US + HOUR * US),
        Segment(MINUTE, T0 + 2 * DAY * US + HOUR * US, T0 + 2 * DAY * US + HOUR * US + 120 * US),
        Segment(RAW, T0 + 2 * DAY * US + HOUR * US + 120 * US, end),
    ]


def test_plan_never_uses_levels_that_are_not_built_or_expired() -> None:
    built_hours = T0 + 5 * HOUR * US
    available = Availability({RAW: T0 + 30 * MINUTE * US}, {HOUR: built_hours, DAY: T0})
    segments = plan(T0, T0 + 8 * HOUR * US, available)
    for s in segments:
        if s.resolution_s == HOUR:
            assert s.end_us <= built_hours
        assert s.resolution_s != DAY
        if s.resolution_s == RAW:
            assert s.start_us >= T0 + 30 * MINUTE * US
    # Pieces tile the range with no gap or overlap.
    assert segments[0].start_us == T0 and segments[-1].end_us == T0 + 8 * HOUR * US
    assert all(a.end_us == b.start_us for a, b in itertools.pairwise(segments))


def test_pairs_codec_round_trips_and_merges() -> None:
    rng = random.Random(3)
    ids = [rng.randint(0, 2**40) for _ in range(300)]
    counts = [rng.randint(1, 70_000) for _ in range(300)]
    p = pairs_codec.from_lists(ids, counts)
    q = pairs_codec.decode(pairs_codec.encode(p))
    assert q.ids.tolist() == p.ids.tolist() and q.counts.tolist() == p.counts.tolist()
    merged = pairs_codec.merge([p, q])
    assert merged.total == 2 * sum(counts)
    assert pairs_codec.decode(pairs_codec.encode(pairs_codec.EMPTY)).total == 0
