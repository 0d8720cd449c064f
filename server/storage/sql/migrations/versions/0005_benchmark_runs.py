"""benchmark runs uploaded by `hotpath gate`, and their per-benchmark statistics

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "bench_runs",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("commit_id", sa.String(64), nullable=True),
        sa.Column("run_us", sa.BigInteger, nullable=False),
        sa.Column("uploaded_us", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("machine", sa.Text, nullable=True),
        sa.Column("benchmarks", sa.Integer, nullable=False),
        sa.Column("raw_size", sa.Integer, nullable=False),
        sa.Column("raw_zstd", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ux_bench_runs_project_branch_digest",
        "bench_runs",
        ["project", "branch", "digest"],
        unique=True,
    )
    op.create_index(
        "ix_bench_runs_project_branch_run", "bench_runs", ["project", "branch", "run_us"]
    )
    op.create_table(
        "bench_results",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "run_id", _ID, sa.ForeignKey("bench_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("fullname", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("bench_group", sa.Text, nullable=True),
        sa.Column("min_s", sa.Float, nullable=False),
        sa.Column("max_s", sa.Float, nullable=False),
        sa.Column("mean_s", sa.Float, nullable=False),
        sa.Column("median_s", sa.Float, nullable=False),
        sa.Column("stddev_s", sa.Float, nullable=False),
        sa.Column("iqr_s", sa.Float, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("iterations", sa.Integer, nullable=False),
    )
    op.create_index("ix_bench_results_run", "bench_results", ["run_id"])
    op.create_index("ix_bench_results_fullname_run", "bench_results", ["fullname", "run_id"])


def downgrade() -> None:
    op.drop_table("bench_results")
    op.drop_table("bench_runs")
