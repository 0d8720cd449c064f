"""Whose request this is: the tenant every read and write of the request is inside.

One FastAPI dependency, taken once per request and passed down to the storage contract, so
that handlers never decide the tenant themselves (Grafana Pyroscope's tenant interceptor is
the pattern). Storage code takes the tenant as an argument and needs no change when tenants
arrive.
"""

from __future__ import annotations

from fastapi import Request

from hotpath.server.storage.profiles import DEFAULT_TENANT


def tenant(request: Request) -> str:
    """The request's tenant: always the default one for now. The issue on trust replaces this
    with the tenant named by the request's token (and its scopes)."""
    return DEFAULT_TENANT
