"""The database schema as SQLAlchemy tables; Alembic migrations create and upgrade it.

See docs/storage.md for the picture. In short: frames and stacks are interned by content
digest; a service belongs to one tenant; a series is one profile type and label set of one
service; a window is (stack id, count) pairs of one series; rollups hold the same pairs merged
per minute, hour and day, per series and per (service, profile type).
Times are unix microseconds: portable across SQLite and PostgreSQL and cheap to compare.
"""

from __future__ import annotations

from typing import Any

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
    false,
)

metadata = MetaData()

# SQLite only aliases the rowid for INTEGER PRIMARY KEY; PostgreSQL needs 64 bits.
Id = BigInteger().with_variant(Integer, "sqlite")

services = Table(
    "services",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Index("ux_services_tenant_name", "tenant", "name", unique=True),
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
    # A profile type id (hotpath.profiler.model.PROFILE_TYPES); the digest covers it.
    Column("profile_type", String(32), nullable=False),
    Column("sample_rate_hz", Float, nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("samples", BigInteger, nullable=False),  # all-time weight, including expired windows
    # When a window of it last arrived, by the server's clock (last_seen_us is the data's
    # time, which a sender chooses): what the series limit counts as active (cardinality.py).
    Column("arrived_us", BigInteger, nullable=False, server_default="0"),
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
    # The series' type again, so that unfiltered reads of one type use the index below.
    Column("profile_type", String(32), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("sample_count", BigInteger, nullable=False),
    Column("rolled_up", Boolean, nullable=False),
    Column("pairs", LargeBinary, nullable=False),
    # Idempotency keys are the agent's: unique per service (so per tenant), not globally.
    Index("ux_windows_service_key", "service_id", "idempotency_key", unique=True),
    Index("ix_windows_service_type_start", "service_id", "profile_type", "start_us"),
    Index("ix_windows_series_start", "series_id", "start_us"),
    Index("ix_windows_rolled_up", "rolled_up", "id"),
)


def _rollup_table(name: str, owners: list[Column[Any]]) -> Table:
    return Table(
        name,
        metadata,
        *owners,
        Column("resolution_s", Integer, primary_key=True),
        Column("bucket_us", BigInteger, primary_key=True),
        Column("sample_count", BigInteger, nullable=False),
        Column("pairs", LargeBinary, nullable=False),
    )


# Per service and type (unfiltered queries) and per series (label-filtered queries; a series
# has one type).
service_rollups = _rollup_table(
    "service_rollups",
    [
        Column("service_id", Integer, ForeignKey("services.id"), primary_key=True),
        Column("profile_type", String(32), primary_key=True),
    ],
)
series_rollups = _rollup_table(
    "series_rollups", [Column("series_id", Id, ForeignKey("series.id"), primary_key=True)]
)

# A process's memory at a window's end (agent/process_memory.py), written with the window:
# one row per reading; pid is the process's, not a row id.
process_memory = Table(
    "process_memory",
    metadata,
    Column("id", Id, primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("t_us", BigInteger, nullable=False),
    Column("rss_bytes", BigInteger, nullable=False),
    Column("pss_bytes", BigInteger),
    Column("uss_bytes", BigInteger),
    Index("ix_process_memory_service_time", "service_id", "t_us"),
    Index("ix_process_memory_time", "t_us"),  # retention
)

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
    # Merged into hot_path_hours (server/storage/sql/hotpath_rollups.py), which outlive raw windows.
    Column("rolled_up", Boolean, nullable=False, server_default=false()),
    Index("ix_hot_path_calls_service_start", "service_id", "start_us"),
    Index("ix_hot_path_calls_rolled_up", "rolled_up", "id"),
)

# The calls of each hot path merged per series and hour: latency history past raw retention.
hot_path_hours = Table(
    "hot_path_hours",
    metadata,
    Column("id", Id, primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("series_id", Id, ForeignKey("series.id"), nullable=False),
    Column("name", String(112), nullable=False),
    Column("hour_us", BigInteger, nullable=False),
    Column("budget_ns", BigInteger, nullable=True),
    Column("function", Text, nullable=True),
    Column("count", BigInteger, nullable=False),
    Column("sum_ns", BigInteger, nullable=False),
    Column("max_ns", BigInteger, nullable=False),
    Column("buckets", LargeBinary, nullable=False),
    Index("ux_hot_path_hours_key", "series_id", "name", "hour_us", unique=True),
    Index("ix_hot_path_hours_service_hour", "service_id", "hour_us"),
)

# The hot-path names of each service, so `max_hot_paths_per_service` is a cheap count
# (sql/cardinality.py). `arrived_us`, when a window last carried the name by the server's
# clock, is refreshed at most every few minutes per server; a name expires with its hours
# (retention.py).
hot_path_names = Table(
    "hot_path_names",
    metadata,
    Column("service_id", Integer, ForeignKey("services.id"), primary_key=True),
    Column("name", String(112), primary_key=True),
    Column("arrived_us", BigInteger, nullable=False),
)

# How far hour and day rollups are complete: built from minute (hour) rollups once the
# period has closed. Minute rollups are kept up to date as windows arrive.
rollup_progress = Table(
    "rollup_progress",
    metadata,
    Column("resolution_s", Integer, primary_key=True),
    Column("built_until_us", BigInteger, nullable=False),
)

# Rows of alerting and benchmark runs written before they carried a tenant belong to the one
# tenant there was (migration 0008); new rows always name theirs.
_DEFAULT_TENANT = "default"

# Benchmark runs uploaded by `hotpath gate`: the pytest-benchmark JSON as uploaded
# (zstd-compressed, digest unique per tenant, project and branch: a re-upload is no duplicate),
# and one row of summary statistics (seconds) per benchmark, which the history charts read.
bench_runs = Table(
    "bench_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("tenant", String(64), nullable=False, server_default=_DEFAULT_TENANT),
    Column("project", String(128), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("commit_id", String(64), nullable=True),
    Column("run_us", BigInteger, nullable=False),  # the run's own datetime, else upload time
    Column("uploaded_us", BigInteger, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),  # sha256 of the uploaded bytes
    Column("source", String(255), nullable=False),
    Column("machine", Text, nullable=True),
    Column("benchmarks", Integer, nullable=False),
    Column("raw_size", Integer, nullable=False),
    Column("raw_zstd", LargeBinary, nullable=False),
    Index(
        "ux_bench_runs_tenant_branch_digest", "tenant", "project", "branch", "digest", unique=True
    ),
    Index("ix_bench_runs_tenant_branch_run", "tenant", "project", "branch", "run_us"),
)

bench_results = Table(
    "bench_results",
    metadata,
    Column("id", Id, primary_key=True),
    Column("run_id", Id, ForeignKey("bench_runs.id", ondelete="CASCADE"), nullable=False),
    Column("fullname", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("bench_group", Text, nullable=True),
    Column("min_s", Float, nullable=False),
    Column("max_s", Float, nullable=False),
    Column("mean_s", Float, nullable=False),
    Column("median_s", Float, nullable=False),
    Column("stddev_s", Float, nullable=False),
    Column("iqr_s", Float, nullable=False),
    Column("rounds", Integer, nullable=False),
    Column("iterations", Integer, nullable=False),
    Index("ix_bench_results_run", "run_id"),
    Index("ix_bench_results_fullname_run", "fullname", "run_id"),
)

# Hot-path breach alerts (server/alerts.py). Rules override the defaults from settings per
# (tenant, service, hot path); NULL columns keep the default. Names, not ids: a rule may be
# written before its service has sent anything.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False, server_default=_DEFAULT_TENANT),
    Column("service", String(128), nullable=False),
    Column("hot_path", String(112), nullable=False),
    Column("quantile", Float, nullable=True),
    Column("budget_ns", BigInteger, nullable=True),  # NULL: the hot path's own budget
    Column("fire_after", Integer, nullable=True),
    Column("resolve_after", Integer, nullable=True),
    Column("min_calls", BigInteger, nullable=True),
    Column("severity", String(32), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Index("ux_alert_rules_tenant_hot_path", "tenant", "service", "hot_path", unique=True),
)

# One row per firing episode; the rule as it was when it fired is kept with it.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("tenant", String(64), nullable=False, server_default=_DEFAULT_TENANT),
    Column("fingerprint", String(16), nullable=False),
    Column("service", String(128), nullable=False),
    Column("hot_path", String(112), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("quantile", Float, nullable=False),
    Column("budget_ns", BigInteger, nullable=False),
    Column("fire_after", Integer, nullable=False),
    Column("interval_s", Float, nullable=False),
    Column("value_ns", BigInteger, nullable=False),  # the quantile in the interval that fired
    Column("peak_ns", BigInteger, nullable=False),  # the highest quantile while firing
    Column("starts_us", BigInteger, nullable=False),
    Column("ends_us", BigInteger, nullable=True),
    # hot_path | rss_growth (server/storage/alerts.py NewAlert says what the fields then hold)
    Column("kind", String(16), nullable=False, server_default="hot_path"),
    Column("summary", Text, nullable=True),
    Index("ix_alerts_state_starts", "state", "starts_us"),
    Index("ix_alerts_tenant_hot_path", "tenant", "service", "hot_path"),
)

# Consecutive breached / clear intervals per hot path, and its firing alert if any.
alert_states = Table(
    "alert_states",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("service", String(128), primary_key=True),
    Column("hot_path", String(112), primary_key=True),
    Column("breach_streak", Integer, nullable=False),
    Column("ok_streak", Integer, nullable=False),
    Column("streak_start_us", BigInteger, nullable=True),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=True),
)

# How far evaluation has got; its one row is also the lock that keeps servers from
# evaluating the same interval twice.
alert_progress = Table(
    "alert_progress",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("evaluated_until_us", BigInteger, nullable=False),
)

# The webhook outbox: one row per (notification, receiver URL), written in the same
# transaction as the state change and deleted never (delivered rows are the history).
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", Id, primary_key=True),
    Column("alert_id", Id, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("claimed_until_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_alert_notifications_pending", "delivered_us", "url", "id"),
)

# API tokens: a public id to find the row, the secret only as a KDF hash (server/auth_tokens.py).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("scopes", String(256), nullable=False),  # comma-separated
    Column("secret_hash", String(256), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
    Index("ix_api_tokens_tenant", "tenant"),
)

# On-demand memory captures (server/storage/captures.py): the capture's own facts beside its
# three typed pieces in `windows` (written in the same transaction). `functions` is each
# function's held-bytes series as JSON, zstd-compressed (up to 500 x 240 points); expired
# with raw windows (retention.py).
memory_captures = Table(
    "memory_captures",
    metadata,
    Column("id", Id, primary_key=True),
    Column("service_id", Integer, ForeignKey("services.id"), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("labels", Text, nullable=False),  # JSON object
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("pause_attach_ms", Float, nullable=False),
    Column("pause_detach_ms", Float, nullable=False),
    Column("tool", String(64), nullable=False),
    Column("held_bytes", BigInteger, nullable=False),
    Column("function_count", Integer, nullable=False),
    Column("functions", LargeBinary, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Index("ux_memory_captures_service_key", "service_id", "idempotency_key", unique=True),
    Index("ix_memory_captures_service_start", "service_id", "start_us"),
)
