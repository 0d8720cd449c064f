"""The database schema as SQLAlchemy tables; Alembic migrations create and upgrade it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

services = Table(
    "services",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
)

# One row per shipped window. Times are unix microseconds: portable across SQLite and
# PostgreSQL and cheap to compare. The stacks are zstd-compressed collapsed text.
windows = Table(
    "windows",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("sample_rate_hz", Float, nullable=False),
    Column("sample_count", BigInteger, nullable=False),
    Column("stack_count", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_windows_service_time", "service_id", "start_us"),
)

window_labels = Table(
    "window_labels",
    metadata,
    Column(
        "window_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("windows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Index("ix_window_labels_key_value", "key", "value"),
)
