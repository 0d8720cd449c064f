"""hot-path names per service and series' arrival times, for the cardinality limits

Names are filled from the hot paths already stored (hours and raw calls), so names a service
already has stay accepted after the upgrade; arrival times start as the data's times (the
server's clock was not kept before).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hot_path_names",
        sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id"), primary_key=True),
        sa.Column("name", sa.String(112), primary_key=True),
        sa.Column("arrived_us", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO hot_path_names (service_id, name, arrived_us) "
        "SELECT service_id, name, MAX(seen_us) FROM ("
        " SELECT service_id, name, hour_us AS seen_us FROM hot_path_hours"
        " UNION ALL SELECT service_id, name, start_us AS seen_us FROM hot_path_calls"
        ") AS seen GROUP BY service_id, name"
    )
    op.add_column(
        "series", sa.Column("arrived_us", sa.BigInteger, nullable=False, server_default="0")
    )
    op.execute("UPDATE series SET arrived_us = last_seen_us")


def downgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.drop_column("arrived_us")
    op.drop_table("hot_path_names")
