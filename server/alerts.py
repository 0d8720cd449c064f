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

Evaluation runs in the maintenance thread of every server, through the alert store
(server/storage/alerts.py): one round is one transaction that holds the evaluation lock and
reads how far intervals are judged; streaks, alerts and their webhook outbox rows (bodies
from server/alert_webhook.py, sent by server/alert_delivery.py) commit together with the
progress. So several servers on one database judge each interval once, and a restart
neither forgets a streak nor fires or notifies twice. A fresh database starts with the
interval closing next; after downtime at most `CATCH_UP_INTERVALS` are judged, older ones
are skipped. Rules, streaks and alerts belong to a tenant; a round judges every tenant.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Literal

from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.server.alert_delivery import WebhookSender
from hotpath.server.alert_webhook import alert_labels, fingerprint, webhook_body
from hotpath.server.rss_alerts import RssAlertEvaluator
from hotpath.server.settings import Settings
from hotpath.server.storage.alerts import (
    AlertKey,
    AlertRecord,
    AlertStore,
    Evaluation,
    NewAlert,
    StoredRule,
    StreakState,
)
from hotpath.server.storage.memory import MemoryStore

log = logging.getLogger("hotpath.alerts")

CATCH_UP_INTERVALS = 360
MAX_INTERVALS_PER_ROUND = 60  # keeps one transaction short while catching up
_US = 1_000_000

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


def apply_override(defaults: Rule, stored: StoredRule) -> Rule:
    """A stored override on top of the defaults: None fields keep the default."""
    return Rule(
        quantile=stored.quantile if stored.quantile is not None else defaults.quantile,
        budget_ns=stored.budget_ns,
        fire_after=stored.fire_after or defaults.fire_after,
        resolve_after=stored.resolve_after or defaults.resolve_after,
        min_calls=stored.min_calls if stored.min_calls is not None else defaults.min_calls,
        severity=stored.severity or defaults.severity,
        enabled=stored.enabled,
    )


def rules_for(defaults: Rule, stored: Iterable[StoredRule]) -> dict[AlertKey, Rule]:
    return {(r.tenant, r.service, r.hot_path): apply_override(defaults, r) for r in stored}


class AlertEvaluator:
    """Judges closed intervals for every hot path and records transitions (see module doc)."""

    def __init__(self, store: AlertStore, settings: Settings) -> None:
        self.store = store
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
        done = self.store.evaluated_until()
        if done is None:
            self.store.start_evaluation(target)
            return 0
        if done >= target:
            return 0  # nothing closed since: the common case, a single cheap read
        with self.store.evaluation() as round_:
            if round_ is None:
                return 0  # another server holds the lock
            done = max(round_.evaluated_until_us, target - CATCH_UP_INTERVALS * self.interval_us)
            until = min(target, done + MAX_INTERVALS_PER_ROUND * self.interval_us)
            if done >= until:
                return 0
            self._judge(round_, done, until, now_us)
            round_.advance(until)
        return (until - done + self.interval_us - 1) // self.interval_us

    def _judge(self, round_: Evaluation, start_us: int, end_us: int, now_us: int) -> None:
        rules = rules_for(self.defaults, round_.rules())
        states: dict[AlertKey, Streaks] = {}
        alert_ids: dict[AlertKey, int] = {}
        for state in round_.states():
            states[state.key] = Streaks(
                state.breach_streak,
                state.ok_streak,
                state.streak_start_us,
                state.alert_id is not None,
            )
            if state.alert_id is not None:
                alert_ids[state.key] = state.alert_id
        before = dict(states)
        calls = round_.hot_path_calls(start_us, end_us, self.interval_us)
        for interval in range(start_us, end_us, self.interval_us):
            here = calls.get(interval, {})
            for key in sorted(set(here) | set(states)):
                rule = rules.get(key, self.defaults)
                budget, histogram = here.get(key, (None, None))
                verdict = judge(histogram, budget, rule)
                streaks, transition = step(states.get(key, Streaks()), verdict, rule, interval)
                states[key] = streaks
                if transition == "fire":
                    alert = self._fire(round_, key, rule, verdict, streaks)
                    alert_ids[key] = alert.id
                    self._notify(round_, alert, now_us)
                elif transition == "resolve":
                    alert = round_.resolve(alert_ids.pop(key), interval + self.interval_us)
                    _log_resolved(alert)
                    self._notify(round_, alert, now_us)
                elif streaks.firing and verdict.value_ns is not None:
                    round_.raise_peak(alert_ids[key], verdict.value_ns)
        _save_states(round_, before, states, alert_ids)

    def _fire(
        self, round_: Evaluation, key: AlertKey, rule: Rule, verdict: Verdict, streaks: Streaks
    ) -> AlertRecord:
        tenant, service, hot_path = key
        assert verdict.value_ns is not None and verdict.budget_ns is not None
        assert streaks.breach_start_us is not None
        alert = round_.fire(
            NewAlert(
                tenant=tenant,
                fingerprint=fingerprint(alert_labels(service, hot_path, rule.severity)),
                service=service,
                hot_path=hot_path,
                severity=rule.severity,
                quantile=rule.quantile,
                budget_ns=verdict.budget_ns,
                fire_after=rule.fire_after,
                interval_s=self.interval_us / _US,
                value_ns=verdict.value_ns,
                starts_us=streaks.breach_start_us,
            )
        )
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
        return alert

    def _notify(self, round_: Evaluation, alert: AlertRecord, now_us: int) -> None:
        body = webhook_body([asdict(alert)], receiver=self.receiver, external_url=self.external_url)
        text = json.dumps(body, separators=(",", ":"))
        round_.notify(alert.id, alert.state, text, self.urls, now_us)


def _log_resolved(alert: AlertRecord) -> None:
    log.warning(
        "alert resolved: %s %s p%g back within its budget of %.1f ms (peak %.1f ms)",
        alert.service,
        alert.hot_path,
        alert.quantile * 100,
        alert.budget_ns / 1e6,
        alert.peak_ns / 1e6,
    )


def _save_states(
    round_: Evaluation,
    before: dict[AlertKey, Streaks],
    after: dict[AlertKey, Streaks],
    alert_ids: dict[AlertKey, int],
) -> None:
    """Write back the streaks that changed; idle hot paths keep no state."""
    for key, streaks in after.items():
        if before.get(key) == streaks or (streaks.idle and key not in before):
            continue
        if streaks.idle:
            round_.drop_state(key)
            continue
        alert_id = alert_ids.get(key) if streaks.firing else None
        round_.put_state(
            StreakState(*key, streaks.breach, streaks.ok, streaks.breach_start_us, alert_id)
        )


def alert_work(
    store: AlertStore, settings: Settings, memory: MemoryStore | None = None
) -> Callable[[], None]:
    """What the maintenance thread runs each loop: judge closed intervals, judge RSS trends
    when due (server/rss_alerts.py, given the memory store), then deliver."""
    evaluator = AlertEvaluator(store, settings)
    sender = WebhookSender(store, settings)
    rss = (
        RssAlertEvaluator(store, memory, settings)
        if memory is not None and settings.memory_alert_enabled
        else None
    )

    def run() -> None:
        while evaluator.evaluate():
            pass  # catching up after downtime, MAX_INTERVALS_PER_ROUND at a time
        if rss is not None:
            rss.evaluate()
        sender.deliver()

    return run
