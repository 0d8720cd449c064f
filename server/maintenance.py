"""The server's background work: roll windows up every second, enforce retention every minute.
Each loop also judges hot-path alerts and delivers their webhooks (server/alerts.py).

A daemon thread per server process; several servers on one database share the work safely
(see `server.rollups`). Database errors are logged and retried with backoff: ingest and
queries go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hotpath.server.storage.sql import retention, rollups
from hotpath.server.storage.sql.profiles import Retention

log = logging.getLogger("hotpath.maintenance")


class Maintenance:
    def __init__(
        self,
        engine: Engine,
        retention_policy: Retention,
        *,
        rollup_interval_s: float = 1.0,
        retention_interval_s: float = 60.0,
        alert_work: Callable[[], object] | None = None,
    ) -> None:
        self.engine = engine
        self.retention = retention_policy
        self.rollup_interval_s = rollup_interval_s
        self.retention_interval_s = retention_interval_s
        self.alert_work = alert_work  # server.alerts.alert_work: judge intervals, deliver
        self.last_run_s: float | None = None  # wall clock of the last loop without errors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotpath-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_retention = time.monotonic()
        backoff = self.rollup_interval_s
        while not self._stop.is_set():
            try:
                while rollups.roll_up(self.engine) and not self._stop.is_set():
                    pass  # a backlog: keep going until it is rolled up
                if time.monotonic() >= next_retention:
                    deleted = retention.enforce(self.engine, self.retention)
                    if deleted:
                        log.info("retention deleted %d rows", deleted)
                    next_retention = time.monotonic() + self.retention_interval_s
                if self.alert_work is not None:
                    self._alerts()
                backoff = self.rollup_interval_s
                self.last_run_s = time.time()
            except SQLAlchemyError as exc:
                backoff = min(60.0, backoff * 2)
                log.warning("maintenance failed (%s); retrying in %.0f s", exc, backoff)
            self._stop.wait(backoff)

    def _alerts(self) -> None:
        try:
            self.alert_work()  # type: ignore[misc]
        except Exception:  # alerting must never stop roll-ups and retention
            log.exception("alert evaluation or delivery failed")
