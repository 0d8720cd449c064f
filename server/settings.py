"""Server configuration, from `HOTPATH_*` environment variables or the `serve` command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from profiler.formats.window import WindowLimits
from server.store import Retention

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
