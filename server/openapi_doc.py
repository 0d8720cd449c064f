"""The OpenAPI schema tells the truth about errors and auth: every operation documents the
answers it can give besides its own (401, 403 and 429 where a token is needed, 404, 413, 415,
422, 503), all with the one error body the server sends (`{"detail": ...}`: a message, or
FastAPI's list of validation errors), and the bearer token it needs. schemathesis holds the
server to this schema (tests/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hotpath.server.auth import route_decisions

ERROR = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "title": "Detail",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {}}],
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ALWAYS = {
    "404": "Unknown service, run or hot path (inside the token's tenant)",
    "422": "Invalid input: the message names what is wrong",
    "503": "The database is unavailable: retry (Retry-After)",
}
_WITH_BODY = {
    "400": "The body cannot be read (not JSON, or not the encoding it claims)",
    "413": "Too large: the message names the limit",
    "415": "Unsupported encoding",
}
_WITH_TOKEN = {
    "401": "No valid token: send Authorization: Bearer <token>",
    "403": "The token lacks the scope, or the request is cross-site",
    "429": "Over the token's request rate (Retry-After)",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`hotpath token create`)",
        }
        decisions = route_decisions(app)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                decision = decisions.get((method.upper(), path))
                responses = operation.setdefault("responses", {})
                wanted = dict(_ALWAYS)
                if method in ("post", "put"):
                    wanted |= _WITH_BODY
                if decision not in (None, "public"):
                    wanted |= _WITH_TOKEN
                    operation["security"] = [{"bearer": []}]
                    operation["description"] = (
                        operation.get("description", "") + f"\n\nNeeds a token with the "
                        f"`{decision}` scope."
                    ).strip()
                for status, description in wanted.items():
                    responses.setdefault(status, {"description": description})
                for status, answer in responses.items():
                    if status[0] in "45":  # every error is the one error body
                        answer["content"] = _error("")["content"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
