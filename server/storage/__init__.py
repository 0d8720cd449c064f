"""Storage behind one contract: the HTTP layer, pages, alerts, metrics and maintenance reach
the database only through a `Storage`, opened by URL. Backends live in subpackages (`sql`:
SQLite and PostgreSQL through SQLAlchemy); nothing outside this package knows tables or
dialects. The contracts are in `profiles` (profiles and hot paths), `alerts`, `bench`,
`upkeep` (roll-ups, retention, health) and `tokens` (API tokens);
`tests/test_storage_contract.py` runs on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotpath.server.storage.alerts import AlertStore
    from hotpath.server.storage.bench import BenchStore
    from hotpath.server.storage.captures import CaptureStore
    from hotpath.server.storage.memory import MemoryStore
    from hotpath.server.storage.profiles import ProfileStore
    from hotpath.server.storage.tokens import TokenStore
    from hotpath.server.storage.upkeep import Upkeep


@dataclass
class Storage:
    """Everything the server keeps, one contract per concern."""

    profiles: ProfileStore  # profiles and hot paths (server/storage/profiles.py)
    alerts: AlertStore  # rules, evaluation, the webhook outbox (server/storage/alerts.py)
    bench: BenchStore  # benchmark runs for the gate (server/storage/bench.py)
    upkeep: Upkeep  # roll-ups, retention, health (server/storage/upkeep.py)
    tokens: TokenStore  # API tokens: tenant and scopes, secrets hashed (server/storage/tokens.py)
    memory: MemoryStore  # processes' RSS/PSS/USS per window (server/storage/memory.py)
    captures: CaptureStore  # on-demand memory captures (server/storage/captures.py)

    def close(self) -> None:
        for part in (self.profiles, self.alerts, self.bench, self.upkeep, self.tokens):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def open_storage(url: str, **options: Any) -> Storage:
    """The backend for `url`, chosen by its scheme (pytest-benchmark's storage selection is
    the pattern); only SQL URLs (sqlite, postgresql) exist today. Migrates the schema."""
    from hotpath.server.storage.sql import open_sql_storage

    return open_sql_storage(url, **options)
