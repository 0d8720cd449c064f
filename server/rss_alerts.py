"""RSS growth alerts: a process whose RSS trend is growing (server/memory_trends.py, the rule
the memory API and the service page show) fires an `rss_growth` alert per (service, pid), with
the sentence as its summary ("RSS of pid 4242 growing 3.1 MB/min for 40 min"); it resolves
once the trend over the horizon no longer grows, or the pid sends no readings any more.

They go through the hot-path alerts' path: rows in the same alert store, fired and resolved
inside its evaluation lock and transaction (so several servers on one database fire once),
their webhook bodies in the same outbox (server/alert_webhook.py), listed on /alerts. They
keep no streak: the trend already judges a whole horizon of readings. A round runs every
`memory_alert_every_s`, on each server's clock; whoever holds the lock judges.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from hotpath.server.alert_webhook import fingerprint, rss_alert_labels, webhook_body
from hotpath.server.memory_trends import ProcessTrend, TrendRule, process_trends
from hotpath.server.settings import Settings
from hotpath.server.storage.alerts import AlertRecord, AlertStore, Evaluation, NewAlert
from hotpath.server.storage.memory import MemoryStore
from hotpath.server.storage.profiles import UnknownService

log = logging.getLogger("hotpath.alerts")

KIND = "rss_growth"
_US = 1_000_000

Key = tuple[str, str, str]  # tenant, service, "pid N"


def pid_name(pid: int) -> str:
    return f"pid {pid}"


class RssAlertEvaluator:
    def __init__(self, alerts: AlertStore, memory: MemoryStore, settings: Settings) -> None:
        self.alerts = alerts
        self.memory = memory
        self.rule = TrendRule.from_settings(settings)
        self.every_s = settings.memory_alert_every_s
        self.severity = settings.memory_alert_severity
        self.urls = settings.alert_webhook_urls()
        self.receiver = settings.alert_receiver
        self.external_url = settings.alert_external_url.rstrip("/")
        self._last_round = float("-inf")

    def evaluate(self, now: datetime | None = None) -> tuple[int, int]:
        """One round when it is due: (alerts fired, alerts resolved)."""
        if now is None:
            if time.monotonic() - self._last_round < self.every_s:
                return 0, 0
            self._last_round = time.monotonic()
        now = now or datetime.now(UTC)
        verdicts = self._judge(now)
        with self.alerts.evaluation() as round_:
            if round_ is None:
                return 0, 0  # another server is judging, or the hot-path progress is not started
            # Read inside the lock: whoever held it before has committed what it fired.
            firing = {
                (a.tenant, a.service, a.hot_path): a for a in self.alerts.firing() if a.kind == KIND
            }
            return self._apply(round_, firing, verdicts, now)

    def _judge(self, now: datetime) -> dict[Key, ProcessTrend]:
        since = now - timedelta(seconds=self.rule.horizon_s)
        verdicts: dict[Key, ProcessTrend] = {}
        for tenant, service in self.memory.services_with_readings(since):
            try:
                trends = process_trends(self.memory, tenant, service, now, self.rule)
            except UnknownService:
                continue
            for pid, judged in trends.items():
                verdicts[(tenant, service, pid_name(pid))] = judged
        return verdicts

    def _apply(
        self,
        round_: Evaluation,
        firing: dict[Key, AlertRecord],
        verdicts: dict[Key, ProcessTrend],
        now: datetime,
    ) -> tuple[int, int]:
        now_us = int(now.timestamp() * _US)
        fired = resolved = 0
        for key, judged in sorted(verdicts.items()):
            slope = round(judged.trend.per_minute)
            if judged.growing and key not in firing:
                alert = round_.fire(self._new_alert(key, judged, now_us))
                log.warning("alert firing: %s: %s", key[1], judged.summary)
                self._notify(round_, alert, now_us)
                fired += 1
            elif judged.growing:
                round_.raise_peak(firing[key].id, slope)
        for key, alert in sorted(firing.items()):
            judged_now = verdicts.get(key)
            if judged_now is None or not judged_now.growing:
                done = round_.resolve(alert.id, now_us)
                log.warning("alert resolved: %s: %s", key[1], _resolved_text(judged_now, key))
                self._notify(round_, done, now_us)
                resolved += 1
        return fired, resolved

    def _new_alert(self, key: Key, judged: ProcessTrend, now_us: int) -> NewAlert:
        tenant, service, pid = key
        span_us = int(judged.trend.span_s * _US)
        return NewAlert(
            tenant=tenant,
            fingerprint=fingerprint(rss_alert_labels(service, pid, self.severity)),
            service=service,
            hot_path=pid,
            severity=self.severity,
            quantile=0.0,
            budget_ns=round(self.rule.floor_bytes_per_min),
            fire_after=1,
            interval_s=self.rule.horizon_s,
            value_ns=round(judged.trend.per_minute),
            starts_us=now_us - span_us,  # growing since the trend's first reading
            kind=KIND,
            summary=judged.summary,
        )

    def _notify(self, round_: Evaluation, alert: AlertRecord, now_us: int) -> None:
        body = webhook_body([asdict(alert)], receiver=self.receiver, external_url=self.external_url)
        round_.notify(
            alert.id, alert.state, json.dumps(body, separators=(",", ":")), self.urls, now_us
        )


def _resolved_text(judged: ProcessTrend | None, key: Key) -> str:
    if judged is None:
        return f"RSS of {key[2]}: no readings within the horizon"
    return judged.summary
