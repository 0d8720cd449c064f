"""Whose request this is: the tenant every read and write of the request is inside.

One FastAPI dependency, taken once per request from the request's principal (its token, see
`server/auth.py`) and passed down to the storage contract, so that handlers never decide the
tenant themselves (Grafana Pyroscope's tenant interceptor is the pattern).
"""

from __future__ import annotations

from hotpath.server.auth import CurrentPrincipal


def tenant(principal: CurrentPrincipal) -> str:
    """The tenant of the request's token (the default tenant when authentication is off)."""
    return principal.tenant
