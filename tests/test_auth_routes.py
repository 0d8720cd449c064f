"""Every route has an auth decision, and a real server keeps to it.

The walk covers every route the app has (the OpenAPI schema's and the pages, which are not in
it) and fails for one without a decision, so a route added later cannot forget it. Then each
route is called on a real server (uvicorn, SQLite, `--auth required`) with no token, with a
token of every other scope, and with a token of its own scope: 401 (or the sign-in page),
403, and neither.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hotpath.server.auth import PUBLIC_PATHS, route_decisions
from hotpath.server.auth_tokens import SCOPES
from tests.servers import REPO, RunningServer, make_token, start_server, stop_process

PAGE = "page"


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    from hotpath.server.app import create_app
    from hotpath.server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("walk")))
    return route_decisions(app)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    data = tmp_path_factory.mktemp("auth")
    db = f"sqlite:///{data / 'hotpath.db'}"
    running = start_server(db, data / "server", auth="required")
    try:
        yield running, db
    finally:
        stop_process(running.process)


def test_every_route_has_an_auth_decision(tmp_path: Path) -> None:
    from hotpath.server.app import create_app
    from hotpath.server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path))
    decisions = route_decisions(app)
    undecided = sorted(f"{m} {p}" for (m, p), d in decisions.items() if d is None)
    assert not undecided, f"routes without an auth decision: {undecided}"
    # The walk sees the pages (not in the schema) and the schema's routes alike.
    paths = {p for _, p in decisions}
    assert {"/", "/services/{service}", "/api/v1/windows", "/metrics", "/signin"} <= paths
    memory = {"/api/v1/memory/captures", "/api/v1/leaks", "/services/{service}/leaks"}
    assert memory <= paths
    assert decisions[("POST", "/api/v1/memory/captures")] == "ingest"
    assert decisions[("GET", "/api/v1/memory/captures")] == "read"
    assert decisions[("GET", "/api/v1/leaks")] == "read"
    assert decisions[("GET", "/services/{service}/leaks")] == PAGE
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        for method in operations:
            assert decisions.get((method.upper(), path)), f"{method} {path} undecided"


def test_a_route_without_a_decision_is_caught(tmp_path: Path) -> None:
    from hotpath.server.app import create_app
    from hotpath.server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert route_decisions(app)[("GET", "/api/v1/forgotten")] is None


def test_public_paths_are_only_the_harmless_ones(app_routes: dict[tuple[str, str], str]) -> None:
    public = sorted(p for (_, p), d in app_routes.items() if d == "public")
    assert set(public) <= {"/healthz", "/signin", "/signout", "/docs", *PUBLIC_PATHS}, public


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "x", path)


def _call(client: httpx.Client, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(
        method, _filled(path), headers=headers, content=b"{}", follow_redirects=False
    )


def test_route_by_token_matrix(
    secured: tuple[RunningServer, str], app_routes: dict[tuple[str, str], str]
) -> None:
    """Each route: no token -> 401 (pages: to the sign-in page); a token without the route's
    scope -> 403; a token with it -> neither (whatever the dummy request then gets)."""
    running, db = secured
    tokens = {scope: make_token(db, scope) for scope in SCOPES}
    rows = []
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for (method, path), decision in sorted(app_routes.items()):
            if decision == "public" or method == "HEAD":
                continue
            needed = "read" if decision == PAGE else decision
            row = {"route": f"{method} {path}", "none": _call(client, method, path, None)}
            for scope, token in tokens.items():
                row[scope] = _call(client, method, path, token)
            rows.append(row)
            none = row["none"]
            if decision == PAGE:
                assert none.status_code == 303, row["route"]
                assert none.headers["location"].startswith("/signin?next="), row["route"]
            else:
                assert none.status_code == 401, (row["route"], none.text)
                assert none.headers.get("www-authenticate") == "Bearer"
            for scope in SCOPES:
                got = row[scope].status_code
                if scope == needed:
                    assert got not in (401, 403), (row["route"], scope, row[scope].text)
                else:
                    assert got == 403, (row["route"], scope, got, row[scope].text)
    print("\nroute x token scope (status codes):")
    print(f"{'route':48} none " + " ".join(f"{s:>7}" for s in SCOPES))
    for row in rows:
        codes = " ".join(f"{row[s].status_code:>7}" for s in SCOPES)
        print(f"{row['route']:48} {row['none'].status_code:>4} {codes}")
    assert len(rows) >= 30


def test_health_and_sign_in_need_no_token(secured: tuple[RunningServer, str]) -> None:
    running, _ = secured
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/signin").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_sign_in_makes_a_read_only_session_cookie(secured: tuple[RunningServer, str]) -> None:
    running, db = secured
    read = make_token(db, "read")
    ingest = make_token(db, "ingest")
    with httpx.Client(base_url=running.url, timeout=30) as client:
        first = client.get("/services/x?from=-1h", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/signin?next=/services/x%3Ffrom%3D-1h"
        refused = client.post(
            "/signin", data={"token": ingest, "next": "/"}, follow_redirects=False
        )
        assert refused.status_code == 403 and "read scope" in refused.text
        assert "hotpath_session" not in client.cookies
        wrong = client.post("/signin", data={"token": "hp_nope", "next": "/"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        done = client.post(
            "/signin", data={"token": read, "next": "/services/x?from=-1h"}, follow_redirects=False
        )
        assert done.status_code == 303 and done.headers["location"] == "/services/x?from=-1h"
        cookie = done.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert client.get("/").status_code == 200  # the cookie is sent back
        assert client.get("/api/v1/services").status_code == 200  # the pages' own reads
        # ... but a cookie never authorises a change, whatever the scope of its token.
        write = client.put("/api/v1/alert-rules", json={"service": "x", "hot_path": "y"})
        assert write.status_code == 401 and "cookie never authorises" in write.text
        out = client.post("/signout", follow_redirects=False)
        assert out.status_code == 303
        assert client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_to_another_site(
    secured: tuple[RunningServer, str], target: str
) -> None:
    running, db = secured
    with httpx.Client(base_url=running.url, timeout=30) as client:
        done = client.post(
            "/signin",
            data={"token": make_token(db, "read"), "next": target},
            follow_redirects=False,
        )
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_cross_site_writes_are_refused(secured: tuple[RunningServer, str]) -> None:
    """A page on another origin posting text/plain (no preflight) with a signed-in browser's
    cookie, or even with a token, is refused before any route runs."""
    running, db = secured
    admin = make_token(db, "admin,ingest")
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for headers in (
            {"Origin": "http://evil.example", "Content-Type": "text/plain"},
            {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
            {"Origin": "null"},
        ):
            answer = client.post(
                "/api/v1/windows",
                content=b"{}",
                headers={**headers, "Authorization": f"Bearer {admin}"},
            )
            assert answer.status_code == 403 and "cross-site" in answer.text, headers
        same = client.post(
            "/api/v1/windows",
            content=b"{}",
            headers={"Origin": running.url, "Authorization": f"Bearer {admin}"},
        )
        assert same.status_code == 422  # past the check: the body is what is wrong


def test_revoked_tokens_stop_working(secured: tuple[RunningServer, str]) -> None:
    running, db = secured
    admin = make_token(db, "admin,read")
    with running.client(admin) as client:
        made = client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["read"]})
        assert made.status_code == 201
        fresh = made.json()["token"]
        bearer = {"Authorization": f"Bearer {fresh}"}
        assert client.get("/api/v1/services", headers=bearer).is_success
        listed = client.get("/api/v1/tokens").json()
        assert made.json()["id"] in {t["id"] for t in listed}
        assert all("token" not in t and "secret_hash" not in t for t in listed)
        assert client.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 204
        again = client.get("/api/v1/services", headers=bearer)
        assert again.status_code == 401
    # Revoked on the database by the CLI: a token the server never saw is refused at once.
    unused = make_token(db, "read")
    token_id = unused.split("_")[1]
    subprocess.run(
        [sys.executable, "-m", "hotpath", "token", "revoke", "--db", db, token_id],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    answer = httpx.get(
        running.url + "/api/v1/services", headers={"Authorization": f"Bearer {unused}"}
    )
    assert answer.status_code == 401


def test_wrong_secrets_lock_the_token_id_out(secured: tuple[RunningServer, str]) -> None:
    running, db = secured
    good = make_token(db, "read")
    _, token_id, secret = good.split("_", 2)
    statuses = []
    for i in range(12):
        bad = f"hp_{token_id}_{(secret[:-2] + f'{i:02d}')}"
        statuses.append(
            httpx.get(
                running.url + "/api/v1/services", headers={"Authorization": f"Bearer {bad}"}
            ).status_code
        )
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]


def test_request_rate_per_token(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hotpath.db'}"
    running = start_server(
        db,
        tmp_path / "server",
        auth="required",
        env={"HOTPATH_RATE_LIMIT_PER_S": "0.5", "HOTPATH_RATE_LIMIT_BURST": "3"},
    )
    try:
        with running.client() as client:
            codes = [client.get("/api/v1/services") for _ in range(5)]
        assert [c.status_code for c in codes[:3]] == [200, 200, 200]
        limited = codes[3]
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate_limit_per_s" in limited.text
        # another token has its own allowance
        other = make_token(db, "read")
        answer = httpx.get(
            running.url + "/api/v1/services", headers={"Authorization": f"Bearer {other}"}
        )
        assert answer.status_code == 200
    finally:
        stop_process(running.process)


def test_auth_off_only_on_loopback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hotpath", "serve", "--host", "0.0.0.0", "--auth", "off"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "only a loopback --host" in done.stderr


def test_token_cli_prints_the_token_last_and_keeps_only_a_hash(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hotpath.db'}"
    token = make_token(db, "ingest,read", tenant="acme")
    assert re.fullmatch(r"hp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    listed = subprocess.run(
        [sys.executable, "-m", "hotpath", "token", "list", "--db", db],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert token.split("_")[1] in listed and "acme" in listed and "ingest,read" in listed
    assert token.split("_", 2)[2] not in listed
    raw = (tmp_path / "hotpath.db").read_bytes()
    assert token.split("_", 2)[2].encode() not in raw
    assert b"scrypt$16384$8$1$" in raw
