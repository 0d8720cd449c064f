"""Cross-site writes refused before any route runs.

A browser adds `Origin` (and `Sec-Fetch-Site`) to every request that may change state; a page
on another site that posts to us, even a "simple" `text/plain` POST that needs no CORS
preflight, shows up here with a foreign origin and gets 403. Tokens in a session cookie never
authorise a write anyway (`server/auth.py`); this is the second lock on the same door. Clients
that are not browsers (agents, the CLI, Pyroscope SDKs, curl) send neither header and pass.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class OriginCheck:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = cross_site(scope)
            if reason:
                response = JSONResponse({"detail": f"cross-site request refused: {reason}"}, 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def cross_site(scope: Scope) -> str | None:
    """Why this request comes from another site, or None."""
    headers = Headers(scope=scope)
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    host = headers.get("host", "")
    own = f"{scope.get('scheme', 'http')}://{host}"
    if origin.lower() != own.lower():
        return f"Origin {origin} is not {own}"
    return None
