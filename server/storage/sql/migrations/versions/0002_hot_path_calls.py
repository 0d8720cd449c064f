"""hot-path latency histograms per window

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "hot_path_calls",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "window_id", _ID, sa.ForeignKey("windows.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("series_id", _ID, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("name", sa.String(112), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("budget_ns", sa.BigInteger, nullable=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum_ns", sa.BigInteger, nullable=False),
        sa.Column("max_ns", sa.BigInteger, nullable=False),
        sa.Column("buckets", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_hot_path_calls_service_start", "hot_path_calls", ["service_id", "start_us"])


def downgrade() -> None:
    op.drop_table("hot_path_calls")
