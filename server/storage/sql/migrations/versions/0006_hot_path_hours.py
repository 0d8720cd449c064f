"""hot-path calls merged per series and hour, kept past raw retention

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("hot_path_calls") as batch:
        batch.add_column(
            sa.Column("rolled_up", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index("ix_hot_path_calls_rolled_up", "hot_path_calls", ["rolled_up", "id"])
    op.create_table(
        "hot_path_hours",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("series_id", _ID, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("name", sa.String(112), nullable=False),
        sa.Column("hour_us", sa.BigInteger, nullable=False),
        sa.Column("budget_ns", sa.BigInteger, nullable=True),
        sa.Column("function", sa.Text, nullable=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum_ns", sa.BigInteger, nullable=False),
        sa.Column("max_ns", sa.BigInteger, nullable=False),
        sa.Column("buckets", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ux_hot_path_hours_key", "hot_path_hours", ["series_id", "name", "hour_us"], unique=True
    )
    op.create_index("ix_hot_path_hours_service_hour", "hot_path_hours", ["service_id", "hour_us"])


def downgrade() -> None:
    op.drop_table("hot_path_hours")
    op.drop_index("ix_hot_path_calls_rolled_up", "hot_path_calls")
    with op.batch_alter_table("hot_path_calls") as batch:
        batch.drop_column("rolled_up")
