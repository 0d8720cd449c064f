"""API tokens: each names a tenant and scopes; the secret is kept only as a KDF hash

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(256), nullable=False),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_api_tokens_tenant", "api_tokens", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_tenant", "api_tokens")
    op.drop_table("api_tokens")
