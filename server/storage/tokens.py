"""The API-token store contract: tokens that name a tenant and scopes.

The store keeps records, never secrets: a token's secret exists only in the hash the auth
module makes (`server/auth_tokens.py`). Guarantees every backend gives
(`tests/test_storage_contract_tokens.py`): a token id is unique; a revoked token stays listed
with its revocation time and is never valid again; revoking is scoped to a tenant when one
is given, so one tenant's admin cannot revoke another's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class TokenRecord:
    id: str  # public: the part of the token that finds its row
    tenant: str
    name: str
    scopes: frozenset[str]
    secret_hash: str  # the KDF's output with its parameters and salt
    created: datetime
    revoked: datetime | None = None


class TokenStore(Protocol):
    def add_token(self, record: TokenRecord) -> None:
        """Store a new token (ValueError if its id exists)."""

    def token(self, token_id: str) -> TokenRecord | None:
        """The token with this id, revoked or not; None if there is none."""

    def tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        """All tokens (of `tenant` when given), oldest first."""

    def revoke_token(self, token_id: str, when: datetime, tenant: str | None = None) -> bool:
        """Mark the token revoked at `when`; False if there is no such token (in `tenant`)
        or it was revoked already."""
