"""Who is calling: every request's token turned into a `Principal` (tenant and scopes), once,
in one dependency, and each route's decision about it.

Every route declares one decision, and `tests/test_auth_routes.py` fails for a route without:
* `requires(SCOPE)`: a token with that scope (API routes; 401 without a valid token, 403
  without the scope);
* `page_reader`: a read token, from the session cookie of the sign-in page; without one the
  browser is sent to `/signin`;
* `public`: no token (the health check, the sign-in page, static assets, the API's schema).

Tokens arrive as `Authorization: Bearer hp_...`. The session cookie carries a token too, but
only for reading (GET and HEAD): a cookie never authorises a change, so a page on another
site cannot make a signed-in browser write anything (and `server/origin_check.py` refuses
cross-site writes outright). With `--auth off` (loopback only) every request is the default
tenant's with every scope.

A token's secret is checked against its scrypt hash once per server process; its verdict
is kept for `CACHE_S` and then its record is read again, so a revocation reaches every server
within that time without scrypt running again (measured in a soak: re-running it every 30 s
set the ingest p99 and kept ~35 MiB of scrypt buffers in the worker threads). Failed attempts
per token id are limited, so guessing a secret costs the server no more than a few hashes a
minute.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import iter_route_contexts

from hotpath.server.auth_tokens import SCOPES, secret_matches, split_token
from hotpath.server.storage.profiles import DEFAULT_TENANT
from hotpath.server.storage.tokens import TokenStore

SESSION_COOKIE = "hotpath_session"
CACHE_S = 30.0  # how long a verdict on a token is kept: the delay of a revocation
CACHE_SIZE = 10_000
FAILURES_PER_MINUTE = 10  # wrong secrets per token id before it is locked out for a minute
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Routes that are not FastAPI's own (FastAPI's schema and docs, mounted static files): public,
# as they show nothing of any tenant. Any other such route has no decision (see below).
PUBLIC_PATHS = frozenset(
    {
        "/openapi.json",
        "/static",
        "/speedscope",
        "/static-vendor/swagger-ui",
    }
)


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    token_id: str | None  # None when authentication is off


class SignInRequired(Exception):
    """A page asked for without a valid session: the browser goes to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class TokenBucket:
    """Requests per token: `rate` a second on average, bursts of `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a request may go now, else the seconds to wait for one."""
        now = time.monotonic()
        with self._lock:
            level, then = self._state.pop(key, (self.burst, now))
            level = min(self.burst, level + (now - then) * self.rate)
            if level >= 1:
                self._state[key] = (level - 1, now)
                wait = 0.0
            else:
                self._state[key] = (level, now)
                wait = (1 - level) / self.rate
            while len(self._state) > CACHE_SIZE:
                self._state.popitem(last=False)
            return wait


class Authenticator:
    """Tokens to principals, with a short-lived cache of verdicts (both ways)."""

    def __init__(self, tokens: TokenStore, *, rate_per_s: float, burst: int) -> None:
        self.tokens = tokens
        self.bucket = TokenBucket(rate_per_s, burst)
        self._verdicts: OrderedDict[str, tuple[Principal | None, float]] = OrderedDict()
        self._failures: dict[str, list[float]] = {}
        # Tokens whose secret passed scrypt (by their sha256): when their verdict expires, the
        # record is read again (revocation) but scrypt (~30 ms, 16 MiB) is not run again.
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, token: str) -> Principal | None:
        """The token's principal; None for an unknown, revoked or malformed token. Raises
        HTTPException 429 when the token's id has had too many wrong secrets lately."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        parts = split_token(token)
        found = None
        if parts is not None:
            token_id, secret = parts
            record = self.tokens.token(token_id)
            if record is not None and record.revoked is None:
                with self._lock:
                    verified = self._verified.get(key) == record.secret_hash
                if verified:  # its secret was checked before: only revocation can change
                    found = Principal(record.tenant, record.scopes, record.id)
                else:
                    self._check_lockout(token_id, now)
                    if secret_matches(secret, record.secret_hash):
                        found = Principal(record.tenant, record.scopes, record.id)
                        with self._lock:
                            self._verified[key] = record.secret_hash
                            while len(self._verified) > CACHE_SIZE:
                                self._verified.popitem(last=False)
                    else:
                        self._failed(token_id, now)
        with self._lock:
            self._verdicts[key] = (found, now + CACHE_S)
            while len(self._verdicts) > CACHE_SIZE:
                self._verdicts.popitem(last=False)
        return found

    def forget(self) -> None:
        """Drop every kept verdict (after a revocation on this server)."""
        with self._lock:
            self._verdicts.clear()

    def _check_lockout(self, token_id: str, now: float) -> None:
        with self._lock:
            recent = [t for t in self._failures.get(token_id, []) if t > now - 60]
            self._failures[token_id] = recent
        if len(recent) >= FAILURES_PER_MINUTE:
            raise HTTPException(
                429,
                f"too many wrong secrets for token {token_id} (at most {FAILURES_PER_MINUTE} "
                "a minute): wait and retry",
                headers={"Retry-After": "60"},
            )

    def _failed(self, token_id: str, now: float) -> None:
        with self._lock:
            self._failures.setdefault(token_id, []).append(now)
            if len(self._failures) > CACHE_SIZE:
                self._failures.pop(next(iter(self._failures)))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HTTPException(
            401,
            "the Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return value.strip()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def current_principal(request: Request) -> Principal:
    """The request's principal (kept on `request.state`); 401 without a valid token, 429
    beyond the token's request rate."""
    kept = getattr(request.state, "principal", None)
    if kept is not None:
        return kept  # type: ignore[no-any-return]
    settings = request.app.state.settings
    if settings.auth == "off":
        principal = Principal(DEFAULT_TENANT, frozenset(SCOPES), None)
        request.state.principal = principal
        return principal
    token = _bearer(request)
    if token is None and request.method in SAFE_METHODS:
        token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        reason = (
            "a session cookie never authorises a change: send Authorization: Bearer <token>"
            if request.cookies.get(SESSION_COOKIE)
            else "this route needs a token: send Authorization: Bearer <token> "
            "(make one with `hotpath token create`)"
        )
        raise _unauthorized(reason)
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.principal(token)
    if principal is None:
        raise _unauthorized("the token is not valid: unknown, revoked or malformed")
    wait = authenticator.bucket.take(principal.token_id or "")
    if wait:
        raise HTTPException(
            429,
            f"token {principal.token_id} is over its request rate "
            f"(rate_limit_per_s {authenticator.bucket.rate:g}, burst "
            f"{authenticator.bucket.burst:g}): retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def requires(scope: str) -> Callable[[Principal], Principal]:
    """The decision of an API route: a token with `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            have = ", ".join(sorted(principal.scopes))
            raise HTTPException(
                403, f"this needs a token with the {scope} scope; this token has: {have}"
            )
        return principal

    check.auth_decision = scope  # type: ignore[attr-defined]
    check.__name__ = f"requires_{scope}"
    return check


def page_reader(request: Request) -> Principal:
    """The decision of a page: a read token, from the session cookie; without one the
    browser is sent to the sign-in page (and comes back here after it)."""
    try:
        principal = current_principal(request)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target) from None
    if "read" not in principal.scopes:
        raise HTTPException(403, "pages need a token with the read scope")
    return principal


page_reader.auth_decision = "page"  # type: ignore[attr-defined]


def public() -> None:
    """The decision of a route anyone may call: it shows nothing of any tenant."""


public.auth_decision = "public"  # type: ignore[attr-defined]


def _decisions(dependant: Any) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        decision = getattr(sub.call, "auth_decision", None)
        if decision:
            found.append(decision)
        found += _decisions(sub)
    return found


def route_decisions(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """Every (method, path) the app serves and its auth decision: a scope, "page", "public",
    or None when it has none (or several that disagree)."""
    decisions: dict[tuple[str, str], str | None] = {}
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        dependant = getattr(context, "dependant", None)
        if dependant is not None:
            found = set(_decisions(dependant))
            decision = found.pop() if len(found) == 1 else None
        else:
            decision = "public" if path in PUBLIC_PATHS else None
        for method in sorted(context.methods or {"GET"}):
            decisions[(method, path)] = decision
    return decisions


def sign_in_url(next_url: str) -> str:
    return "/signin?next=" + quote(next_url, safe="/")
