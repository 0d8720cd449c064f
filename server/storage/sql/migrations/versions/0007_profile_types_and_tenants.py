"""profile types and tenants in every key

Services are unique per (tenant, name), all existing ones in tenant "default". Series carry a
profile type instead of a unit: samples become cpu, or wall when labelled sampling=wall; bytes
become held_bytes, allocations alloc_count (nanoseconds, which no client sent, wall); their
digests are recomputed over (type, labels). Windows carry their series' type, and their
idempotency keys are unique per service. The per-service rollups, keyed by service alone
(a cpu and a wall series of one service merged there), are rebuilt per (service, type) from
the per-series rollups: every window was rolled into both in one transaction, and retention
expires both at the same cutoffs, so the sums are exact.

Revision ID: 0007
Revises: 0006
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

from hotpath.server.storage.sql import pairs as pairs_codec

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Bytes reached 0006 only through the speedscope import of `memray transform speedscope`,
# whose "Memory" profile is what was still held at the peak: held_bytes, as the format
# registry reads such files now.
_TYPE_OF_UNIT = {"bytes": "held_bytes", "allocations": "alloc_count", "nanoseconds": "wall"}
# SQLite's UNIQUE column constraints have no name: reflected ones get these.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_BUCKETS_PER_READ = 500


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _tenants(sqlite)
    _series_types()
    _window_types_and_keys(sqlite)
    _service_rollups_per_type()


def downgrade() -> None:
    raise NotImplementedError(
        "0007 cannot be undone without merging profile types and tenants: restore a backup"
    )


def _tenants(sqlite: bool) -> None:
    op.add_column("services", sa.Column("tenant", sa.String(64), nullable=True))
    op.execute("UPDATE services SET tenant = 'default'")
    with op.batch_alter_table("services", naming_convention=_NAMES) as batch:
        batch.alter_column("tenant", existing_type=sa.String(64), nullable=False)
        batch.drop_constraint("uq_services_name" if sqlite else "services_name_key", "unique")
    op.create_index("ux_services_tenant_name", "services", ["tenant", "name"], unique=True)


def _series_types() -> None:
    conn = op.get_bind()
    op.add_column("series", sa.Column("profile_type", sa.String(32), nullable=True))
    series = sa.table(
        "series",
        sa.column("id", sa.BigInteger),
        sa.column("labels", sa.Text),
        sa.column("unit", sa.String),
        sa.column("profile_type", sa.String),
        sa.column("digest", sa.LargeBinary),
    )
    rows = conn.execute(sa.select(series.c.id, series.c.labels, series.c.unit)).all()
    for series_id, labels_json, unit in rows:
        labels = json.loads(labels_json)
        type_id = _TYPE_OF_UNIT.get(unit) or ("wall" if labels.get("sampling") == "wall" else "cpu")
        conn.execute(
            sa.update(series)
            .where(series.c.id == series_id)
            .values(profile_type=type_id, digest=_digest(type_id, labels))
        )
    with op.batch_alter_table("series") as batch:
        batch.alter_column("profile_type", existing_type=sa.String(32), nullable=False)
        batch.drop_column("unit")


def _digest(type_id: str, labels: dict[str, str]) -> bytes:
    # What hotpath.server.storage.sql.series.series_digest computed when this was written.
    text = json.dumps([type_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _window_types_and_keys(sqlite: bool) -> None:
    op.add_column("windows", sa.Column("profile_type", sa.String(32), nullable=True))
    op.execute(
        "UPDATE windows SET profile_type ="
        " (SELECT series.profile_type FROM series WHERE series.id = windows.series_id)"
    )
    op.drop_index("ix_windows_service_start", "windows")
    with op.batch_alter_table("windows", naming_convention=_NAMES) as batch:
        batch.alter_column("profile_type", existing_type=sa.String(32), nullable=False)
        batch.drop_constraint(
            "uq_windows_idempotency_key" if sqlite else "windows_idempotency_key_key", "unique"
        )
    op.create_index(
        "ux_windows_service_key", "windows", ["service_id", "idempotency_key"], unique=True
    )
    op.create_index(
        "ix_windows_service_type_start", "windows", ["service_id", "profile_type", "start_us"]
    )


def _service_rollups_per_type() -> None:
    op.drop_table("service_rollups")
    rollups = op.create_table(
        "service_rollups",
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), primary_key=True),
        sa.Column("profile_type", sa.String(32), primary_key=True),
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("bucket_us", sa.BigInteger, primary_key=True),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("pairs", sa.LargeBinary, nullable=False),
    )
    conn = op.get_bind()
    series = sa.table(
        "series",
        sa.column("id", sa.BigInteger),
        sa.column("service_id", sa.Integer),
        sa.column("profile_type", sa.String),
    )
    per_series = sa.table(
        "series_rollups",
        sa.column("series_id", sa.BigInteger),
        sa.column("resolution_s", sa.Integer),
        sa.column("bucket_us", sa.BigInteger),
        sa.column("sample_count", sa.BigInteger),
        sa.column("pairs", sa.LargeBinary),
    )
    joined = per_series.join(series, series.c.id == per_series.c.series_id)
    groups = conn.execute(
        sa.select(series.c.service_id, series.c.profile_type, per_series.c.resolution_s)
        .select_from(joined)
        .distinct()
    ).all()
    for service_id, type_id, resolution in groups:
        in_group = (
            series.c.service_id == service_id,
            series.c.profile_type == type_id,
            per_series.c.resolution_s == resolution,
        )
        after = None
        while True:  # a few hundred buckets at a time: memory stays bounded
            buckets = (
                sa.select(per_series.c.bucket_us)
                .select_from(joined)
                .where(*in_group)
                .distinct()
                .order_by(per_series.c.bucket_us)
                .limit(_BUCKETS_PER_READ)
            )
            if after is not None:
                buckets = buckets.where(per_series.c.bucket_us > after)
            chosen = list(conn.execute(buckets).scalars())
            if not chosen:
                break
            after = chosen[-1]
            merged: dict[int, tuple[int, list[pairs_codec.Pairs]]] = {}
            rows = conn.execute(
                sa.select(per_series.c.bucket_us, per_series.c.sample_count, per_series.c.pairs)
                .select_from(joined)
                .where(*in_group, per_series.c.bucket_us.in_(chosen))
            )
            for bucket_us, count, blob in rows:
                total, parts = merged.get(bucket_us, (0, []))
                parts.append(pairs_codec.decode(blob))
                merged[bucket_us] = (total + count, parts)
            conn.execute(
                rollups.insert(),
                [
                    {
                        "service_id": service_id,
                        "profile_type": type_id,
                        "resolution_s": resolution,
                        "bucket_us": bucket_us,
                        "sample_count": total,
                        "pairs": pairs_codec.encode(pairs_codec.merge(parts)),
                    }
                    for bucket_us, (total, parts) in merged.items()
                ],
            )
