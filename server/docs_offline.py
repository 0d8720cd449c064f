"""/docs without the internet: Swagger UI from the pinned npm package swagger-ui-dist.

FastAPI's own /docs loads Swagger UI from a CDN and starts it with an inline script; the first
cannot be reached from a closed network and the second is refused by our CSP
(security_headers.py). Here the page loads the package's bundle from this server and starts
it with server/static/swagger-init.js, which reads its settings from data attributes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from hotpath.server.settings import REPO_ROOT

log = logging.getLogger("hotpath.server")

DOCS_PATH = "/docs"
ASSETS_PATH = "/static-vendor/swagger-ui"
# Installed by `npm ci` (package.json pins the version), never committed.
SWAGGER_UI_DIR = REPO_ROOT / "node_modules" / "swagger-ui-dist"
# The files the page uses. The package also holds a demo index.html and an initializer that
# point at a public pet store: not served.
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


class _Assets(StaticFiles):
    """StaticFiles limited to ASSETS."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSETS:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def _page(title: str, root: str, openapi_url: str, parameters: dict[str, object]) -> str:
    assets = escape(root + ASSETS_PATH)
    # Everything the init script needs is in attributes: no inline script for the CSP to allow.
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <title>{escape(title)}</title>
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{escape(root + openapi_url)}"
       data-parameters="{escape(json.dumps(jsonable_encoder(parameters)))}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{escape(root)}/static/swagger-init.js"></script>
</body>
</html>
"""


def _drop_default_docs(app: FastAPI) -> None:
    """Remove the CDN-backed /docs, /docs/oauth2-redirect and /redoc FastAPI adds by default.

    For an app created without docs_url=None, redoc_url=None: FastAPI has already added them.
    """
    default_paths = {app.docs_url, app.redoc_url}
    if app.docs_url:
        default_paths.add(app.swagger_ui_oauth2_redirect_url)
    default_paths.discard(None)
    if default_paths:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", None) not in default_paths
        ]
    app.docs_url = app.redoc_url = None


def install(
    app: FastAPI, swagger_ui_dir: Path = SWAGGER_UI_DIR, dependencies: Sequence[Any] = ()
) -> None:
    """Serve /docs from swagger-ui-dist in `swagger_ui_dir`; a second call changes nothing.

    `dependencies` go on the /docs route (e.g. the auth decision `Depends(auth.public)`).
    """
    if getattr(app.state, "docs_offline", False):
        return
    openapi_url = app.openapi_url
    if not openapi_url:  # no schema, nothing to show
        return
    app.state.docs_offline = True
    _drop_default_docs(app)
    ready = all((swagger_ui_dir / name).is_file() for name in ASSETS)
    if ready:
        app.mount(ASSETS_PATH, _Assets(directory=swagger_ui_dir), name="swagger-ui")
    else:
        log.warning(
            "swagger-ui-dist not found at %s: /docs will not render (run npm ci)", swagger_ui_dir
        )
    parameters = {**swagger_ui_default_parameters, **(app.swagger_ui_parameters or {})}

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=list(dependencies))
    async def docs(request: Request) -> HTMLResponse:
        if not ready:
            return HTMLResponse(
                "<!doctype html><title>API docs</title><p>Swagger UI is not installed:"
                " run <code>npm ci</code> in the repository.</p>",
                status_code=503,
            )
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(_page(f"{app.title} - Swagger UI", root, openapi_url, parameters))
