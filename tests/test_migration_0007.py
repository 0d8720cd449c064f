"""Migration 0007 (profile types and tenants) moves data written by the 0006 schema without
loss, on SQLite and PostgreSQL: series get their type (sampling=wall → wall, bytes →
held_bytes), the per-service rollups that merged cpu and wall are rebuilt per type from the
per-series ones, idempotency keys become per service, nothing that refers to a window is lost.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, column, func, insert, select, table, text

from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU, HELD_BYTES, WALL, ProfileType
from hotpath.server.storage.profiles import DEFAULT_TENANT, Piece, Selection, SeriesKey
from hotpath.server.storage.sql import pairs as pairs_codec
from hotpath.server.storage.sql.database import MIGRATIONS, make_engine, upgrade
from hotpath.server.storage.sql.hotpath_rollups import encode as encode_histogram
from hotpath.server.storage.sql.interning import Interner, Learned
from hotpath.server.storage.sql.profiles import SqlProfileStore
from hotpath.server.storage.sql.timeplan import to_us

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MINUTE_US = 60_000_000
FRAMES = [("main", "app.py", 1), ("compute", "app.py", 5), ("sleep", "app.py", 9)]
STACKS = [[0, 1], [0, 2]]  # main;compute and main;sleep


def migrate_to(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def t(name: str, *names: str):  # type: ignore[no-untyped-def]
    return table(name, *(column(n) for n in names))


class Old:
    """Writes rows as the 0006 schema had them (its columns, its rollup keys)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.stack_ids = Interner().intern(conn, FRAMES, STACKS, Learned())
        self.minutes: dict[tuple[str, int, int], list] = {}  # type: ignore[type-arg]

    def service(self, name: str) -> int:
        self.conn.execute(insert(t("services", "name")), {"name": name})
        return self.conn.execute(
            text("SELECT id FROM services WHERE name = :n"), {"n": name}
        ).scalar_one()

    def series(self, service_id: int, labels: dict[str, str], unit: str) -> int:
        columns = ("service_id", "digest", "labels", "unit", "sample_rate_hz")
        columns += ("first_seen_us", "last_seen_us", "samples")
        text_ = json.dumps([unit, sorted(labels.items())], separators=(",", ":"))
        digest = hashlib.blake2b(text_.encode(), digest_size=16).digest()  # 0006's digest
        self.conn.execute(
            insert(t("series", *columns)),
            {
                "service_id": service_id,
                "digest": digest,
                "labels": json.dumps(labels, sort_keys=True),
                "unit": unit,
                "sample_rate_hz": 100.0,
                "first_seen_us": 0,
                "last_seen_us": 0,
                "samples": 0,
            },
        )
        series_id = self.conn.execute(text("SELECT max(id) FROM series")).scalar_one()
        for key, value in labels.items():
            self.conn.execute(
                insert(t("series_labels", "series_id", "key", "value")),
                {"series_id": series_id, "key": key, "value": value},
            )
        return series_id

    def window(
        self,
        service_id: int,
        series_id: int,
        key: str,
        start_us: int,
        counts: list[int],
        rolled: bool,
    ) -> int:
        pairs = pairs_codec.from_lists(self.stack_ids, counts)
        columns = ("service_id", "series_id", "idempotency_key", "start_us", "end_us")
        columns += ("sample_count", "rolled_up", "pairs")
        self.conn.execute(
            insert(t("windows", *columns)),
            {
                "service_id": service_id,
                "series_id": series_id,
                "idempotency_key": key,
                "start_us": start_us,
                "end_us": start_us + 10_000_000,
                "sample_count": sum(counts),
                "rolled_up": rolled,
                "pairs": pairs_codec.encode(pairs),
            },
        )
        window_id = self.conn.execute(text("SELECT max(id) FROM windows")).scalar_one()
        if rolled:  # 0006 rolled a window into its service's and its series' minute
            minute = start_us - start_us % MINUTE_US
            self.minutes.setdefault(("service", service_id, minute), []).append(pairs)
            self.minutes.setdefault(("series", series_id, minute), []).append(pairs)
        calls = Histogram()
        calls.record(2_000_000, 3)
        columns = ("window_id", "service_id", "series_id", "name", "start_us", "count")
        columns += ("sum_ns", "max_ns", "buckets", "rolled_up")
        self.conn.execute(
            insert(t("hot_path_calls", *columns)),
            {
                "window_id": window_id,
                "service_id": service_id,
                "series_id": series_id,
                "name": "quote",
                "start_us": start_us,
                "count": calls.count,
                "sum_ns": calls.sum,
                "max_ns": calls.max,
                "buckets": encode_histogram(calls),
                "rolled_up": False,
            },
        )
        return window_id

    def write_rollups(self) -> None:
        for (owner, owner_id, minute), parts in self.minutes.items():
            merged = pairs_codec.merge(parts)
            self.conn.execute(
                insert(
                    t(
                        f"{owner}_rollups",
                        f"{owner}_id",
                        "resolution_s",
                        "bucket_us",
                        "sample_count",
                        "pairs",
                    )
                ),
                {
                    f"{owner}_id": owner_id,
                    "resolution_s": 60,
                    "bucket_us": minute,
                    "sample_count": merged.total,
                    "pairs": pairs_codec.encode(merged),
                },
            )


def read(store: SqlProfileStore, kind: ProfileType, service: str = "trader") -> dict[str, int]:
    chosen = Selection(DEFAULT_TENANT, service, kind, NOW - timedelta(hours=1), NOW)
    profile = store.profile(chosen)
    assert store.sample_count(chosen) == profile.total
    return {stack[-1].name: n for stack, n in profile.samples.items()}


def test_0007_moves_0006_data_without_loss(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate_to(engine, "0006")
    start = to_us(NOW - timedelta(minutes=30))
    with engine.begin() as conn:
        old = Old(conn)
        trader, other = old.service("trader"), old.service("other")
        cpu = old.series(trader, {"pid": "1"}, "samples")
        wall = old.series(trader, {"pid": "1", "sampling": "wall"}, "samples")
        memory = old.series(trader, {"pid": "1"}, "bytes")
        other_cpu = old.series(other, {}, "samples")
        for i in range(6):  # the first four rolled up, the last two not yet
            at = start + i * MINUTE_US
            old.window(trader, cpu, f"cpu-window-{i}", at, [98, 2], rolled=i < 4)
            old.window(trader, wall, f"wall-window-{i}", at, [50, 50], rolled=i < 4)
        old.window(trader, memory, "memory-window", start, [4096, 1024], rolled=False)
        old.window(other, other_cpu, "other-window", start, [7, 1], rolled=True)
        old.write_rollups()
        hot_path_rows = conn.execute(text("SELECT count(*) FROM hot_path_calls")).scalar_one()
    # The 0006 service rollup merged the two types: cpu + wall in one bucket.
    with engine.connect() as conn:
        mixed = conn.execute(text("SELECT max(sample_count) FROM service_rollups")).scalar_one()
    assert mixed == 200

    upgrade(engine)
    store = SqlProfileStore(engine)
    assert read(store, CPU) == {"compute": 6 * 98, "sleep": 6 * 2}
    assert read(store, WALL) == {"compute": 6 * 50, "sleep": 6 * 50}
    assert read(store, HELD_BYTES) == {"compute": 4096, "sleep": 1024}
    assert read(store, CPU, "other") == {"compute": 7, "sleep": 1}
    assert store.profile_types(DEFAULT_TENANT, "trader") == [CPU, WALL, HELD_BYTES]
    assert [s.name for s in store.services(DEFAULT_TENANT)] == ["other", "trader"]
    with engine.connect() as conn:
        rebuilt = Counter(
            {
                (row.profile_type, row.bucket_us): row.sample_count
                for row in conn.execute(
                    text(
                        "SELECT profile_type, bucket_us, sample_count FROM service_rollups"
                        " WHERE service_id = :s"
                    ),
                    {"s": trader},
                )
            }
        )
        # Nothing referring to a window was lost (SQLite copies tables to change them).
        assert (
            conn.execute(text("SELECT count(*) FROM hot_path_calls")).scalar_one() == hot_path_rows
        )
        assert conn.execute(select(func.count()).select_from(t("windows"))).scalar_one() == 14
    assert sorted(rebuilt.items()) == sorted(
        [(("cpu", start + i * MINUTE_US), 100) for i in range(4)]
        + [(("wall", start + i * MINUTE_US), 100) for i in range(4)]
    )
    # Hot paths read per type after the move: each series' calls, not both types'.
    quote = store.hot_path_histograms(
        Selection(DEFAULT_TENANT, "trader", CPU, NOW - timedelta(hours=1), NOW)
    )["quote"][1]
    assert quote.count == 6 * 3

    # Keys are unique per service now: another service may reuse one; the same may not.
    again = Piece(
        key=SeriesKey(DEFAULT_TENANT, "other", CPU, {}),
        start=NOW - timedelta(minutes=1),
        end=NOW,
        sample_rate_hz=100.0,
        frames=FRAMES,
        stacks=STACKS,
        counts=[1, 1],
        idempotency_key="cpu-window-0",
    )
    assert not store.put(again).duplicate
    assert store.put(
        Piece(**{**vars(again), "key": SeriesKey(DEFAULT_TENANT, "trader", CPU, {"pid": "1"})})
    ).duplicate
    # A new window of an existing series finds its (recomputed) digest: no second series.
    store.put(
        Piece(
            **{
                **vars(again),
                "key": SeriesKey(DEFAULT_TENANT, "trader", WALL, {"pid": "1", "sampling": "wall"}),
                "idempotency_key": "wall-window-new",
            }
        )
    )
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM series WHERE service_id = :s"), {"s": trader}
            ).scalar_one()
            == 3
        )
        assert set(conn.execute(text("SELECT tenant FROM services")).scalars()) == {DEFAULT_TENANT}
    engine.dispose()
