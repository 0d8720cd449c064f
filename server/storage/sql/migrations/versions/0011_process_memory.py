"""process memory: RSS, PSS and USS per process, one row per agent window; alerts of a kind
(hot_path, rss_growth) with a summary

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "process_memory",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("t_us", sa.BigInteger, nullable=False),
        sa.Column("rss_bytes", sa.BigInteger, nullable=False),
        sa.Column("pss_bytes", sa.BigInteger),
        sa.Column("uss_bytes", sa.BigInteger),
    )
    op.create_index("ix_process_memory_service_time", "process_memory", ["service_id", "t_us"])
    op.create_index("ix_process_memory_time", "process_memory", ["t_us"])
    op.add_column(
        "alerts", sa.Column("kind", sa.String(16), nullable=False, server_default="hot_path")
    )
    op.add_column("alerts", sa.Column("summary", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("summary")
        batch.drop_column("kind")
    op.drop_table("process_memory")
