"""Server configuration, from `HOTPATH_*` environment variables or the `serve` command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from hotpath.profiler.formats.window import WindowLimits
from hotpath.server.storage.profiles import Limits, Retention

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTPATH_")

    data_dir: Path = Path("data")
    # An SQLAlchemy URL; empty means an SQLite file in data_dir.
    db_url: str = ""
    # speedscope's built app (dist/release of its npm package), installed at set-up.
    speedscope_dir: Path = REPO_ROOT / "node_modules" / "speedscope" / "dist" / "release"
    # Swagger UI for /docs (swagger-ui-dist from npm, installed at set-up): served by us, so
    # the API docs work offline.
    swagger_ui_dir: Path = REPO_ROOT / "node_modules" / "swagger-ui-dist"
    # Who may call (server/auth.py): "required" (tokens) or "off" (loopback only, checked
    # by `hotpath serve`).
    auth: Literal["required", "off"] = "required"
    rate_limit_per_s: float = 50.0  # requests per token and server, on average
    rate_limit_burst: int = 500
    # Benchmark history of these branches is the gate's baseline: writable only with the
    # publish scope.
    protected_branches: str = "main master"
    session_max_age_s: int = 12 * 3600  # the sign-in cookie's life
    # /metrics counts every tenant's services: only this tenant's metrics tokens read it.
    metrics_tenant: str = "default"
    max_body_bytes: int = 16 * 1024 * 1024
    # No more decoded than a plain body may be: compression saves bandwidth, never buys a
    # bigger request. A busy real agent window is 0.12 MB of JSON (benchmarks/hostile_memory.py).
    max_decompressed_bytes: int = 16 * 1024 * 1024
    # Ingested times must lie within [now - retention_raw, now + max_future_s] (a clock a
    # little ahead is fine; year 9999 would stay stored, unexpired, for good).
    max_future_s: float = 300.0
    # After a request whose body decoded to at least this many bytes, freed heap memory is
    # handed back to the system (glibc's malloc_trim); 0 never does.
    trim_after_bytes: int = 1024 * 1024
    window_limits: WindowLimits = WindowLimits()
    # Cardinality (server/storage/profiles.py `Limits`): series and hot-path names a service
    # may have active (seen within limits_active_window). A new series beyond the limit is
    # refused (422 naming the label), and so is a window bringing hot-path names beyond it
    # (422 naming them: the agent sends it again without them). /metrics exports at most
    # max_metrics_series series of its per-service and per-hot-path families.
    max_series_per_service: int = 1_000
    max_hot_paths_per_service: int = 200
    limits_active_window: timedelta = timedelta(hours=1)
    max_metrics_series: int = 10_000
    # Retention per level (ISO-8601 durations such as P7D, or seconds, in the environment).
    retention_raw: timedelta = timedelta(days=7)
    retention_minute: timedelta = timedelta(days=30)
    retention_hour: timedelta = timedelta(days=365)
    retention_day: timedelta = timedelta(days=5 * 365)
    rollup_interval_s: float = 1.0
    retention_interval_s: float = 60.0
    # Hot-path breach alerts (server/alerts.py): the default rule, per-hot-path overrides
    # through /api/v1/alert-rules. Intervals are aligned to the epoch; one is judged once
    # it has been closed for alert_grace_s (an agent window of 10 s arrives after its end).
    alert_enabled: bool = True
    alert_quantile: float = 0.99
    alert_fire_after: int = 3  # consecutive intervals over budget before firing
    alert_resolve_after: int = 3  # consecutive intervals within budget before resolving
    alert_min_calls: int = 10  # fewer calls in an interval: not judged as a breach
    alert_interval_s: float = 10.0
    alert_grace_s: float = 15.0
    alert_severity: str = "critical"
    # Webhook receivers (Alertmanager's webhook body), separated by commas or spaces.
    alert_webhook_url: str = ""
    alert_webhook_timeout_s: float = 5.0
    alert_retry_base_s: float = 1.0  # doubled per failed attempt up to alert_retry_max_s
    alert_retry_max_s: float = 300.0
    alert_give_up_after: timedelta = timedelta(days=1)
    alert_receiver: str = "hotpath"
    # Where people reach this server, for the links in notifications.
    alert_external_url: str = "http://localhost:8000"

    # RSS trend per process (server/memory_trends.py): Theil-Sen slope over the last
    # horizon, growing when Mann-Kendall's p < alpha, the slope's lower bound clears the
    # floor and the readings span min_span_s. Measured on a steady Python process churning
    # a bounded working set (RSS 117-161 MB, read every second for 10 min): the highest lower
    # bound of its slope over any 3-minute stretch was 0.05 MB/min (0.15 over 2 minutes, 1.3
    # over 1 minute, its warm-up included); the floor is 5x that at 3 minutes.
    memory_trend_horizon_s: float = 1800.0
    memory_trend_floor_bytes_per_min: float = 256 * 1024
    memory_trend_min_span_s: float = 180.0
    memory_trend_alpha: float = 0.001
    # A process's first readings (caches filling after a start) are not judged.
    memory_trend_warmup_s: float = 300.0
    # RSS growth alerts (server/rss_alerts.py), through the alert path above.
    memory_alert_enabled: bool = True
    memory_alert_every_s: float = 60.0
    memory_alert_severity: str = "warning"

    def protected(self, branch: str) -> bool:
        return branch in self.protected_branches.replace(",", " ").split()

    def alert_webhook_urls(self) -> list[str]:
        return [url for url in self.alert_webhook_url.replace(",", " ").split() if url]

    def limits(self) -> Limits:
        return Limits(
            series_per_service=self.max_series_per_service,
            hot_paths_per_service=self.max_hot_paths_per_service,
            active_window=self.limits_active_window,
        )

    def retention(self) -> Retention:
        return Retention(
            raw=self.retention_raw,
            minute=self.retention_minute,
            hour=self.retention_hour,
            day=self.retention_day,
        )

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'hotpath.db').resolve()}"
