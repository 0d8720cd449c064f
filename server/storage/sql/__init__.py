"""The SQL backend (SQLite and PostgreSQL through SQLAlchemy Core, Alembic migrations): the
only code that knows tables, queries and dialect differences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotpath.server.storage import Storage
    from hotpath.server.storage.profiles import Limits, Retention


def open_sql_storage(
    url: str,
    *,
    retention: Retention | None = None,
    limits: Limits | None = None,
    **_options: Any,
) -> Storage:
    """An engine for `url` (an SQLAlchemy URL), the schema migrated to the newest revision,
    and the parts on it. Options other parts do not know are ignored."""
    # Imported here: the package's modules import each other, never this file's names.
    from hotpath.server.storage import Storage
    from hotpath.server.storage.sql.alerts import SqlAlertStore
    from hotpath.server.storage.sql.bench import SqlBenchStore
    from hotpath.server.storage.sql.captures import SqlCaptureStore
    from hotpath.server.storage.sql.database import make_engine, upgrade
    from hotpath.server.storage.sql.memory import SqlMemoryStore
    from hotpath.server.storage.sql.profiles import SqlProfileStore
    from hotpath.server.storage.sql.tokens import SqlTokenStore
    from hotpath.server.storage.sql.upkeep import SqlUpkeep

    engine = make_engine(url)
    upgrade(engine)
    profiles = SqlProfileStore(engine, retention, limits)
    return Storage(
        profiles=profiles,
        alerts=SqlAlertStore(engine),
        bench=SqlBenchStore(engine),
        upkeep=SqlUpkeep(engine, profiles.retention),
        tokens=SqlTokenStore(engine),
        memory=SqlMemoryStore(engine),
        captures=SqlCaptureStore(engine, profiles.writer),
    )
