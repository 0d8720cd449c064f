"""The FastAPI application: storage opened and migrated at start, API, pages and static files."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from hotpath.server import (
    alerts_api,
    api,
    bench_api,
    bench_pages,
    compare_api,
    docs_offline,
    error_handlers,
    hotpath_api,
    memory_api,
    memory_captures_api,
    metrics,
    openapi_doc,
    pages,
    profiles_api,
    security_headers,
    signin,
    tokens_api,
)
from hotpath.server.alerts import alert_work
from hotpath.server.auth import Authenticator, SignInRequired, public
from hotpath.server.maintenance import Maintenance
from hotpath.server.origin_check import OriginCheck
from hotpath.server.params import refuse_control_characters
from hotpath.server.settings import Settings
from hotpath.server.storage import open_storage

log = logging.getLogger("hotpath.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    storage = open_storage(
        settings.database_url(), retention=settings.retention(), limits=settings.limits()
    )
    maintenance = Maintenance(
        storage.upkeep,
        rollup_interval_s=settings.rollup_interval_s,
        retention_interval_s=settings.retention_interval_s,
        alert_work=alert_work(storage.alerts, settings, storage.memory)
        if settings.alert_enabled
        else None,
    )
    app_metrics = metrics.Metrics(
        storage.upkeep,
        storage.alerts,
        lambda: maintenance.last_run_s,
        max_series=settings.max_metrics_series,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # A flame-graph query allocates 100k+ objects; with the default thresholds a full
        # collection ran every dozen queries and made the p95 (measured: 163 ms vs 73 ms for
        # a 24 h query). Objects alive at start-up are frozen out of collections for good.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        maintenance.start()
        yield
        maintenance.stop()
        storage.close()

    app = FastAPI(
        title="hotpath",
        version="1",
        lifespan=lifespan,
        summary="Continuous profiling for Python processes",
        # No stored name holds a control character: a parameter with one is refused (422)
        # on every route, so SQLite and PostgreSQL (which rejects NUL) answer alike.
        dependencies=[Depends(refuse_control_characters)],
        docs_url=None,  # /docs is served offline by docs_offline
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.storage = storage
    app.state.store = storage.profiles  # the profile routers' name for it, until they move
    app.state.metrics = app_metrics
    app.state.authenticator = Authenticator(
        storage.tokens, rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst
    )
    app.add_middleware(metrics.RequestMetrics, metrics=app_metrics)
    app.add_middleware(OriginCheck)
    error_handlers.install(app)
    app.add_exception_handler(SignInRequired, signin.to_sign_in)
    app.include_router(signin.router)
    app.include_router(tokens_api.router)
    app.include_router(api.router)
    app.include_router(profiles_api.router)
    app.include_router(compare_api.router)
    app.include_router(hotpath_api.router)
    app.include_router(memory_api.router)
    app.include_router(memory_captures_api.router)
    app.include_router(pages.router)
    app.include_router(alerts_api.router)
    app.include_router(alerts_api.page_router)
    app.include_router(metrics.router)
    app.include_router(bench_api.router)
    app.include_router(bench_pages.router)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).resolve().parent / "static"), name="static"
    )
    if (settings.speedscope_dir / "index.html").is_file():
        app.mount("/speedscope", StaticFiles(directory=settings.speedscope_dir), name="speedscope")
    else:
        log.warning(
            "speedscope not found at %s: flame graphs will not render (run npm ci)",
            settings.speedscope_dir,
        )
    security_headers.install(app)
    openapi_doc.install(app)
    docs_offline.install(app, settings.swagger_ui_dir, dependencies=[Depends(public)])
    return app
