"""Hot-path breach alerts: the rule, its evaluation over closed intervals, and alert state.

The rule, per (service, hot path): the `quantile` (default p99) of the calls in one
evaluation interval is compared with the budget, the hot path's own as the agent ships it
unless a rule in `alert_rules` overrides it. `fire_after` (3) consecutive intervals over the
budget fire an alert; `resolve_after` (3) consecutive intervals within it resolve it.
Defaults come from `HOTPATH_ALERT_*` settings; `PUT /api/v1/alert-rules` overrides them.

Intervals are `alert_interval_s` (10 s) long and aligned to the epoch. A window's calls
belong to the interval its start falls in, merged over all series of the service. An
interval is judged once it has been closed for `alert_grace_s` (15 s: an agent window of
10 s is shipped after its end). An interval with fewer than `min_calls` calls, none
included, counts as within budget: as in Prometheus, no data is not a breach, so the alert
of a process that stopped resolves.

Evaluation runs in the maintenance thread of every server. One round is one transaction
that takes a PostgreSQL advisory lock (SQLite's write lock does the same) and reads
`alert_progress`, how far intervals are judged; streaks, alerts and their webhook outbox
rows (server/alert_delivery.py) commit together with the progress. So several servers on
one database judge each interval once, and a restart neither forgets a streak nor fires or
notifies twice. A fresh database starts with the interval closing next; after downtime at
most `CATCH_UP_INTERVALS` are judged, older ones are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.hotpath.histogram import Histogram, merge_all
from hotpath.server import alert_delivery
from hotpath.server.settings import Settings
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.hotpath_rollups import decode
from hotpath.server.storage.sql.tables import (
    alert_progress,
    alert_rules,
    alert_states,
    alerts,
    hot_path_calls,
    services,
)

log = logging.getLogger("hotpath.alerts")

ALERT_NAME = "HotPathOverBudget"
PROGRESS_NAME = "hot_paths"
CATCH_UP_INTERVALS = 360
MAX_INTERVALS_PER_ROUND = 60  # keeps one transaction short while catching up
_LOCK_ID = 0x6870616C  # any constant shared by every hotpath server on one database
_US = 1_000_000

Key = tuple[str, str]  # service, hot path
Transition = Literal["fire", "resolve"] | None


@dataclass(frozen=True)
class Rule:
    quantile: float
    budget_ns: int | None  # None: the budget the hot path ships
    fire_after: int
    resolve_after: int
    min_calls: int
    severity: str
    enabled: bool = True


@dataclass(frozen=True)
class Verdict:
    breached: bool
    value_ns: int | None  # the quantile; None when too few calls to judge
    budget_ns: int | None
    calls: int


@dataclass(frozen=True)
class Streaks:
    breach: int = 0
    ok: int = 0  # counted only while firing
    breach_start_us: int | None = None
    firing: bool = False

    @property
    def idle(self) -> bool:
        return not self.firing and self.breach == 0


def default_rule(settings: Settings) -> Rule:
    return Rule(
        quantile=settings.alert_quantile,
        budget_ns=None,
        fire_after=settings.alert_fire_after,
        resolve_after=settings.alert_resolve_after,
        min_calls=settings.alert_min_calls,
        severity=settings.alert_severity,
    )


def judge(calls: Histogram | None, shipped_budget_ns: int | None, rule: Rule) -> Verdict:
    """Is this interval's quantile over the budget? Too few calls, no budget or a disabled
    rule: not a breach."""
    budget = rule.budget_ns if rule.budget_ns is not None else shipped_budget_ns
    count = calls.count if calls is not None else 0
    if calls is None or count == 0 or count < rule.min_calls or not rule.enabled:
        return Verdict(False, None, budget, count)
    value = calls.quantile(rule.quantile)
    return Verdict(budget is not None and value > budget, value, budget, count)


def step(
    streaks: Streaks, verdict: Verdict, rule: Rule, interval_start_us: int
) -> tuple[Streaks, Transition]:
    """The streaks after one more judged interval, and whether the alert fires or resolves."""
    if verdict.breached:
        start = streaks.breach_start_us if streaks.breach else interval_start_us
        after = Streaks(streaks.breach + 1, 0, start, streaks.firing)
        if not after.firing and after.breach >= rule.fire_after:
            return replace(after, firing=True), "fire"
        return after, None
    after = Streaks(0, streaks.ok + 1 if streaks.firing else 0, None, streaks.firing)
    if after.firing and after.ok >= rule.resolve_after:
        return Streaks(), "resolve"
    return after, None


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits of the sorted labels, like Alertmanager's: one per hot path and rule."""
    text_ = "\0".join(f"{k}\0{v}" for k, v in sorted(labels.items()))
    return hashlib.blake2b(text_.encode(), digest_size=8).hexdigest()


def alert_labels(service: str, hot_path: str, severity: str) -> dict[str, str]:
    return {"alertname": ALERT_NAME, "service": service, "hot_path": hot_path, "severity": severity}


class AlertEvaluator:
    """Judges closed intervals for every hot path and records transitions (see module doc)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.defaults = default_rule(settings)
        self.interval_us = max(1, int(settings.alert_interval_s * _US))
        self.grace_us = int(settings.alert_grace_s * _US)
        self.urls = settings.alert_webhook_urls()
        self.receiver = settings.alert_receiver
        self.external_url = settings.alert_external_url.rstrip("/")

    def closed_until(self, now_us: int) -> int:
        """The end of the newest interval that may be judged at `now_us`."""
        return (now_us - self.grace_us) // self.interval_us * self.interval_us

    def evaluate(self, now_us: int | None = None) -> int:
        """One round: judge the closed intervals not judged yet. Returns how many were."""
        now_us = now_us if now_us is not None else int(time.time() * _US)
        target = self.closed_until(now_us)
        with self.engine.connect() as conn:
            done = conn.execute(_progress_query()).scalar()
        if done is None:
            self._start_progress(target)
            return 0
        if done >= target:
            return 0  # nothing closed since: the common case, a single cheap read
        with write_transaction(self.engine) as conn:
            if not _take_lock(conn):
                return 0
            done = conn.execute(_progress_query()).scalar_one()
            done = max(done, target - CATCH_UP_INTERVALS * self.interval_us)
            until = min(target, done + MAX_INTERVALS_PER_ROUND * self.interval_us)
            if done >= until:
                return 0
            self._judge(conn, done, until, now_us)
            conn.execute(
                update(alert_progress)
                .where(alert_progress.c.name == PROGRESS_NAME)
                .values(evaluated_until_us=until)
            )
        return (until - done + self.interval_us - 1) // self.interval_us

    def _start_progress(self, target: int) -> None:
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    insert(alert_progress),
                    {"name": PROGRESS_NAME, "evaluated_until_us": target},
                )
        except IntegrityError:
            pass  # another server started it first

    def _judge(self, conn: Connection, start_us: int, end_us: int, now_us: int) -> None:
        rules = rules_for(self.defaults, conn.execute(select(alert_rules)))
        states, alert_ids = _load_states(conn)
        before = dict(states)
        calls = _load_calls(conn, start_us, end_us, self.interval_us)
        for interval in range(start_us, end_us, self.interval_us):
            here = calls.get(interval, {})
            for key in sorted(set(here) | set(states)):
                rule = rules.get(key, self.defaults)
                budget, histogram = here.get(key, (None, None))
                verdict = judge(histogram, budget, rule)
                streaks, transition = step(states.get(key, Streaks()), verdict, rule, interval)
                states[key] = streaks
                if transition == "fire":
                    alert_ids[key] = self._fire(conn, key, rule, verdict, streaks, now_us)
                elif transition == "resolve":
                    self._resolve(conn, alert_ids.pop(key), interval + self.interval_us, now_us)
                elif streaks.firing and verdict.value_ns is not None:
                    _raise_peak(conn, alert_ids[key], verdict.value_ns)
        _save_states(conn, before, states, alert_ids)

    def _fire(
        self,
        conn: Connection,
        key: Key,
        rule: Rule,
        verdict: Verdict,
        streaks: Streaks,
        now_us: int,
    ) -> int:
        service, hot_path = key
        assert verdict.value_ns is not None and verdict.budget_ns is not None
        row = {
            "fingerprint": fingerprint(alert_labels(service, hot_path, rule.severity)),
            "service": service,
            "hot_path": hot_path,
            "severity": rule.severity,
            "state": "firing",
            "quantile": rule.quantile,
            "budget_ns": verdict.budget_ns,
            "fire_after": rule.fire_after,
            "interval_s": self.interval_us / _US,
            "value_ns": verdict.value_ns,
            "peak_ns": verdict.value_ns,
            "starts_us": streaks.breach_start_us,
            "ends_us": None,
        }
        alert_id = conn.execute(insert(alerts).returning(alerts.c.id), row).scalar_one()
        log.warning(
            "alert firing: %s %s p%g %.1f ms over its budget of %.1f ms in %d intervals of %g s",
            service,
            hot_path,
            rule.quantile * 100,
            verdict.value_ns / 1e6,
            verdict.budget_ns / 1e6,
            rule.fire_after,
            self.interval_us / _US,
        )
        self._notify(conn, {**row, "id": alert_id}, now_us)
        return alert_id

    def _resolve(self, conn: Connection, alert_id: int, ends_us: int, now_us: int) -> None:
        conn.execute(
            update(alerts).where(alerts.c.id == alert_id).values(state="resolved", ends_us=ends_us)
        )
        row = dict(conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()._mapping)
        log.warning(
            "alert resolved: %s %s p%g back within its budget of %.1f ms (peak %.1f ms)",
            row["service"],
            row["hot_path"],
            row["quantile"] * 100,
            row["budget_ns"] / 1e6,
            row["peak_ns"] / 1e6,
        )
        self._notify(conn, row, now_us)

    def _notify(self, conn: Connection, alert: dict[str, Any], now_us: int) -> None:
        body = alert_delivery.webhook_body(
            [alert], receiver=self.receiver, external_url=self.external_url
        )
        alert_delivery.enqueue(conn, alert["id"], body, self.urls, now_us)


def alert_work(engine: Engine, settings: Settings) -> Callable[[], None]:
    """What the maintenance thread runs each loop: judge closed intervals, then deliver."""
    evaluator = AlertEvaluator(engine, settings)
    sender = alert_delivery.WebhookSender(engine, settings)

    def run() -> None:
        while evaluator.evaluate():
            pass  # catching up after downtime, MAX_INTERVALS_PER_ROUND at a time
        sender.deliver()

    return run


def _take_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    return bool(
        conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}).scalar()
    )


def _progress_query():  # type: ignore[no-untyped-def]
    return select(alert_progress.c.evaluated_until_us).where(alert_progress.c.name == PROGRESS_NAME)


def load_rule(defaults: Rule, row: object) -> Rule:
    """A stored override on top of the defaults: NULL columns keep the default."""
    m = row._mapping  # type: ignore[attr-defined]
    return Rule(
        quantile=m["quantile"] if m["quantile"] is not None else defaults.quantile,
        budget_ns=m["budget_ns"],
        fire_after=m["fire_after"] or defaults.fire_after,
        resolve_after=m["resolve_after"] or defaults.resolve_after,
        min_calls=m["min_calls"] if m["min_calls"] is not None else defaults.min_calls,
        severity=m["severity"] or defaults.severity,
        enabled=bool(m["enabled"]),
    )


def _load_states(conn: Connection) -> tuple[dict[Key, Streaks], dict[Key, int]]:
    states: dict[Key, Streaks] = {}
    alert_ids: dict[Key, int] = {}
    for r in conn.execute(select(alert_states)):
        key = (r.service, r.hot_path)
        states[key] = Streaks(
            r.breach_streak, r.ok_streak, r.streak_start_us, r.alert_id is not None
        )
        if r.alert_id is not None:
            alert_ids[key] = r.alert_id
    return states, alert_ids


def _save_states(
    conn: Connection,
    before: dict[Key, Streaks],
    after: dict[Key, Streaks],
    alert_ids: dict[Key, int],
) -> None:
    """Write back the streaks that changed; idle hot paths keep no row."""
    for key, streaks in after.items():
        if before.get(key) == streaks or (streaks.idle and key not in before):
            continue
        service, hot_path = key
        where = (alert_states.c.service == service) & (alert_states.c.hot_path == hot_path)
        if streaks.idle:
            conn.execute(delete(alert_states).where(where))
            continue
        values = {
            "breach_streak": streaks.breach,
            "ok_streak": streaks.ok,
            "streak_start_us": streaks.breach_start_us,
            "alert_id": alert_ids.get(key) if streaks.firing else None,
        }
        if key in before:
            conn.execute(update(alert_states).where(where).values(**values))
        else:
            conn.execute(insert(alert_states), {"service": service, "hot_path": hot_path, **values})


def _raise_peak(conn: Connection, alert_id: int, value_ns: int) -> None:
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.peak_ns < value_ns)
        .values(peak_ns=value_ns)
    )


def _load_calls(
    conn: Connection, start_us: int, end_us: int, interval_us: int
) -> dict[int, dict[Key, tuple[int | None, Histogram]]]:
    """Per interval start, per (service, hot path): the latest budget shipped and the merged
    calls of all series whose windows start in the interval."""
    service_ids = list(conn.execute(select(services.c.id)).scalars())
    if not service_ids:
        return {}
    # service_id IN (...) lets both databases use the (service_id, start_us) index.
    query = (
        select(
            services.c.name,
            hot_path_calls.c.name,
            hot_path_calls.c.start_us,
            hot_path_calls.c.budget_ns,
            hot_path_calls.c.sum_ns,
            hot_path_calls.c.max_ns,
            hot_path_calls.c.buckets,
        )
        .join(services, services.c.id == hot_path_calls.c.service_id)
        .where(
            hot_path_calls.c.service_id.in_(service_ids),
            hot_path_calls.c.start_us >= start_us,
            hot_path_calls.c.start_us < end_us,
        )
        .order_by(hot_path_calls.c.start_us)
    )
    parts: dict[int, dict[Key, list[Histogram]]] = defaultdict(lambda: defaultdict(list))
    budgets: dict[tuple[int, Key], int | None] = {}
    for service, name, start, budget, sum_ns, max_ns, blob in conn.execute(query):
        interval = start - (start - start_us) % interval_us
        parts[interval][(service, name)].append(decode(sum_ns, max_ns, blob))
        if budget is not None:
            budgets[(interval, (service, name))] = budget  # ordered by time: the latest wins
    return {
        interval: {
            key: (budgets.get((interval, key)), merge_all(histograms))
            for key, histograms in by_key.items()
        }
        for interval, by_key in parts.items()
    }


def rules_for(defaults: Rule, rows: Iterable[object]) -> dict[Key, Rule]:
    return {(r.service, r.hot_path): load_rule(defaults, r) for r in rows}  # type: ignore[attr-defined]
