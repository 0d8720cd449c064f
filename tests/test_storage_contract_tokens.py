"""The token store's contract (`server/storage/tokens.py`) on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hotpath.server.auth_tokens import new_token, parse_scopes, secret_matches, split_token
from hotpath.server.storage import Storage, open_storage


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url)
    yield opened
    opened.close()


def test_tokens_are_kept_as_hashes_listed_per_tenant_and_revoked_within_their_tenant(
    storage: Storage,
) -> None:
    store = storage.tokens
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    plain_a, a = new_token("alpha", parse_scopes("ingest,read"), "agents", now=t0)
    plain_b, b = new_token("beta", parse_scopes("admin"), now=t0 + timedelta(seconds=1))
    store.add_token(a)
    store.add_token(b)
    with pytest.raises(ValueError, match="exists"):
        store.add_token(a)
    found = store.token(a.id)
    assert found is not None and found.tenant == "alpha" and found.name == "agents"
    assert found.scopes == {"ingest", "read"} and found.created == t0 and found.revoked is None
    token_id, secret = split_token(plain_a)  # type: ignore[misc]
    assert token_id == a.id and secret not in found.secret_hash
    assert secret_matches(secret, found.secret_hash)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), found.secret_hash)
    assert store.token("0" * 16) is None
    assert [t.id for t in store.tokens()] == [a.id, b.id]
    assert [t.id for t in store.tokens("beta")] == [b.id]
    # Another tenant cannot revoke it; its own can, once.
    assert not store.revoke_token(a.id, t0, tenant="beta")
    assert store.token(a.id).revoked is None  # type: ignore[union-attr]
    assert store.revoke_token(a.id, t0 + timedelta(hours=1), tenant="alpha")
    assert not store.revoke_token(a.id, t0 + timedelta(hours=2))
    assert store.token(a.id).revoked == t0 + timedelta(hours=1)  # type: ignore[union-attr]
    assert plain_b != plain_a


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "at least one scope"), ("read,root", "unknown scope 'root'"), (",", "at least one")],
)
def test_scopes_are_checked(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_scopes(text)


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "ä", "-lead", "a\x00"])
def test_tenant_names_are_checked(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        new_token(tenant, parse_scopes("read"))


@pytest.mark.parametrize(
    "token",
    ["", "hp_", "hp_0123456789abcdef_short", "Bearer x", "hp_0123456789ABCDEF_" + "a" * 43],
)
def test_malformed_tokens_are_not_split(token: str) -> None:
    assert split_token(token) is None


def test_scrypt_runs_once_per_token_and_revocation_still_counts(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After its verdict expires a token's record is read again (a revocation counts) but
    its secret is not hashed again: scrypt costs ~30 ms and 16 MiB per check."""
    from hotpath.server import auth

    calls = []
    real = auth.secret_matches
    monkeypatch.setattr(auth, "secret_matches", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(auth, "CACHE_S", 0.0)  # every verdict expires at once
    plain, record = new_token("alpha", parse_scopes("read"))
    storage.tokens.add_token(record)
    checker = auth.Authenticator(storage.tokens, rate_per_s=100, burst=100)
    for _ in range(5):
        principal = checker.principal(plain)
        assert principal is not None and principal.tenant == "alpha"
    assert len(calls) == 1
    wrong = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    assert checker.principal(wrong) is None and len(calls) == 2
    storage.tokens.revoke_token(record.id, datetime.now(UTC))
    assert checker.principal(plain) is None
