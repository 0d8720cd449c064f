"""Prometheus metrics at `/metrics`: ingest, HTTP latency, health, alerts and the hot paths.

A registry per app (not prometheus-client's global one), so several apps in one process
(tests) do not share counters. Counters count what *this* server process ingested or
served: with several stateless servers behind one PostgreSQL, sum them in PromQL. The gauges
read from storage at scrape time (database up, roll-up lag, alert evaluation lag, alerts
firing, notifications waiting) are the same on every server: take `max`, not `sum`.

Hot paths: `hotpath_hot_path_duration_seconds{service, hot_path}` is a Prometheus histogram
with fixed `le` buckets that include the usual budgets (`LE_SECONDS`), filled from the
histogram deltas the agents ship (duplicates, i.e. retried windows, are not counted). Our
log-linear buckets are at most 1/64 of their lower edge wide and mostly straddle those
edges: each goes wholly to the first `le` at or above its midpoint, the same midpoint rule
`Histogram.over` and the quantiles use, so a call is misplaced only when it lies within
0.8% of an edge, and `hotpath_hot_path_over_budget_total` agrees with the `le` bucket of a
budget that is itself an edge. Calls of 100 s or more (our overflow bucket) land in +Inf.

Size: the families whose label sets come from what clients send (per service, per hot path,
firing alerts) export at most `max_metrics_series` series together (`SeriesBudget`): a label
set is admitted whole on first use while it fits and kept for good (counters must not
vanish); updates of label sets that do not fit are counted in
`hotpath_metrics_series_dropped_total{family}`. The other families are bounded by the code
(routes, statuses, reasons).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import NUM_BUCKETS, OVERFLOW_INDEX, bucket_bounds
from hotpath.server.auth import CurrentPrincipal, requires
from hotpath.server.auth_tokens import METRICS
from hotpath.server.storage.alerts import AlertStore
from hotpath.server.storage.errors import StorageUnavailable
from hotpath.server.storage.upkeep import Upkeep

if TYPE_CHECKING:
    from hotpath.server.storage.profiles import IngestResult

LE_SECONDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_LE_NS = np.array([round(s * 1e9) for s in LE_SECONDS], dtype=np.int64)
# For each log-linear bucket, the index of its `le` bucket (len(LE_SECONDS) is +Inf).
_MIDPOINTS = [sum(bucket_bounds(i)) / 2 for i in range(NUM_BUCKETS)]
_LE_OF_BUCKET = np.searchsorted(_LE_NS, _MIDPOINTS, side="left")
_LE_OF_BUCKET_LIST = _LE_OF_BUCKET.tolist()
_LE_LABELS = [f"{s:g}" for s in LE_SECONDS] + ["+Inf"]
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INGEST_ROUTES = {"/api/v1/windows", "/ingest"}
REJECTION_REASONS = {
    400: "bad_request",
    411: "length_required",
    413: "too_large",
    415: "unsupported",
    422: "invalid",
    503: "database_unavailable",
}


# Series one label set adds to /metrics. A service: windows (2 outcomes) and samples, bytes and
# refused hot-path names, and agents' dropped windows (2 reasons), each a counter with its
# `_created` gauge. A hot path: its histogram
# (the `le` buckets, _sum, _count), budget and over-budget calls.
SERVICE_SERIES = 2 * 2 + 2 + 2 + 2 + 2 * 2
HOT_PATH_SERIES = len(_LE_LABELS) + 2 + 1 + 1


class SeriesBudget:
    """How many series the client-driven families may still add, and what was dropped."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self._lock = threading.Lock()
        self._admitted: set[tuple[str, ...]] = set()
        self._used = 0
        self._dropped: dict[str, int] = {}

    def admit(self, family: str, key: tuple[str, ...], cost: int) -> bool:
        """Whether updates of this label set are exported; counts a drop when not."""
        if (family, *key) in self._admitted:  # the common case: no lock
            return True
        with self._lock:
            if (family, *key) in self._admitted:
                return True
            if self._used + cost <= self.max_series:
                self._admitted.add((family, *key))
                self._used += cost
                return True
            self._dropped[family] = self._dropped.get(family, 0) + 1
            return False

    def room(self) -> int:
        return self.max_series - self._used

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "hotpath_metrics_series_dropped",
            "Updates not exported: their new label set would take /metrics past max_metrics_series",
            labels=["family"],
        )
        with self._lock:
            counts, used = sorted(self._dropped.items()), self._used
        for family, count in counts:
            dropped.add_metric([family], float(count))
        limit = GaugeMetricFamily(
            "hotpath_metrics_series_max", "max_metrics_series: the bound on the families below"
        )
        limit.add_metric([], float(self.max_series))
        taken = GaugeMetricFamily(
            "hotpath_metrics_series_used",
            "Series taken by the per-service and per-hot-path families",
        )
        taken.add_metric([], float(used))
        yield from (dropped, limit, taken)


class BudgetCollector(Collector):
    def __init__(self, budget: SeriesBudget) -> None:
        self.budget = budget

    def collect(self) -> Iterator[Metric]:
        return self.budget.collect()


@dataclass
class _HotPathSeries:
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(_LE_LABELS), np.int64))
    sum_ns: int = 0
    over_budget: int = 0
    budget_ns: int | None = None


class HotPathCollector(Collector):
    """The hot-path histograms, budgets and over-budget calls this server has ingested."""

    def __init__(self, budget: SeriesBudget | None = None) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _HotPathSeries] = {}
        self.budget = budget or SeriesBudget(10_000)

    def add(self, service: str, hot_path: wire.HotPathWindow) -> None:
        if not self.budget.admit("hot_path", (service, hot_path.name), HOT_PATH_SERIES):
            return
        # Sparse: a window's delta has a few dozen non-empty buckets out of ~1,700, so this
        # walks them instead of building a dense `Histogram` (5x faster per window).
        histogram = hot_path.histogram
        per_le = [0] * len(_LE_LABELS)
        budget = hot_path.budget_ns
        # `Histogram.over`: nothing is over a budget at or above the max; otherwise the
        # buckets whose midpoint is over it, and the overflow bucket always.
        first_over = (
            min(bisect_right(_MIDPOINTS, budget), OVERFLOW_INDEX)
            if budget and budget < int(histogram["max"])
            else NUM_BUCKETS
        )
        over = 0
        for key, count in histogram["buckets"].items():
            index, n = int(key), int(count)
            per_le[_LE_OF_BUCKET_LIST[index]] += n
            if index >= first_over:
                over += n
        with self._lock:
            series = self._series.setdefault((service, hot_path.name), _HotPathSeries())
            series.buckets += np.array(per_le, dtype=np.int64)
            series.sum_ns += int(histogram["sum"])
            series.over_budget += over
            if budget is not None:
                series.budget_ns = budget

    def collect(self) -> Iterator[Metric]:
        labels = ["service", "hot_path"]
        duration = HistogramMetricFamily(
            "hotpath_hot_path_duration_seconds",
            "Hot-path call latency from the shipped histograms (le by bucket midpoint)",
            labels=labels,
        )
        budget = GaugeMetricFamily(
            "hotpath_hot_path_budget_seconds", "The latency budget a hot path ships", labels=labels
        )
        over = CounterMetricFamily(
            "hotpath_hot_path_over_budget", "Hot-path calls slower than their budget", labels=labels
        )
        with self._lock:
            snapshot = [
                (key, s.buckets.copy(), s.sum_ns, s.over_budget, s.budget_ns)
                for key, s in sorted(self._series.items())
            ]
        for key, buckets, sum_ns, over_budget, budget_ns in snapshot:
            cumulative = np.cumsum(buckets)
            duration.add_metric(
                list(key),
                [(le, float(n)) for le, n in zip(_LE_LABELS, cumulative, strict=True)],
                sum_ns / 1e9,
            )
            over.add_metric(list(key), float(over_budget))
            if budget_ns is not None:
                budget.add_metric(list(key), budget_ns / 1e9)
        yield from (duration, budget, over)


class DatabaseCollector(Collector):
    """Read at scrape time: the database answering, roll-up and alerting progress."""

    def __init__(
        self,
        upkeep: Upkeep,
        alerts: AlertStore,
        maintenance_last_run: Callable[[], float | None],
        budget: SeriesBudget | None = None,
    ) -> None:
        self.upkeep = upkeep
        self.alerts = alerts
        self.maintenance_last_run = maintenance_last_run
        self.budget = budget or SeriesBudget(10_000)

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        up = GaugeMetricFamily("hotpath_database_up", "1 when the database answers")
        rollup_lag = GaugeMetricFamily(
            "hotpath_rollup_lag_seconds", "Age of the oldest window not rolled up yet (0: none)"
        )
        alert_lag = GaugeMetricFamily(
            "hotpath_alert_evaluation_lag_seconds",
            "How far alert evaluation is behind now (interval + grace when up to date)",
        )
        firing = GaugeMetricFamily(
            "hotpath_alerts_firing",
            "1 per firing hot-path alert",
            labels=["service", "hot_path", "severity"],
        )
        unexported = GaugeMetricFamily(
            "hotpath_alerts_firing_unexported",
            "Firing label sets left out of hotpath_alerts_firing: /metrics is at its bound",
        )
        pending = GaugeMetricFamily(
            "hotpath_alert_notifications_pending", "Webhook notifications not delivered yet"
        )
        maintenance = GaugeMetricFamily(
            "hotpath_maintenance_last_run_age_seconds",
            "Seconds since this server's maintenance loop last completed",
        )
        last_run = self.maintenance_last_run()
        if last_run is not None:
            maintenance.add_metric([], now - last_run)
        try:
            self.upkeep.ping()
            figures = self.upkeep.figures()
            firing_now = self.alerts.firing()
            waiting = self.alerts.notifications_pending()
        except StorageUnavailable:
            up.add_metric([], 0.0)
            yield from (up, maintenance)
            return
        # Summed: the same service and hot path may fire in several tenants.
        per_labels: dict[tuple[str, str, str], int] = {}
        for a in firing_now:
            labels = (a.service, a.hot_path, a.severity)
            per_labels[labels] = per_labels.get(labels, 0) + 1
        # What the ingest families left of the bound, read per scrape (a gauge may shrink).
        shown = sorted(per_labels.items())[: max(0, self.budget.room())]
        for labels, count in shown:
            firing.add_metric(list(labels), float(count))
        unexported.add_metric([], float(len(per_labels) - len(shown)))
        up.add_metric([], 1.0)
        oldest, evaluated = figures.oldest_unrolled_end_us, figures.alerts_evaluated_until_us
        rollup_lag.add_metric([], max(0.0, now - oldest / 1e6) if oldest is not None else 0.0)
        if evaluated is not None:
            alert_lag.add_metric([], max(0.0, now - evaluated / 1e6))
        pending.add_metric([], float(waiting))
        yield from (up, rollup_lag, alert_lag, firing, unexported, pending, maintenance)


class Metrics:
    """Everything `/metrics` shows, in one registry of its own."""

    def __init__(
        self,
        upkeep: Upkeep,
        alerts: AlertStore,
        maintenance_last_run: Callable[[], float | None] = lambda: None,
        max_series: int = 10_000,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.budget = SeriesBudget(max_series)
        self.windows = Counter(
            "hotpath_ingest_windows",
            "Windows received, by outcome (stored, or duplicate of a stored one)",
            ["service", "outcome"],
            registry=r,
        )
        self.samples = Counter(
            "hotpath_ingest_samples", "Raw samples stored", ["service"], registry=r
        )
        self.bytes = Counter(
            "hotpath_ingest_bytes",
            "Request bytes of stored windows, as sent",
            ["service"],
            registry=r,
        )
        self.rejections = Counter(
            "hotpath_ingest_rejections",
            "Ingest requests refused, by reason",
            ["reason"],
            registry=r,
        )
        self.agent_dropped = Counter(
            "hotpath_agent_windows_dropped",
            "Windows agents dropped before delivery: the spool full (oldest first), or the "
            "memory queue full while the spool disk failed; reported with their next window",
            ["service", "reason"],
            registry=r,
        )
        self.hot_paths_refused = Counter(
            "hotpath_ingest_hot_paths_refused",
            "New hot-path names refused with their windows: past max_hot_paths_per_service",
            ["service"],
            registry=r,
        )
        self.requests = Histogram(
            "hotpath_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.hot_paths = HotPathCollector(self.budget)
        r.register(self.hot_paths)
        r.register(DatabaseCollector(upkeep, alerts, maintenance_last_run, self.budget))
        r.register(BudgetCollector(self.budget))
        ProcessCollector(registry=r)

    def window_ingested(
        self,
        window: wire.Window,
        result: IngestResult,
        body_bytes: int,
        agent_dropped: dict[str, int] | None = None,
    ) -> None:
        """Called by the ingest routes after the store answered. `agent_dropped`: windows the
        agent dropped since its last delivery, by reason, counted once (a duplicate is the
        retry of a delivery already counted)."""
        self.piece_ingested(window.service, result, body_bytes, window.hot_paths)
        if (
            agent_dropped
            and not result.duplicate
            and self.budget.admit("service", (window.service,), SERVICE_SERIES)
        ):
            for reason, count in agent_dropped.items():
                self.agent_dropped.labels(window.service, reason).inc(count)

    def piece_ingested(
        self,
        service: str,
        result: IngestResult,
        body_bytes: int,
        hot_paths: Iterable[wire.HotPathWindow] = (),
    ) -> None:
        """The same for a piece that did not come as an agent window (no hot paths)."""
        if self.budget.admit("service", (service,), SERVICE_SERIES):
            outcome = "duplicate" if result.duplicate else "stored"
            self.windows.labels(service, outcome).inc()
            if not result.duplicate:
                self.samples.labels(service).inc(result.samples)
                self.bytes.labels(service).inc(body_bytes)
        if result.duplicate:
            return
        for hot_path in hot_paths:
            self.hot_paths.add(service, hot_path)

    def hot_paths_refused_for(self, service: str, names: int) -> None:
        """A window refused for bringing `names` hot-path names past the service's limit."""
        if self.budget.admit("service", (service,), SERVICE_SERIES):
            self.hot_paths_refused.labels(service).inc(names)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: request latency per route template, and ingest rejections (4xx and
    503 answers of the ingest routes) by reason."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router leaves the matched route on the scope; its template keeps the label
            # set small (no service names or ids from paths).
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
            if route in INGEST_ROUTES and (400 <= status < 500 or status == 503):
                reason = REJECTION_REASONS.get(status, f"http_{status}")
                self.metrics.rejections.labels(reason).inc()


router = APIRouter(include_in_schema=False, dependencies=[Depends(requires(METRICS))])


@router.get("/metrics")
def prometheus_metrics(request: Request, principal: CurrentPrincipal) -> Response:
    """The Prometheus text format (a sync route: the database gauges block, off the loop).
    It counts every tenant's services, so it is the operator's: a metrics token of the
    operator tenant (`metrics_tenant`) only."""
    operator = request.app.state.settings.metrics_tenant
    if principal.token_id is not None and principal.tenant != operator:
        raise HTTPException(
            403,
            f"/metrics counts every tenant's services: it needs a metrics token of the "
            f"operator tenant {operator!r} (metrics_tenant)",
        )
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
