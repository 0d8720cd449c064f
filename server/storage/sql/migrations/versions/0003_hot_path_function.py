"""the function a hot path times, for budget attribution from sampled stacks

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "qualname (file)" as the sampler names frames; NULL for agents that do not report it.
    with op.batch_alter_table("hot_path_calls") as batch:
        batch.add_column(sa.Column("function", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hot_path_calls") as batch:
        batch.drop_column("function")
