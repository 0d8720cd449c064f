"""tenants on alert rules, alerts, alert states and benchmark runs

Every existing row belongs to tenant "default", the one tenant there was. Rules are unique
per (tenant, service, hot path), streaks keyed by it, and a benchmark upload's digest is
unique per (tenant, project, branch).

The tenant columns of `alerts`, `alert_rules` and `bench_runs` keep "default" as their
server default: SQLite adds a NOT NULL column only with a default, and recreating `alerts`
to drop it would delete its notifications (ON DELETE CASCADE fires on SQLite's DROP TABLE).
`alert_states` needs the tenant in its primary key, so it is rebuilt (nothing refers to it).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _tenant_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant", sa.String(64), nullable=False, server_default="default")


def upgrade() -> None:
    op.add_column("bench_runs", _tenant_column())
    op.drop_index("ux_bench_runs_project_branch_digest", "bench_runs")
    op.drop_index("ix_bench_runs_project_branch_run", "bench_runs")
    op.create_index(
        "ux_bench_runs_tenant_branch_digest",
        "bench_runs",
        ["tenant", "project", "branch", "digest"],
        unique=True,
    )
    op.create_index(
        "ix_bench_runs_tenant_branch_run", "bench_runs", ["tenant", "project", "branch", "run_us"]
    )

    op.add_column("alert_rules", _tenant_column())
    op.drop_index("ux_alert_rules_service_hot_path", "alert_rules")
    op.create_index(
        "ux_alert_rules_tenant_hot_path",
        "alert_rules",
        ["tenant", "service", "hot_path"],
        unique=True,
    )

    op.add_column("alerts", _tenant_column())
    op.drop_index("ix_alerts_service_hot_path", "alerts")
    op.create_index("ix_alerts_tenant_hot_path", "alerts", ["tenant", "service", "hot_path"])

    # A new table under a new name, filled, then swapped in: the same statements on both
    # databases. Its primary key needs a name of its own: PostgreSQL's default one is still
    # the old table's while both exist.
    op.create_table(
        "alert_states_0008",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("hot_path", sa.String(112), nullable=False),
        sa.Column("breach_streak", sa.Integer, nullable=False),
        sa.Column("ok_streak", sa.Integer, nullable=False),
        sa.Column("streak_start_us", sa.BigInteger, nullable=True),
        sa.Column("alert_id", _ID, sa.ForeignKey("alerts.id"), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "service", "hot_path", name="pk_alert_states"),
    )
    op.execute(
        "INSERT INTO alert_states_0008"
        " (tenant, service, hot_path, breach_streak, ok_streak, streak_start_us, alert_id)"
        " SELECT 'default', service, hot_path, breach_streak, ok_streak, streak_start_us,"
        " alert_id FROM alert_states"
    )
    op.drop_table("alert_states")
    op.rename_table("alert_states_0008", "alert_states")


def downgrade() -> None:
    raise NotImplementedError(
        "0008 cannot be undone without merging tenants' alerts and runs: restore a backup"
    )
