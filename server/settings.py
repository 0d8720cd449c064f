"""Server configuration, from `HOTPATH_*` environment variables or the `serve` command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from hotpath.profiler.formats.window import WindowLimits
from hotpath.server.storage.profiles import Retention

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTPATH_")

    data_dir: Path = Path("data")
    # An SQLAlchemy URL; empty means an SQLite file in data_dir.
    db_url: str = ""
    # speedscope's built app (dist/release of its npm package), installed at set-up.
    speedscope_dir: Path = REPO_ROOT / "node_modules" / "speedscope" / "dist" / "release"
    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    window_limits: WindowLimits = WindowLimits()
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

    def alert_webhook_urls(self) -> list[str]:
        return [url for url in self.alert_webhook_url.replace(",", " ").split() if url]

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
