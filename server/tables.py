"""The database schema as SQLAlchemy tables; Alembic migrations create and upgrade it.

See docs/storage.md for the picture. In short: frames and stacks are interned by content
digest; a series is one label set of one service; a window is (stack id, count) pairs of one
series; rollups hold the same pairs merged per minute, hour and day, per series and per service.
Times are unix microseconds: portable across SQLite and PostgreSQL and cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only aliases the rowid for INTEGER PRIMARY KEY; PostgreSQL needs 64 bits.
Id = BigInteger().with_variant(Integer, "sqlite")

services = Table(
    "services",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
)

frames = Table(
    "frames",
    metadata,
    Column("id", Id, primary_key=True),
    Column("digest", LargeBinary(16), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("file", Text, nullable=False),
    Column("line", Integer, nullable=False),
)

stacks = Table(
    "stacks",
    metadata,
    Column("id", Id, primary_key=True),
    Column("digest", LargeBinary(16), nullable=False, unique=True),
    # Frame ids, root first: a width byte (4 or 8), then little-endian unsigned ints.
    Column("frame_ids", LargeBinary, nullable=False),
)

series = Table(
    "series",
    metadata,
    Column("id", Id, primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("digest", LargeBinary(16), nullable=False),
    Column("labels", Text, nullable=False),  # JSON object, for display
    Column("unit", String(16), nullable=False),
    Column("sample_rate_hz", Float, nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("samples", BigInteger, nullable=False),  # all time, including expired windows
    Index("ux_series_service_digest", "service_id", "digest", unique=True),
)

series_labels = Table(
    "series_labels",
    metadata,
    Column("series_id", Id, ForeignKey("series.id"), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Index("ix_series_labels_key_value", "key", "value"),
)

windows = Table(
    "windows",
    metadata,
    Column("id", Id, primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("series_id", Id, ForeignKey("series.id"), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("sample_count", BigInteger, nullable=False),
    Column("rolled_up", Boolean, nullable=False),
    Column("pairs", LargeBinary, nullable=False),
    Index("ix_windows_service_start", "service_id", "start_us"),
    Index("ix_windows_series_start", "series_id", "start_us"),
    Index("ix_windows_rolled_up", "rolled_up", "id"),
)


def _rollup_table(name: str, owner: str, owner_type: Integer | BigInteger, target: str) -> Table:
    return Table(
        name,
        metadata,
        Column(owner, owner_type, ForeignKey(target), primary_key=True),
        Column("resolution_s", Integer, primary_key=True),
        Column("bucket_us", BigInteger, primary_key=True),
        Column("sample_count", BigInteger, nullable=False),
        Column("pairs", LargeBinary, nullable=False),
    )


# Per service (unfiltered queries) and per series (label-filtered queries).
service_rollups = _rollup_table("service_rollups", "service_id", Integer, "services.id")
series_rollups = _rollup_table("series_rollups", "series_id", Id, "series.id")

# The calls of each hot path in each window: a latency histogram delta (sparse buckets as
# pairs, see server.pairs) with its exact count, sum and max.
hot_path_calls = Table(
    "hot_path_calls",
    metadata,
    Column("id", Id, primary_key=True),
    Column("window_id", Id, ForeignKey("windows.id", ondelete="CASCADE"), nullable=False),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("series_id", Id, ForeignKey("series.id"), nullable=False),
    Column("name", String(112), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("budget_ns", BigInteger, nullable=True),
    # The timed function as the sampler names it, "qualname (file)"; attribution finds the
    # hot path in the stacks by it. NULL from agents that do not report it.
    Column("function", Text, nullable=True),
    Column("count", BigInteger, nullable=False),
    Column("sum_ns", BigInteger, nullable=False),
    Column("max_ns", BigInteger, nullable=False),
    Column("buckets", LargeBinary, nullable=False),
    Index("ix_hot_path_calls_service_start", "service_id", "start_us"),
)

# How far hour and day rollups are complete: built from minute (hour) rollups once the
# period has closed. Minute rollups are kept up to date as windows arrive.
rollup_progress = Table(
    "rollup_progress",
    metadata,
    Column("resolution_s", Integer, primary_key=True),
    Column("built_until_us", BigInteger, nullable=False),
)
