"""Security headers on every response: a Content-Security-Policy and its companions.

Our pages, speedscope under /speedscope/ and Swagger UI at /docs each get the narrowest
policy they render under (tests/test_browser_security.py renders each in Chromium): scripts,
styles, fonts and fetches from this origin only, no inline script, no eval, and framing only
by our own pages (the service page embeds speedscope in an iframe).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The SHA-256 of the empty string. speedscope styles itself with Aphrodite, which appends an
# empty <style> element and fills it through CSSOM insertRule (not checked by CSP); Chromium
# refuses even an empty inline <style> without this hash, and speedscope then has no sheet
# to fill. The hash allows exactly that empty element, no other inline style.
EMPTY_INLINE_STYLE = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"

PAGES: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    # Our pages embed speedscope; no other site may frame any of them (clickjacking).
    "frame-ancestors": "'self'",
}
SPEEDSCOPE: dict[str, str] = {
    **PAGES,
    # Its bundle compiles WebAssembly at load: the C++ name demangler and long.js's fast
    # 64-bit arithmetic. This allows compiling WebAssembly only, never JavaScript from text.
    "script-src": "'self' 'wasm-unsafe-eval'",
    "style-src": f"'self' {EMPTY_INLINE_STYLE}",
}
DOCS: dict[str, str] = {
    **PAGES,
    # swagger-ui.css draws its icons as data: SVG and PNG images.
    "img-src": "'self' data:",
}


def policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


COMMON: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors' older equivalent, for browsers and proxies that only know this one.
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
    # Another origin's page may neither load our responses as subresources nor keep a
    # handle on a window of ours that it opened.
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The headers by path prefix, first match wins; a document's CSP governs what it loads, so
# only the pages' own paths matter here.
BY_PREFIX: list[tuple[str, dict[str, str]]] = [
    ("/speedscope/", {"Content-Security-Policy": policy(SPEEDSCOPE), **COMMON}),
    ("/docs", {"Content-Security-Policy": policy(DOCS), **COMMON}),
    ("/", {"Content-Security-Policy": policy(PAGES), **COMMON}),
]


def headers_for(path: str) -> dict[str, str]:
    return next(headers for prefix, headers in BY_PREFIX if path.startswith(prefix))


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # behind a proxy's prefix: judge the app's own path
            path = path[len(root) :] or "/"
        extra = headers_for(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Add the headers to every response of `app`; a second call changes nothing."""
    if any(m.cls is SecurityHeaders for m in app.user_middleware):
        return
    # Added last, so outermost of the app's own middleware: it sees every response they make.
    app.add_middleware(SecurityHeaders)
