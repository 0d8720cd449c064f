"""One HTTP answer per storage error kind, for every route and page alike.

Routes raise the storage's own exceptions (server/storage/errors.py) and let these answer,
so "unknown service" reads the same everywhere and a database outage is a retryable 503
wherever it strikes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hotpath.server.storage.errors import (
    Conflict,
    HotPathLimitExceeded,
    SeriesLimitExceeded,
    StorageUnavailable,
    UnknownRun,
    UnknownService,
)

log = logging.getLogger("hotpath.server")


async def unknown_service(_request: Request, exc: Exception) -> JSONResponse:
    service = getattr(exc, "service", None) or (exc.args[0] if exc.args else "")
    return JSONResponse({"detail": f"unknown service {service!r}"}, 404)


async def unknown_run(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"no benchmark run {getattr(exc, 'run_id', '')}"}, 404)


async def conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 409)


async def series_limit(_request: Request, exc: Exception) -> JSONResponse:
    """422, not 429: waiting does not make room (only the service's series going quiet for
    the active window does), so the sender should set the window aside, not retry it."""
    return JSONResponse({"detail": str(exc), "limit": "max_series_per_service"}, 422)


async def hot_path_limit(request: Request, exc: Exception) -> JSONResponse:
    """422 naming the limit and the names that did not fit: the agent sends the window again
    without them (its samples are kept) and leaves them out of later windows."""
    refused = list(getattr(exc, "refused", []))
    request.app.state.metrics.hot_paths_refused_for(getattr(exc, "service", ""), len(refused))
    return JSONResponse(
        {"detail": str(exc), "limit": "max_hot_paths_per_service", "refused_hot_paths": refused},
        422,
    )


async def storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The database went away (or SQLite stayed locked): a retryable 503, not a 500. Nothing
    was half-written, since every write is one transaction; the SQL backend's pool
    reconnects by itself (pre-ping) once the database is back."""
    reason = getattr(exc, "reason", exc)
    log.warning("database unavailable: %s", reason)
    return JSONResponse(
        {"detail": f"database unavailable, retry later: {reason}"},
        503,
        headers={"Retry-After": "5"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(UnknownService, unknown_service)
    app.add_exception_handler(UnknownRun, unknown_run)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(SeriesLimitExceeded, series_limit)
    app.add_exception_handler(HotPathLimitExceeded, hot_path_limit)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)
