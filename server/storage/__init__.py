"""Storage behind one contract: the HTTP layer, pages, alerts, metrics and maintenance reach
the database only through a `Storage`, opened by URL. Backends live in subpackages (`sql`:
SQLite and PostgreSQL through SQLAlchemy); nothing outside this package knows tables or
dialects. The contracts are in `profiles` (profiles and hot paths), `alerts`, `bench` and
`upkeep` (roll-ups, retention, health); `tests/test_storage_contract.py` runs on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Storage:
    """Everything the server keeps, one contract per concern."""

    profiles: Any  # ProfileStore (server/storage/profiles.py)
    alerts: Any = None  # AlertStore (server/storage/alerts.py)
    bench: Any = None  # BenchStore (server/storage/bench.py)
    upkeep: Any = None  # Upkeep: roll-ups, retention, health (server/storage/upkeep.py)

    def close(self) -> None:
        for part in (self.profiles, self.alerts, self.bench, self.upkeep):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def open_storage(url: str, **options: Any) -> Storage:
    """The backend for `url`, chosen by its scheme (pytest-benchmark's storage selection is
    the pattern); only SQL URLs (sqlite, postgresql) exist today. Migrates the schema."""
    from hotpath.server.storage.sql import open_sql_storage

    return open_sql_storage(url, **options)
