"""`/metrics` of a real server after real ingest: counters and hot-path buckets match what was
sent; the Grafana dashboard parses and only asks for metrics the server exposes."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import NUM_BUCKETS, Histogram
from hotpath.server.metrics import _LE_OF_BUCKET, LE_SECONDS, HotPathCollector
from tests.servers import RunningServer

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "docs" / "grafana" / "hotpath.json"
MS = 1_000_000


def hot_window(durations_ms: list[float], samples: int, key: str | None = None) -> wire.Window:
    calls = Histogram()
    for ms in durations_ms:
        calls.record(int(ms * MS))
    now = datetime.now(UTC)
    return wire.Window(
        service="trader",
        idempotency_key=key or uuid.uuid4().hex,
        start=now,
        end=now,
        sample_rate_hz=100,
        frames=[("execute_order", "trader.py", 10), ("main", "trader.py", 1)],
        stacks=[[1, 0], [1]],
        counts=[samples - 1, 1],
        hot_paths=[wire.HotPathWindow(name="order", budget_ns=100 * MS, histogram=calls.to_wire())],
    )


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert_dashboard_metrics_exposed(response.text)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_what_was_ingested_and_the_dashboard_finds_its_metrics(
    server: RunningServer,
) -> None:
    first = [0.4] * 10 + [3.0] * 20 + [150.0] * 5
    second = [12.0] * 7 + [1500.0]
    sent_bytes = 0
    with server.client() as client:
        for window, status in (
            (hot_window(first, 40, key="window-one"), 201),
            (hot_window(second, 60), 201),
            (hot_window(first, 40, key="window-one"), 200),  # a retry: counted as duplicate
        ):
            body = window.model_dump_json().encode()
            response = client.post("/api/v1/windows", content=body)
            assert response.status_code == status, response.text
            sent_bytes += len(body) if status == 201 else 0
        assert client.post("/api/v1/windows", content=b'{"format": "nope"}').status_code == 422
    m = scrape(server)
    assert m[("hotpath_ingest_windows_total", (("outcome", "stored"), ("service", "trader")))] == 2
    assert (
        m[("hotpath_ingest_windows_total", (("outcome", "duplicate"), ("service", "trader")))] == 1
    )
    assert m[("hotpath_ingest_samples_total", (("service", "trader"),))] == 100
    assert m[("hotpath_ingest_bytes_total", (("service", "trader"),))] == sent_bytes
    assert m[("hotpath_ingest_rejections_total", (("reason", "invalid"),))] == 1
    assert m[("hotpath_database_up", ())] == 1

    durations = np.array(first + second)
    labels = (("hot_path", "order"), ("service", "trader"))
    for le in LE_SECONDS:
        key = (
            "hotpath_hot_path_duration_seconds_bucket",
            (*labels[:1], ("le", f"{le:g}"), labels[1]),
        )
        # No duration lies within 1% of an edge, where the midpoint rule could move it.
        assert m[key] == np.sum(durations <= le * 1e3), le
    inf = ("hotpath_hot_path_duration_seconds_bucket", (*labels[:1], ("le", "+Inf"), labels[1]))
    assert m[inf] == m[("hotpath_hot_path_duration_seconds_count", labels)] == len(durations)
    assert m[("hotpath_hot_path_duration_seconds_sum", labels)] == pytest.approx(
        durations.sum() / 1e3, rel=1e-6
    )
    assert m[("hotpath_hot_path_over_budget_total", labels)] == np.sum(durations > 100)
    assert m[("hotpath_hot_path_budget_seconds", labels)] == 0.1
    windows_route = (("method", "POST"), ("route", "/api/v1/windows"), ("status", "201"))
    assert m[("hotpath_http_request_duration_seconds_count", windows_route)] == 2


def test_le_buckets_agree_with_over_budget_at_every_edge() -> None:
    # Random calls over the whole range: for a budget on an `le` edge, the calls above that
    # `le` bucket are exactly the calls `Histogram.over` counts as over the budget.
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 5, NUM_BUCKETS)
    calls = Histogram(counts, 0, int(200e9))
    collector = HotPathCollector()
    collector.add("s", wire.HotPathWindow(name="h", histogram=calls.to_wire()))
    per_le = np.bincount(_LE_OF_BUCKET, weights=counts, minlength=len(LE_SECONDS) + 1)
    for i, le in enumerate(LE_SECONDS):
        assert per_le[i + 1 :].sum() == calls.over(round(le * 1e9)), le
    (duration, _budget, _over) = collector.collect()
    buckets = [s.value for s in duration.samples if s.name.endswith("_bucket")]
    assert buckets == list(np.cumsum(per_le))


def test_over_budget_counts_what_histogram_over_counts() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        calls = Histogram()
        for ns in rng.lognormal(np.log(20e6), 1.5, 300).astype(int):
            calls.record(int(ns))
        budget = int(rng.choice([1e6, 5e6, 20e6, 99.9e6, 100e6, calls.max, calls.max + 1]))
        collector = HotPathCollector()
        hot = wire.HotPathWindow(name="h", budget_ns=budget, histogram=calls.to_wire())
        collector.add("s", hot)
        over = next(m for m in collector.collect() if m.name == "hotpath_hot_path_over_budget")
        assert over.samples[0].value == calls.over(budget), budget


def test_the_grafana_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
    used = dashboard_metrics()
    for topic in (
        "hotpath_hot_path_budget_seconds",
        "hotpath_alerts_firing",
        "hotpath_database_up",
    ):
        assert topic in used


def dashboard_metrics() -> set[str]:
    """Every metric name in the dashboard's PromQL (panels and variables)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v.get("definition", "") for v in dashboard["templating"]["list"]]
    return {name for expr in exprs for name in re.findall(r"\bhotpath_\w+", expr)}


def assert_dashboard_metrics_exposed(text: str) -> None:
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    # Families without samples right now (no alert firing) still show their TYPE line.
    exposed |= set(re.findall(r"^# TYPE (\S+)", text, re.M))
    used = dashboard_metrics()
    assert used, "no metrics found in the dashboard"
    assert used <= exposed, used - exposed
