"""memory captures: one row per on-demand memray capture, beside its three typed windows

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "memory_captures",
        sa.Column("id", Id, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("pause_attach_ms", sa.Float, nullable=False),
        sa.Column("pause_detach_ms", sa.Float, nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("held_bytes", sa.BigInteger, nullable=False),
        sa.Column("function_count", sa.Integer, nullable=False),
        sa.Column("functions", sa.LargeBinary, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_memory_captures_service_key",
        "memory_captures",
        ["service_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(
        "ix_memory_captures_service_start", "memory_captures", ["service_id", "start_us"]
    )


def downgrade() -> None:
    op.drop_index("ix_memory_captures_service_start", "memory_captures")
    op.drop_index("ux_memory_captures_service_key", "memory_captures")
    op.drop_table("memory_captures")
