"""Tenant isolation on a real server (uvicorn, `--auth required`), on SQLite and PostgreSQL:
tenant A's token, with every scope, on every read and write of tenant B's data, by B's own
names, ids and idempotency keys. Every read answers 404 or nothing of B's; every write lands
in A or is refused; B's data reads the same before and after.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import zstandard

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import Histogram
from tests.servers import RunningServer, make_token, start_server, stop_process
from tests.test_bench_api import PDFMINER

SERVICE, HOT_PATH, PROJECT = "orders", "order_execution", "engine"
NOW = datetime.now(UTC).replace(microsecond=0)


def order_window(key: str, start: datetime) -> wire.Window:
    hot = Histogram()
    for ms in (20, 40, 150):
        hot.record(ms * 1_000_000)
    return wire.Window(
        service=SERVICE,
        idempotency_key=key,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels={"host": "h1", "pid": "42"},
        frames=[("execute_order", "trader.py", 10), ("risk_check", "risk.py", 5)],
        stacks=[[0], [0, 1]],
        counts=[30, 70],
        hot_paths=[
            wire.HotPathWindow(
                name=HOT_PATH, budget_ns=100_000_000, histogram=hot.to_wire(), function=None
            )
        ],
    )


def post_window(client: httpx.Client, window: wire.Window) -> httpx.Response:
    body = zstandard.ZstdCompressor().compress(window.model_dump_json().encode())
    return client.post("/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"})


@pytest.fixture
def two_tenants(db_url: str, tmp_path: Path) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    running = start_server(db_url, tmp_path / "server", auth="required")
    scopes = "ingest,read,admin,metrics,publish"
    tokens = {t: make_token(db_url, scopes, tenant=t) for t in ("alpha", "beta")}
    try:
        yield running, tokens
    finally:
        stop_process(running.process)


def beta_reads(client: httpx.Client, run_id: int) -> dict[str, object]:
    """What B sees of its own data: compared before and after A's attempts."""
    range_ = {"service": SERVICE, "from": "-1h"}
    return {
        "services": [(s["name"], s["samples"]) for s in client.get("/api/v1/services").json()],
        "profile": client.get("/api/v1/profile", params={**range_, "format": "collapsed"}).text,
        "hotpaths": [
            (h["name"], h["count"]) for h in client.get("/api/v1/hotpaths", params=range_).json()
        ],
        "rules": client.get("/api/v1/alert-rules").json()["rules"],
        "runs": [
            r["id"]
            for r in client.get(
                "/api/v1/bench/runs", params={"project": PROJECT, "branch": "main"}
            ).json()
        ],
        "raw": client.get(f"/api/v1/bench/runs/{run_id}/raw").content,
        "tokens": sorted(t["id"] for t in client.get("/api/v1/tokens").json()),
    }


def test_tenant_a_can_neither_read_nor_change_tenant_b(
    two_tenants: tuple[RunningServer, dict[str, str]],
) -> None:
    running, tokens = two_tenants
    b = running.client(tokens["beta"])
    a = running.client(tokens["alpha"])
    key = uuid.uuid4().hex
    # B's data: a window with a hot path, an uploaded profile, a Pyroscope ingest, an alert
    # rule, a benchmark run on its protected main.
    assert post_window(b, order_window(key, NOW - timedelta(minutes=5))).status_code == 201
    upload = b.post(
        "/api/v1/profiles",
        params={"service": SERVICE, "format": "collapsed"},
        content=gzip.compress(b"main;handle 5\n"),
        headers={"Content-Encoding": "gzip"},
    )
    assert upload.status_code == 201, upload.text
    pyro = b.post(
        "/ingest",
        params={"name": f"{SERVICE}{{env=prod}}", "from": int(NOW.timestamp()) - 60},
        content=b"main;pyro 3\n",
    )
    assert pyro.status_code == 200, pyro.text
    rule = {"service": SERVICE, "hot_path": HOT_PATH, "budget_ms": 50, "enabled": True}
    assert b.put("/api/v1/alert-rules", json=rule).status_code == 200
    run = b.post(
        "/api/v1/bench/runs",
        params={"project": PROJECT, "branch": "main"},
        content=PDFMINER.read_bytes(),
    )
    assert run.status_code == 201, run.text
    run_id = run.json()["run"]["id"]
    b_token_id = tokens["beta"].split("_")[1]
    before = beta_reads(b, run_id)
    assert before["services"] and before["hotpaths"] and before["runs"] == [run_id]

    # A reads B's names and ids: nothing of B's.
    range_ = {"service": SERVICE, "from": "-1h"}
    assert a.get("/api/v1/services").json() == []
    not_found = [
        a.get("/api/v1/profile", params=range_),
        a.get("/api/v1/diff", params={**range_, "base_from": "-1h", "head_from": "-30m"}),
        a.get("/api/v1/diff/tree", params={**range_, "base_from": "-1h", "head_from": "-30m"}),
        a.get("/api/v1/timeline", params=range_),
        a.get(f"/api/v1/hotpaths/{HOT_PATH}/timeline", params=range_),
        a.get(f"/api/v1/hotpaths/{HOT_PATH}/attribution", params=range_),
        a.get(f"/api/v1/bench/runs/{run_id}"),
        a.get(f"/api/v1/bench/runs/{run_id}/raw"),
        a.get(f"/services/{SERVICE}"),
        a.get(f"/services/{SERVICE}/diff", params={"base_from": "-1h", "head_from": "-30m"}),
        a.get(f"/services/{SERVICE}/hotpaths/{HOT_PATH}"),
        a.get(f"/benchmarks/{PROJECT}"),
    ]
    for answer in not_found:
        assert answer.status_code == 404, (answer.request.url, answer.status_code, answer.text)
    hot = a.get("/api/v1/hotpaths", params=range_)
    assert hot.status_code == 404 or hot.json() == []
    assert a.get("/api/v1/alert-rules").json()["rules"] == []
    assert a.get("/api/v1/alerts").json() == []
    assert a.get("/api/v1/bench/projects").json() == []
    runs = a.get("/api/v1/bench/runs", params={"project": PROJECT, "branch": "main"})
    assert runs.status_code == 404 or runs.json() == []
    history = a.get(
        "/api/v1/bench/history",
        params={"project": PROJECT, "branch": "main", "benchmark": "x"},
    )
    assert history.status_code in (404, 422) or history.json()["points"] == []
    assert b_token_id not in {t["id"] for t in a.get("/api/v1/tokens").json()}
    # /metrics counts every tenant's services: the operator tenant's alone, not A's.
    metrics = a.get("/metrics")
    assert metrics.status_code == 403 and "operator tenant 'default'" in metrics.text
    for page in ("/", "/benchmarks", "/alerts"):
        html = a.get(page)
        assert html.status_code == 200 and SERVICE not in html.text and PROJECT not in html.text

    # A writes with B's names and keys: B's rule, run and token are out of reach ...
    assert (
        a.delete("/api/v1/alert-rules", params={"service": SERVICE, "hot_path": HOT_PATH})
    ).status_code == 404
    assert a.delete(f"/api/v1/tokens/{b_token_id}").status_code == 404
    # ... and what A stores under the same names is A's: the same idempotency key is a new
    # window in A (not B's duplicate), the same rule is A's rule.
    again = post_window(a, order_window(key, NOW - timedelta(minutes=5)))
    assert again.status_code == 201 and again.json()["duplicate"] is False
    assert a.put("/api/v1/alert-rules", json={**rule, "enabled": False}).status_code == 200
    a_run = a.post(
        "/api/v1/bench/runs",
        params={"project": PROJECT, "branch": "main"},
        content=PDFMINER.read_bytes(),
    )
    assert a_run.status_code == 201 and a_run.json()["created"] is True
    assert [s["name"] for s in a.get("/api/v1/services").json()] == [SERVICE]

    after = beta_reads(b, run_id)
    assert after == before, "tenant B's data changed"
    assert b.get("/api/v1/alert-rules").json()["rules"][0]["enabled"] is True
    a.close()
    b.close()


def test_protected_branches_need_the_publish_scope(
    two_tenants: tuple[RunningServer, dict[str, str]], db_url: str
) -> None:
    running, _ = two_tenants
    ingest_only = make_token(db_url, "ingest,read", tenant="alpha")
    with running.client(ingest_only) as client:
        data = PDFMINER.read_bytes()
        for branch in ("main", "master"):
            refused = client.post(
                "/api/v1/bench/runs", params={"project": PROJECT, "branch": branch}, content=data
            )
            assert refused.status_code == 403
            assert "protected" in refused.text and "publish" in refused.text
        feature = client.post(
            "/api/v1/bench/runs", params={"project": PROJECT, "branch": "fix-1"}, content=data
        )
        assert feature.status_code == 201
        main = client.get("/api/v1/bench/runs", params={"project": PROJECT, "branch": "main"})
        assert main.status_code == 404 or main.json() == []
