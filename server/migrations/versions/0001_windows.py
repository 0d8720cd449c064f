"""services, windows of stacks, and their labels

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


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
    )
    op.create_table(
        "windows",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("sample_rate_hz", sa.Float, nullable=False),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("stack_count", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_windows_service_time", "windows", ["service_id", "start_us"])
    op.create_table(
        "window_labels",
        sa.Column(
            "window_id", _ID, sa.ForeignKey("windows.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_window_labels_key_value", "window_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_table("window_labels")
    op.drop_table("windows")
    op.drop_table("services")
