"""hot-path breach alerts: rules, evaluation state, alerts and the webhook outbox

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("hot_path", sa.String(112), nullable=False),
        sa.Column("quantile", sa.Float, nullable=True),
        sa.Column("budget_ns", sa.BigInteger, nullable=True),
        sa.Column("fire_after", sa.Integer, nullable=True),
        sa.Column("resolve_after", sa.Integer, nullable=True),
        sa.Column("min_calls", sa.BigInteger, nullable=True),
        sa.Column("severity", sa.String(32), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_alert_rules_service_hot_path", "alert_rules", ["service", "hot_path"], unique=True
    )
    op.create_table(
        "alerts",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("hot_path", sa.String(112), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("quantile", sa.Float, nullable=False),
        sa.Column("budget_ns", sa.BigInteger, nullable=False),
        sa.Column("fire_after", sa.Integer, nullable=False),
        sa.Column("interval_s", sa.Float, nullable=False),
        sa.Column("value_ns", sa.BigInteger, nullable=False),
        sa.Column("peak_ns", sa.BigInteger, nullable=False),
        sa.Column("starts_us", sa.BigInteger, nullable=False),
        sa.Column("ends_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alerts_state_starts", "alerts", ["state", "starts_us"])
    op.create_index("ix_alerts_service_hot_path", "alerts", ["service", "hot_path"])
    op.create_table(
        "alert_states",
        sa.Column("service", sa.String(128), primary_key=True),
        sa.Column("hot_path", sa.String(112), primary_key=True),
        sa.Column("breach_streak", sa.Integer, nullable=False),
        sa.Column("ok_streak", sa.Integer, nullable=False),
        sa.Column("streak_start_us", sa.BigInteger, nullable=True),
        sa.Column("alert_id", _ID, sa.ForeignKey("alerts.id"), nullable=True),
    )
    op.create_table(
        "alert_progress",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("evaluated_until_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("alert_id", _ID, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("claimed_until_us", sa.BigInteger, nullable=False),
        sa.Column("delivered_us", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_alert_notifications_pending", "alert_notifications", ["delivered_us", "url", "id"]
    )


def downgrade() -> None:
    op.drop_table("alert_notifications")
    op.drop_table("alert_progress")
    op.drop_table("alert_states")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
