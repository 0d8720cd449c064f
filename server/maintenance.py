"""The server's background work: roll windows up every second, enforce retention every minute.
Each loop also judges hot-path alerts and delivers their webhooks (server/alerts.py).

A daemon thread per server process, working through the storage's `Upkeep`
(server/storage/upkeep.py); several servers on one database share the work safely. Errors
are logged and retried with backoff: ingest and queries go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hotpath.server.storage.errors import StorageUnavailable
from hotpath.server.storage.upkeep import Upkeep

log = logging.getLogger("hotpath.maintenance")


class Maintenance:
    def __init__(
        self,
        upkeep: Upkeep,
        *,
        rollup_interval_s: float = 1.0,
        retention_interval_s: float = 60.0,
        alert_work: Callable[[], object] | None = None,
    ) -> None:
        self.upkeep = upkeep
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
                while self.upkeep.roll_up() and not self._stop.is_set():
                    pass  # a backlog: keep going until it is rolled up
                if time.monotonic() >= next_retention:
                    deleted = self.upkeep.enforce_retention()
                    if deleted:
                        log.info("retention deleted %d rows", deleted)
                    next_retention = time.monotonic() + self.retention_interval_s
                if self.alert_work is not None:
                    self._alerts()
                backoff = self.rollup_interval_s
                self.last_run_s = time.time()
            except StorageUnavailable as exc:
                backoff = min(60.0, backoff * 2)
                log.warning("maintenance failed (%s); retrying in %.0f s", exc, backoff)
            except Exception:  # a bug must not end the loop for good: log it, back off, retry
                backoff = min(60.0, backoff * 2)
                log.exception("maintenance failed; retrying in %.0f s", backoff)
            self._stop.wait(backoff)

    def _alerts(self) -> None:
        try:
            self.alert_work()  # type: ignore[misc]
        except Exception:  # alerting must never stop roll-ups and retention
            log.exception("alert evaluation or delivery failed")
