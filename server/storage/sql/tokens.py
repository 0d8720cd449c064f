"""The SQL API-token store (`server/storage/tokens.py` is its contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.tables import api_tokens
from hotpath.server.storage.tokens import TokenRecord


def _to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_us(micros: int | None) -> datetime | None:
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, UTC)


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        secret_hash=row.secret_hash,
        created=_from_us(row.created_us),  # type: ignore[arg-type]
        revoked=_from_us(row.revoked_us),
    )


class SqlTokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_token(self, record: TokenRecord) -> None:
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    insert(api_tokens).values(
                        id=record.id,
                        tenant=record.tenant,
                        name=record.name,
                        scopes=",".join(sorted(record.scopes)),
                        secret_hash=record.secret_hash,
                        created_us=_to_us(record.created),
                        revoked_us=None if record.revoked is None else _to_us(record.revoked),
                    )
                )
        except IntegrityError:
            raise ValueError(f"a token with id {record.id!r} exists") from None

    def token(self, token_id: str) -> TokenRecord | None:
        with read_snapshot(self.engine) as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return None if row is None else _record(row)

    def tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        query = select(api_tokens).order_by(api_tokens.c.created_us, api_tokens.c.id)
        if tenant is not None:
            query = query.where(api_tokens.c.tenant == tenant)
        with read_snapshot(self.engine) as conn:
            return [_record(row) for row in conn.execute(query)]

    def revoke_token(self, token_id: str, when: datetime, tenant: str | None = None) -> bool:
        query = (
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_us.is_(None))
            .values(revoked_us=_to_us(when))
        )
        if tenant is not None:
            query = query.where(api_tokens.c.tenant == tenant)
        with write_transaction(self.engine) as conn:
            return conn.execute(query).rowcount == 1
