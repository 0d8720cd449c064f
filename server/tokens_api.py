"""Tokens of the caller's tenant, managed over HTTP by an admin token (`hotpath token` does the
same on the database directly, for the first token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hotpath.server.auth import requires
from hotpath.server.auth_tokens import ADMIN, SCOPES, new_token, parse_scopes
from hotpath.server.storage.tokens import TokenRecord, TokenStore
from hotpath.server.tenancy import tenant

router = APIRouter(prefix="/api/v1", tags=["tokens"], dependencies=[Depends(requires(ADMIN))])
Tenant = Annotated[str, Depends(tenant)]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


class TokenOut(BaseModel):
    id: str
    tenant: str
    name: str
    scopes: list[str]
    created: datetime
    revoked: datetime | None


class TokenIn(BaseModel):
    name: str = Field("", max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES))


class NewTokenOut(TokenOut):
    token: str  # shown once: only its hash is kept


def _store(request: Request) -> TokenStore:
    return request.app.state.storage.tokens  # type: ignore[no-any-return]


def _out(record: TokenRecord) -> TokenOut:
    return TokenOut(
        id=record.id,
        tenant=record.tenant,
        name=record.name,
        scopes=sorted(record.scopes),
        created=record.created,
        revoked=record.revoked,
    )


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(request: Request, tenant_id: Tenant) -> list[TokenOut]:
    return [_out(r) for r in _store(request).tokens(tenant_id)]


@router.post("/tokens", response_model=NewTokenOut, status_code=201, responses={422: {}})
async def create_token(request: Request, tenant_id: Tenant, body: TokenIn) -> NewTokenOut:
    """A new token in the caller's tenant; the response holds its only plain copy."""
    try:
        scopes = parse_scopes(body.scopes)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    plain, record = new_token(tenant_id, scopes, body.name)
    await run_in_threadpool(_store(request).add_token, record)
    return NewTokenOut(**_out(record).model_dump(), token=plain)


@router.delete("/tokens/{token_id}", status_code=204, responses={404: {}})
def revoke_token(request: Request, tenant_id: Tenant, token_id: TokenId) -> Response:
    if not _store(request).revoke_token(token_id, datetime.now(UTC), tenant_id):
        raise HTTPException(404, f"no active token {token_id} in this tenant")
    request.app.state.authenticator.forget()
    return Response(status_code=204)
