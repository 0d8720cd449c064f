"""Signing in, in real Chromium, on a server that requires tokens: a page sends the browser
to the sign-in form, a read token brings it back to the page it asked for (and the pages'
own API reads work with the cookie), JavaScript cannot read the cookie, and a page of another
origin cannot make the signed-in browser write anything."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RunningServer, make_token, start_server, stop_process
from tests.test_api import make_window


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    data = tmp_path_factory.mktemp("signin")
    db = f"sqlite:///{data / 'hotpath.db'}"
    running = start_server(db, data / "server", auth="required")
    with running.client() as client:
        stored = client.post(
            "/api/v1/profiles",
            params={"service": "desk", "format": "collapsed"},
            content=gzip.compress(b"main;route_order;risk_check 70\nmain;route_order 30\n"),
            headers={"Content-Encoding": "gzip"},
        )
        assert stored.status_code == 201, stored.text
    try:
        yield running, db
    finally:
        stop_process(running.process)


def test_sign_in_then_read_pages_with_the_cookie(browser, secured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    running, db = secured
    read = make_token(db, "read")
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(running.url + "/services/desk?from=-1h")
    assert page.url.startswith(running.url + "/signin?next=")
    page.fill("input[name=token]", read)
    page.click("button[type=submit]")
    page.wait_for_url(running.url + "/services/desk?from=-1h")
    assert "desk" in page.title() or page.locator("text=desk").count() > 0
    # The pages' own reads (the timeline's fetch) ride on the cookie.
    status = page.evaluate("() => fetch('/api/v1/services').then(r => r.status)")
    assert status == 200
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script can read it
    cookie = next(c for c in context.cookies() if c["name"] == "hotpath_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Even this site's own script cannot write with the cookie.
    write = page.evaluate(
        "() => fetch('/api/v1/alert-rules', {method: 'PUT', headers: {'Content-Type':"
        " 'application/json'}, body: JSON.stringify({service: 'desk', hot_path: 'x'})})"
        ".then(r => r.status)"
    )
    assert write == 401
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()


def test_another_origin_cannot_write_through_a_signed_in_browser(browser, secured) -> None:  # type: ignore[no-untyped-def]
    """A page on another site posts a whole, valid window as text/plain (no preflight) with
    the credentials of a browser signed in with an ingest token: nothing is stored. The same
    body from a client with the token in its header is."""
    running, db = secured
    token = make_token(db, "read,ingest")
    context = browser.new_context()
    page = context.new_page()
    page.goto(running.url + "/signin")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(running.url + "/")
    body = make_window(service="forged").model_dump_json()
    # The attacker's page, served by Playwright itself (nothing leaves the machine).
    page.route(
        "http://attacker.test/",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>hi</p>"),
    )
    page.goto("http://attacker.test/")
    page.evaluate(
        """([target, body]) => fetch(target + '/api/v1/windows', {method: 'POST',
        mode: 'no-cors', credentials: 'include', headers: {'Content-Type': 'text/plain'},
        body}).catch(() => null)""",
        [running.url, body],
    )
    context.close()
    with running.client() as client:
        assert "forged" not in [s["name"] for s in client.get("/api/v1/services").json()]
        direct = client.post("/api/v1/windows", content=body)
        assert direct.status_code == 201, direct.text
        assert "forged" in [s["name"] for s in client.get("/api/v1/services").json()]
