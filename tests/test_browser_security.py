"""The Content-Security-Policy and its companion headers, in real headless Chromium.

With server/security_headers.py and server/docs_offline.py installed, every page renders with
no CSP violation: the home page, a service page with its flame graph in speedscope, the diff
page, the alerts and benchmark pages, and /docs, which shows every operation of the API
without a request outside the server. Violations are caught twice: from the console, and
from a `securitypolicyviolation` listener in every frame. The policy is shown to bite: an
inline script and eval are refused and reported, and another origin cannot frame our pages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chromium import ARTIFACTS
from tests.servers import REPO, free_port, stop_process

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

SERVICE = "shop"
# Version 1 for minutes 30 to 26 ago, version 2 for minutes 15 to 11 ago: the diff page's sides.
STACKS = {
    "1": {"main (app.py:1);handle (app.py:10);parse (parse.py:5)": 300, "main (app.py:1);idle": 50},
    "2": {
        "main (app.py:1);handle (app.py:10);risk_check (risk.py:20)": 700,
        "main (app.py:1);idle": 50,
    },
}
MINUTES_AGO = {"1": range(30, 25, -1), "2": range(15, 10, -1)}
DIFF_QUERY = "base_from=-1h&base_label=version%3D1&head_from=-1h&head_label=version%3D2"

# The server with both modules installed, whether or not create_app does it already (both
# installs are idempotent), so this test holds before and after they are wired into app.py.
SERVE = """
import sys
import uvicorn
from hotpath.server import docs_offline, security_headers
from hotpath.server.app import create_app
app = create_app()
security_headers.install(app)
docs_offline.install(app)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

# Runs in every frame before its own scripts (Playwright injects it outside the page's CSP).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation({
    directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile,
    line: e.lineNumber, sample: e.sample, page: document.location.href,
  });
});
"""
HEADERS = {
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
}


def _start(data_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = data_dir / "server.log"
    # auth off: this test is about the browser, not tokens (loopback only, as `serve` requires).
    env = {**os.environ, "HOTPATH_DATA_DIR": str(data_dir), "HOTPATH_AUTH": "off"}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"server did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL, headers and offline /docs installed, the service in two versions."""
    url, process = _start(tmp_path_factory.mktemp("secured"))
    now = int(time.time()) // 60 * 60
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for version, stacks in STACKS.items():
                body = "".join(f"{stack} {count}\n" for stack, count in stacks.items())
                for minutes in MINUTES_AGO[version]:
                    start = now - 60 * minutes
                    response = client.post(
                        "/ingest",
                        params={
                            "name": f"{SERVICE}{{version={version}}}",
                            "from": start,
                            "until": start + 10,
                            "format": "folded",
                        },
                        content=body,
                    )
                    assert response.status_code == 200, response.text
        yield url
    finally:
        stop_process(process)


def _speedscope_probe(violation: dict[str, Any]) -> bool:
    """The one refusal allowed: speedscope's bundle probes for Node's `require` at load
    (protobufjs's `inquire`: `eval("quire".replace(/^/,"re"))` in a try/catch), once for each
    of two optional modules. Refused, it falls back to its own code, as in any browser; allowing
    it would take 'unsafe-eval'."""
    return (
        violation["directive"] == "script-src"
        and violation["blocked"] == "eval"
        and "/speedscope/speedscope-" in violation["source"]
    )


class Watched:
    """A browser context that records CSP violations, console errors and every request."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 800})
        self.violations: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context.expose_binding("__cspViolation", lambda _src, v: self.violations.append(v))
        self.context.add_init_script(REPORT_VIOLATIONS)
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.on("page", self._watch)
        self.page = self.context.new_page()

    def _watch(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            if message.type == "error" or "Content Security Policy" in message.text:
                self.errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def goto(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, url
        assert set(response.headers) >= HEADERS, f"{url}: {response.headers}"

    def assert_clean(self) -> None:
        unexpected = [v for v in self.violations if not _speedscope_probe(v)]
        assert unexpected == [], f"CSP violations: {unexpected}"
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    watched = Watched(browser)
    yield watched
    watched.context.close()


def test_installs_are_idempotent_and_replace_the_cdn_docs(tmp_path: Path) -> None:
    from hotpath.server import docs_offline, security_headers
    from hotpath.server.app import create_app
    from hotpath.server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path))
    for _ in range(2):
        security_headers.install(app)
        docs_offline.install(app)
    middleware = [m for m in app.user_middleware if m.cls is security_headers.SecurityHeaders]
    assert len(middleware) == 1
    paths = [getattr(route, "path", None) for route in app.routes]
    assert paths.count("/docs") == 1
    assert "/redoc" not in paths and "/docs/oauth2-redirect" not in paths
    app.state.storage.close()


def test_every_response_carries_the_headers(secured: str) -> None:
    with httpx.Client(base_url=secured, timeout=30) as client:
        for path in (
            "/",
            f"/services/{SERVICE}",
            "/api/v1/services",
            "/openapi.json",
            "/static/hotpath.css",
            "/speedscope/index.html",
            "/docs",
            "/static-vendor/swagger-ui/swagger-ui-bundle.js",
            "/no/such/page",
        ):
            response = client.get(path)
            assert response.status_code == (404 if path == "/no/such/page" else 200), path
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'self'" in csp and "default-src 'self'" in csp, path
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "SAMEORIGIN", path
            assert headers["referrer-policy"] == "same-origin", path
        # Only the three files the page uses; not the package's pet-store demo.
        assert client.get("/static-vendor/swagger-ui/index.html").status_code == 404
        assert client.get("/static-vendor/swagger-ui/swagger-initializer.js").status_code == 404
        assert client.get("/redoc").status_code == 404


def test_pages_render_with_no_violation(watched: Watched, secured: str) -> None:
    watched.goto(secured + "/")
    watched.page.locator("a.service-link", has_text=SERVICE).wait_for()

    # The policy bites: an inline script and an inline style are refused, and the listener
    # hears it. (Not eval: Playwright's evaluate is exempt from the CSP's eval rule.)
    refused = watched.page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.appendChild(script);
          const probe = document.createElement("p");
          probe.setAttribute("style", "color: rgb(1, 2, 3)");
          document.body.appendChild(probe);
          return [window.__ran === true, getComputedStyle(probe).color];
        }"""
    )
    assert refused[0] is False and refused[1] != "rgb(1, 2, 3)"
    watched.page.wait_for_timeout(200)  # the violation events are queued as tasks
    assert {v["directive"] for v in watched.violations} == {"script-src-elem", "style-src-attr"}
    watched.violations.clear()
    watched.errors.clear()

    # The service page and speedscope in its iframe: the flame graph renders, and speedscope
    # styles itself (Aphrodite's rules, inserted into its empty <style>).
    watched.goto(f"{secured}/services/{SERVICE}?from=-1h")
    viewer = watched.page.frame_locator("#flamegraph")
    viewer.locator("text=Left Heavy").wait_for(timeout=20_000)
    viewer.locator("text=Sandwich").click()
    viewer.locator("text=Symbol Name").wait_for(timeout=10_000)
    frame = watched.page.frame_locator("#flamegraph").locator("body")
    body = frame.inner_text()
    assert "risk_check" in body and "parse" in body
    rules = frame.evaluate(
        "() => document.querySelector('style[data-aphrodite]').sheet.cssRules.length"
    )
    assert rules > 10
    ARTIFACTS.mkdir(exist_ok=True)
    watched.page.screenshot(path=str(ARTIFACTS / "csp-service.png"))

    # The diff page draws its graph and fills its table.
    watched.goto(f"{secured}/services/{SERVICE}/diff?{DIFF_QUERY}")
    # A function, not an expression: Playwright evals an expression in the page: refused.
    watched.page.wait_for_function(
        "() => window.__hotpathFirstRender !== undefined", timeout=15_000
    )
    watched.page.locator("#slower tbody tr[data-function]").first.wait_for(timeout=15_000)

    for path in ("/alerts", "/benchmarks"):
        watched.goto(secured + path)
    watched.page.wait_for_load_state("networkidle")
    watched.assert_clean()


def test_docs_show_every_operation_offline(watched: Watched, secured: str) -> None:
    watched.goto(secured + "/docs")
    watched.page.locator(".opblock").first.wait_for(timeout=20_000)
    watched.page.wait_for_load_state("networkidle")
    schema = httpx.get(secured + "/openapi.json", timeout=30).json()
    expected = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    }
    shown = watched.page.evaluate(
        """() => [...document.querySelectorAll(".opblock-summary")].map((s) => [
          s.querySelector(".opblock-summary-method").textContent.trim(),
          s.querySelector(".opblock-summary-path").dataset.path,
        ])"""
    )
    assert {tuple(op) for op in shown} == expected
    ARTIFACTS.mkdir(exist_ok=True)
    watched.page.screenshot(path=str(ARTIFACTS / "csp-docs.png"))
    outside = [url for url in watched.requests if not url.startswith(secured + "/")]
    assert outside == [], f"requests outside the server: {outside}"
    assert any("/static-vendor/swagger-ui/swagger-ui-bundle.js" in u for u in watched.requests)
    watched.assert_clean()


def test_another_origin_cannot_frame_our_pages(watched: Watched, secured: str) -> None:
    # The hostile page is answered by Playwright itself: nothing leaves the machine.
    hostile = "http://hostile.invalid/"
    watched.page.route(
        hostile,
        lambda route: route.fulfill(
            content_type="text/html", body=f'<iframe id="f" src="{secured}/"></iframe>'
        ),
    )

    def framed_text() -> str:
        watched.page.goto(hostile)
        watched.page.wait_for_load_state("networkidle")
        child = watched.page.frames[1]
        return child.url + " " + child.evaluate("document.body ? document.body.innerText : ''")

    # Refused: the frame is left on Chromium's error page, not our home page.
    assert framed_text().startswith("chrome-error://")
    assert f"{secured}/" in watched.requests

    # The control: the same home page with the two headers stripped on the way is framed.
    def strip(route: Any) -> None:
        response = route.fetch()
        headers = {
            k: v
            for k, v in response.headers.items()
            if k not in {"content-security-policy", "x-frame-options"}
        }
        route.fulfill(response=response, headers=headers)

    watched.page.route(f"{secured}/", strip)
    assert "Services" in framed_text()
