"""pytest-benchmark suites for the hot pieces of storage: pairs, interning, ingest, query.

    .venv/bin/pytest benchmarks/test_storage_benchmarks.py --benchmark-only

Every input is realistic (benchmarks/synthetic.py): a window is 1,000 samples over ~240
distinct stacks 20-60 frames deep; a rollup bucket of an hour or a day holds ~3,000 stacks.
The database fixtures are SQLite files built once per module; `ProfileStore.put` runs with warm
caches (the service's series and popular stacks already known), as in a running server.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import zstandard

from benchmarks import synthetic as syn
from hotpath.profiler.formats import speedscope
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import CPU
from hotpath.server.storage.profiles import DEFAULT_TENANT, Piece, Retention, Selection
from hotpath.server.storage.sql import pairs
from hotpath.server.storage.sql.database import make_engine, upgrade
from hotpath.server.storage.sql.interning import Learned
from hotpath.server.storage.sql.profiles import SqlProfileStore
from hotpath.server.storage.sql.rollups import roll_up
from hotpath.server.storage.sql.timeplan import to_us

SERVICE = "bench-svc"
LABELS = {"host": "ip-10-0-0-1", "pid": "4242", "version": "1.0.0"}
# One more day of minute retention than the default, so a range starting exactly 30 days ago
# stays exact however long the run takes (see storage_figures.QUERY_RETENTION).
RETENTION = Retention(minute=timedelta(days=31))


@pytest.fixture(scope="module")
def model() -> syn.ServiceModel:
    return syn.service_model(SERVICE, 1)


@pytest.fixture(scope="module")
def window_pairs(model: syn.ServiceModel) -> list[pairs.Pairs]:
    """Pairs of 60 windows of 1,000 samples, with the ids a server would have given them."""
    rng = np.random.default_rng(2)
    out = []
    for _ in range(60):
        counts = rng.multinomial(syn.SAMPLES_PER_WINDOW, model.popularity)
        ids = np.flatnonzero(counts)
        out.append(pairs.from_lists((ids + 50_000).tolist(), counts[ids].tolist()))
    return out


@pytest.fixture(scope="module")
def bucket_pairs(model: syn.ServiceModel) -> list[pairs.Pairs]:
    """Pairs of 30 day buckets (8.64 M samples each: every stack of the service)."""
    rng = np.random.default_rng(3)
    out = []
    for _ in range(30):
        counts = rng.multinomial(8_640_000, model.popularity)
        ids = np.flatnonzero(counts)
        out.append(pairs.from_lists((ids + 50_000).tolist(), counts[ids].tolist()))
    return out


# -- pairs ---------------------------------------------------------------------------------------


def test_pairs_encode_window(benchmark, window_pairs: list[pairs.Pairs]) -> None:
    blob = benchmark(pairs.encode, window_pairs[0])
    benchmark.extra_info["bytes"] = len(blob)
    benchmark.extra_info["pairs"] = len(window_pairs[0])


def test_pairs_decode_window(benchmark, window_pairs: list[pairs.Pairs]) -> None:
    blob = pairs.encode(window_pairs[0])
    decoded = benchmark(pairs.decode, blob)
    assert decoded.total == syn.SAMPLES_PER_WINDOW


def test_pairs_encode_day_bucket(benchmark, bucket_pairs: list[pairs.Pairs]) -> None:
    blob = benchmark(pairs.encode, bucket_pairs[0])
    benchmark.extra_info["bytes"] = len(blob)
    benchmark.extra_info["pairs"] = len(bucket_pairs[0])


def test_pairs_decode_day_bucket(benchmark, bucket_pairs: list[pairs.Pairs]) -> None:
    blob = pairs.encode(bucket_pairs[0])
    assert benchmark(pairs.decode, blob).total == 8_640_000


def test_pairs_merge_minute(benchmark, window_pairs: list[pairs.Pairs]) -> None:
    """Six 10-s windows into a minute bucket: what a roll-up does per series and minute."""
    merged = benchmark(pairs.merge, window_pairs[:6])
    assert merged.total == 6 * syn.SAMPLES_PER_WINDOW


def test_pairs_merge_30_days(benchmark, bucket_pairs: list[pairs.Pairs]) -> None:
    """30 day buckets: the middle of a 30-day flame graph."""
    merged = benchmark(pairs.merge, bucket_pairs)
    assert merged.total == 30 * 8_640_000


def test_pairs_decode_and_merge_30_days(benchmark, bucket_pairs: list[pairs.Pairs]) -> None:
    blobs = [pairs.encode(p) for p in bucket_pairs]
    merged = benchmark(lambda: pairs.merge(pairs.decode(b) for b in blobs))
    assert merged.total == 30 * 8_640_000


# -- ingest ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest_store(
    tmp_path_factory: pytest.TempPathFactory, model: syn.ServiceModel
) -> Iterator[SqlProfileStore]:
    path: Path = tmp_path_factory.mktemp("ingest") / "hotpath.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlProfileStore(engine)
    rng = np.random.default_rng(4)
    start = syn.aligned_now() - timedelta(days=1)
    for k in range(50):  # warm: the series exists, the popular stacks are interned
        when = start + timedelta(seconds=10 * k)
        window = syn.make_window(model, LABELS, when, rng, key=f"warm-{k:08d}")
        store.put(Piece.from_window(window, DEFAULT_TENANT))
    yield store
    engine.dispose()


@pytest.fixture(scope="module")
def fresh_windows(model: syn.ServiceModel) -> Iterator[wire.Window]:
    """An endless supply of new windows (new idempotency keys), built outside the timing."""
    rng = np.random.default_rng(5)
    start = syn.aligned_now() - timedelta(hours=12)

    def windows() -> Iterator[wire.Window]:
        for k in itertools.count():
            when = start + timedelta(seconds=10 * k)
            yield syn.make_window(model, LABELS, when, rng, key=f"timed-{k:08d}")

    return windows()


def test_store_ingest_window(benchmark, ingest_store: SqlProfileStore, fresh_windows) -> None:
    """One realistic window through `ProfileStore.put` (SQLite, warm caches), from the
    decoded window as the ingest route has it."""

    def setup():  # type: ignore[no-untyped-def]
        return (next(fresh_windows),), {}

    def put(window: wire.Window):  # type: ignore[no-untyped-def]
        return ingest_store.put(Piece.from_window(window, DEFAULT_TENANT))

    result = benchmark.pedantic(put, setup=setup, rounds=200, warmup_rounds=20, iterations=1)
    assert not result.duplicate
    benchmark.extra_info["samples_per_window"] = result.samples


def test_intern_window_cached(
    benchmark, ingest_store: SqlProfileStore, model: syn.ServiceModel
) -> None:
    """Interning one window whose frames and stacks are all known: no database access at
    all, only digests and cache look-ups. The floor under `ProfileStore.put`."""
    rng = np.random.default_rng(6)
    window = syn.make_window(model, LABELS, syn.aligned_now(), rng)
    with ingest_store.engine.begin() as conn:
        learned = Learned()
        ingest_store.interner.intern(conn, window.frames, window.stacks, learned)
        ingest_store.interner.publish(learned)
        ids = benchmark(ingest_store.interner.intern, conn, window.frames, window.stacks, Learned())
    assert len(ids) == len(window.stacks)


def test_window_decode_and_validate(benchmark, model: syn.ServiceModel) -> None:
    """What the HTTP handler does before `ProfileStore.put`: zstd, JSON, validation."""
    rng = np.random.default_rng(7)
    body = syn.BodyEncoder().encode(syn.window_dict(model, LABELS, syn.aligned_now(), rng))
    decompressor = zstandard.ZstdDecompressor()
    window = benchmark(lambda: wire.Window.model_validate_json(decompressor.decompress(body)))
    assert sum(window.counts) == syn.SAMPLES_PER_WINDOW


# -- query -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def day_store(tmp_path_factory: pytest.TempPathFactory, model: syn.ServiceModel):  # type: ignore[no-untyped-def]
    """Two days of one process at 100 Hz, rolled up: hour windows in general, 10-s windows
    around the 24-hour query's edges (see `synthetic.history_layout`)."""
    path: Path = tmp_path_factory.mktemp("query") / "hotpath.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlProfileStore(engine, RETENTION)
    now = syn.aligned_now()
    start = now - timedelta(hours=24)
    layout = syn.history_layout(now, 2, 3_600, [(start, 10), (now, 10)])
    rng = np.random.default_rng(8)
    expected = 0
    for when, seconds in layout:
        window = syn.make_window(model, LABELS, when, rng, seconds=seconds, key=f"h-{to_us(when)}")
        samples = store.put(Piece.from_window(window, DEFAULT_TENANT)).samples
        if to_us(start) <= to_us(when) < to_us(now):
            expected += samples
    while roll_up(engine):
        pass
    yield store, Selection(DEFAULT_TENANT, SERVICE, CPU, start, now), expected
    engine.dispose()


def test_store_profile_24h(benchmark, day_store) -> None:  # type: ignore[no-untyped-def]
    """`ProfileStore.profile` of 24 hours of one service (rollups plus raw edges), warm caches."""
    store, day, expected = day_store
    store.profile(day)
    profile = benchmark(store.profile, day)
    assert profile.total == expected
    benchmark.extra_info["stacks"] = len(profile.samples)


def test_speedscope_export_24h(benchmark, day_store) -> None:  # type: ignore[no-untyped-def]
    """The speedscope JSON the flame-graph endpoint returns for that profile."""
    store, day, expected = day_store
    profile = store.profile(day)
    assert profile.total == expected
    document = benchmark(speedscope.dumps, profile, "24 h")
    benchmark.extra_info["bytes"] = len(document)
