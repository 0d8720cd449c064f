"""The SQL backend's upkeep (`server/storage/upkeep.py` is its contract): roll-ups
(`rollups.py`), retention (`retention.py`), the health ping and the progress figures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select, text

from hotpath.server.storage.profiles import Retention
from hotpath.server.storage.sql import retention, rollups
from hotpath.server.storage.sql.tables import alert_progress, windows
from hotpath.server.storage.upkeep import UpkeepFigures


class SqlUpkeep:
    """`Upkeep` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, retention_policy: Retention) -> None:
        self.engine = engine
        self.retention = retention_policy

    def roll_up(self) -> int:
        return rollups.roll_up(self.engine)

    def enforce_retention(self, now: datetime | None = None) -> int:
        return retention.enforce(self.engine, self.retention, now)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def figures(self) -> UpkeepFigures:
        with self.engine.connect() as conn:
            oldest = conn.execute(
                select(func.min(windows.c.end_us)).where(windows.c.rolled_up.is_(False))
            ).scalar()
            evaluated = conn.execute(select(func.max(alert_progress.c.evaluated_until_us))).scalar()
        return UpkeepFigures(oldest, evaluated)
