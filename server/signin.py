"""Signing in to the pages: a read token pasted once into a form becomes an HttpOnly,
SameSite=Strict session cookie that the pages (and their own API reads) send back.

The cookie holds the token itself, so revoking the token ends every session made with it;
the cookie authorises reads only (`server/auth.py`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from hotpath.server.auth import SESSION_COOKIE, SignInRequired, public, sign_in_url
from hotpath.server.auth_tokens import READ
from hotpath.server.body import read_body

router = APIRouter(include_in_schema=False, dependencies=[Depends(public)])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
MAX_FORM_BYTES = 4096


def safe_next(value: str | None) -> str:
    """Only a path of this site: never another site (an open redirect) or `//host`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _form(request: Request, next_url: str, error: str = "", status: int = 200) -> Response:
    hours = request.app.state.settings.session_max_age_s // 3600
    return templates.TemplateResponse(
        request,
        "signin.html",
        {"next_url": next_url, "error": error, "hours": hours, "signed_in": False},
        status_code=status,
    )


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str = "/") -> Response:
    return _form(request, safe_next(next))


@router.post("/signin")
async def sign_in(request: Request) -> Response:
    body = await read_body(request, MAX_FORM_BYTES)
    fields = parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0].strip()
    next_url = safe_next((fields.get("next") or ["/"])[0])
    # The scrypt check and the lookup block: off the event loop.
    authenticator = request.app.state.authenticator
    principal = await run_in_threadpool(authenticator.principal, token) if token else None
    if principal is None:
        return _form(request, next_url, "That token is not valid (unknown or revoked).", 401)
    if READ not in principal.scopes:
        return _form(request, next_url, "That token has no read scope.", 403)
    response = RedirectResponse(next_url, 303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=request.app.state.settings.session_max_age_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
def sign_out() -> Response:
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def to_sign_in(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(sign_in_url(exc.next_url), 303)
