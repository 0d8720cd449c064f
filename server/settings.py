"""Server configuration, from `HOTPATH_*` environment variables or the `serve` command line."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from profiler.formats.window import WindowLimits

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

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'hotpath.db').resolve()}"
