"""interned frames and stacks, series, windows of (stack id, count) pairs, rollups

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _rollups(name: str, owner: str, owner_type: sa.types.TypeEngine, target: str) -> None:
    op.create_table(
        name,
        sa.Column(owner, owner_type, sa.ForeignKey(target), primary_key=True),
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("bucket_us", sa.BigInteger, primary_key=True),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("pairs", sa.LargeBinary, nullable=False),
    )


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
    )
    op.create_table(
        "frames",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("digest", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
    )
    op.create_table(
        "stacks",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("digest", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("frame_ids", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "series",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("sample_rate_hz", sa.Float, nullable=False),
        sa.Column("first_seen_us", sa.BigInteger, nullable=False),
        sa.Column("last_seen_us", sa.BigInteger, nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
    )
    op.create_index("ux_series_service_digest", "series", ["service_id", "digest"], unique=True)
    op.create_table(
        "series_labels",
        sa.Column("series_id", _ID, sa.ForeignKey("series.id"), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_series_labels_key_value", "series_labels", ["key", "value"])
    op.create_table(
        "windows",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("series_id", _ID, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("rolled_up", sa.Boolean, nullable=False),
        sa.Column("pairs", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_windows_service_start", "windows", ["service_id", "start_us"])
    op.create_index("ix_windows_series_start", "windows", ["series_id", "start_us"])
    op.create_index("ix_windows_rolled_up", "windows", ["rolled_up", "id"])
    _rollups("service_rollups", "service_id", sa.Integer, "services.id")
    _rollups("series_rollups", "series_id", _ID, "series.id")
    op.create_table(
        "rollup_progress",
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("built_until_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "rollup_progress",
        "series_rollups",
        "service_rollups",
        "windows",
        "series_labels",
        "series",
        "stacks",
        "frames",
        "services",
    ):
        op.drop_table(table)
