"""API tokens: what one looks like, how its secret is kept, and the scopes it can carry.

A token is `hp_<id>_<secret>`: the id (16 hex digits) finds the stored record, the secret
(32 random bytes, base64url) is checked against a scrypt hash (hashlib's, a kept KDF) with a
salt of its own. The plain token is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from hotpath.server.storage.tokens import TokenRecord

INGEST = "ingest"  # windows, /ingest, profile uploads, benchmark runs
READ = "read"  # profiles, diffs, pages, hot paths, alerts, benchmark history
ADMIN = "admin"  # alert rules, tokens, deletions
METRICS = "metrics"  # /metrics (Prometheus scrapes with a token of its own)
PUBLISH = "publish"  # benchmark runs on protected branches (main by default): the gate's baseline
SCOPES = {
    INGEST: "windows, /ingest, profile uploads, benchmark runs",
    READ: "profiles, diffs, pages, hot paths, alerts, benchmark history",
    ADMIN: "alert rules, tokens, deletions",
    METRICS: "/metrics",
    PUBLISH: "benchmark runs on protected branches (the gate's baseline)",
}

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TOKEN = re.compile(r"^hp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# scrypt at n=2^14, r=8, p=1 takes ~50 ms and 16 MiB: a stolen table costs an attacker that
# per guess; the server pays it once per token and keeps the verdict for a while.
_N, _R, _P, _LEN = 2**14, 8, 1, 32


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> frozenset[str]:
    """`ingest,read` (or a list of such) as a set; ValueError naming an unknown scope."""
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    scopes = frozenset(p.strip() for p in parts if p.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return scopes


def check_tenant(tenant: str) -> str:
    if not re.match(TENANT_PATTERN, tenant):
        raise ValueError(f"tenant {tenant!r} is not {TENANT_PATTERN}")
    return tenant


def _hash(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def new_token(
    tenant: str, scopes: frozenset[str], name: str = "", now: datetime | None = None
) -> tuple[str, TokenRecord]:
    """A fresh token: its plain text (to show once) and the record to store."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        id=token_id,
        tenant=check_tenant(tenant),
        name=name[:128],
        scopes=scopes,
        secret_hash=_hash(secret, secrets.token_bytes(16)),
        created=now or datetime.now(UTC),
    )
    return f"hp_{token_id}_{secret}", record


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token; None for anything else."""
    match = _TOKEN.match(token)
    return None if match is None else (match.group(1), match.group(2))


def secret_matches(secret: str, secret_hash: str) -> bool:
    try:
        kind, n, r, p, salt, digest = secret_hash.split("$")
        if kind != "scrypt":
            return False
        again = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=_LEN
        )
    except ValueError:
        return False
    return hmac.compare_digest(again.hex(), digest)
