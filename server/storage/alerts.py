"""The alert store contract: what hot-path alerting keeps, and how it is read and changed.

Three callers use it: the evaluator (`server/alerts.py`: rules, streaks, firing and
resolving), the webhook sender (`server/alert_delivery.py`: the outbox) and the alerts API
and page (`server/alerts_api.py`: rules CRUD, listing). The alerting *logic* lives with
those callers; a backend only keeps rows and guarantees the transactions below.

Rules, alerts and streaks belong to a tenant. Evaluation itself runs across tenants: one
round judges every tenant's hot paths under one lock, and its progress is one figure.

Guarantees every backend gives (`tests/test_storage_contract_alerts.py` checks them):
- `evaluation()` is one transaction holding the evaluation lock: at most one caller at a
  time is inside it (others wait for it or get None); everything done through the
  `Evaluation` (alerts fired or resolved, their notifications, streaks, progress) commits
  together, or nothing does when the block raises.
- `claim_next` hands a notification to one caller only until its claim expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from hotpath.profiler.hotpath.histogram import Histogram

AlertKey = tuple[str, str, str]  # tenant, service, hot path
AlertStatus = Literal["firing", "resolved"]
# Per interval start (us), per hot path: the budget shipped last in it and the merged calls.
IntervalCalls = dict[int, dict[AlertKey, tuple[int | None, Histogram]]]


@dataclass(frozen=True)
class StoredRule:
    """An override of the default rule for one hot path; None fields keep the default."""

    tenant: str
    service: str
    hot_path: str
    quantile: float | None = None
    budget_ns: int | None = None  # None: the budget the hot path ships
    fire_after: int | None = None
    resolve_after: int | None = None
    min_calls: int | None = None
    severity: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class StreakState:
    """Consecutive breached / clear intervals of one hot path, and its firing alert if any.
    Idle hot paths (no streak, not firing) have no state."""

    tenant: str
    service: str
    hot_path: str
    breach_streak: int
    ok_streak: int
    streak_start_us: int | None
    alert_id: int | None

    @property
    def key(self) -> AlertKey:
        return (self.tenant, self.service, self.hot_path)


@dataclass(frozen=True)
class NewAlert:
    """An alert about to fire; the rule as it is now is kept with it."""

    tenant: str
    fingerprint: str
    service: str
    hot_path: str
    severity: str
    quantile: float
    budget_ns: int
    fire_after: int
    interval_s: float
    value_ns: int  # the quantile in the interval that fired
    starts_us: int  # the first breached interval of the streak
    # "hot_path" (the fields above as named), or "rss_growth" (server/rss_alerts.py): then
    # hot_path is "pid N", budget_ns the floor and value_ns the slope, in bytes per minute,
    # interval_s the trend's horizon, and summary the sentence people read.
    kind: str = "hot_path"
    summary: str | None = None


@dataclass(frozen=True)
class AlertRecord:
    """One firing episode as stored."""

    id: int
    tenant: str
    fingerprint: str
    service: str
    hot_path: str
    severity: str
    state: AlertStatus
    quantile: float
    budget_ns: int
    fire_after: int
    interval_s: float
    value_ns: int
    peak_ns: int  # the highest quantile while firing
    starts_us: int
    ends_us: int | None
    notifications_pending: int = 0
    kind: str = "hot_path"  # as NewAlert.kind says
    summary: str | None = None


@dataclass(frozen=True)
class Notification:
    """One webhook POST in the outbox: a notification for one receiver URL."""

    id: int
    alert_id: int
    status: AlertStatus
    url: str
    body: str  # JSON, as it is sent
    created_us: int
    attempts: int
    next_attempt_us: int
    claimed_until_us: int


class Evaluation(Protocol):
    """One evaluation round inside the lock (see the module doc)."""

    evaluated_until_us: int  # how far intervals are judged, read inside the lock

    def rules(self) -> list[StoredRule]: ...

    def states(self) -> list[StreakState]: ...

    def hot_path_calls(self, start_us: int, end_us: int, interval_us: int) -> IntervalCalls:
        """The calls of every hot path of every tenant whose windows start in
        [start_us, end_us), merged over the series of a service per interval (intervals are
        `interval_us` long, counted from `start_us`)."""
        ...

    def fire(self, alert: NewAlert) -> AlertRecord: ...

    def resolve(self, alert_id: int, ends_us: int) -> AlertRecord: ...

    def raise_peak(self, alert_id: int, value_ns: int) -> None:
        """Keep `value_ns` as the alert's peak if it is higher."""
        ...

    def notify(
        self, alert_id: int, status: AlertStatus, body: str, urls: Sequence[str], now_us: int
    ) -> None:
        """Outbox rows for one notification: one per receiver URL, due at `now_us`."""
        ...

    def put_state(self, state: StreakState) -> None: ...

    def drop_state(self, key: AlertKey) -> None: ...

    def advance(self, until_us: int) -> None:
        """Record that intervals up to `until_us` are judged."""
        ...


class AlertStore(Protocol):
    # -- rules ------------------------------------------------------------------------------
    def rules(self, tenant: str) -> list[StoredRule]:
        """A tenant's rule overrides, by service and hot path."""
        ...

    def put_rule(self, rule: StoredRule, now_us: int) -> StoredRule:
        """Create or replace one hot path's override. `Conflict` when a concurrent write of
        the same rule won."""
        ...

    def delete_rule(self, tenant: str, service: str, hot_path: str) -> bool:
        """False when there was no such rule."""
        ...

    # -- evaluation -------------------------------------------------------------------------
    def evaluated_until(self) -> int | None:
        """How far intervals are judged; None before the first round (a cheap read)."""
        ...

    def start_evaluation(self, until_us: int) -> None:
        """Start the progress at `until_us` unless another caller started it already."""
        ...

    def evaluation(self) -> AbstractContextManager[Evaluation | None]:
        """The lock and the transaction of one round; None when another caller holds it."""
        ...

    # -- reading alerts ---------------------------------------------------------------------
    def alerts(
        self,
        tenant: str,
        *,
        state: AlertStatus | None = None,
        service: str | None = None,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """A tenant's alerts, firing first, then the most recent, with the notifications
        each still has waiting."""
        ...

    def firing(self) -> list[AlertRecord]:
        """Every tenant's firing alerts (metrics)."""
        ...

    # -- the outbox -------------------------------------------------------------------------
    def pending_urls(self) -> list[str]:
        """Receiver URLs with undelivered notifications."""
        ...

    def claim_next(self, url: str, now_us: int, claim_us: int) -> Notification | None:
        """The oldest undelivered notification for `url`, claimed for `claim_us`, if it is
        due and nobody holds a claim on it; None otherwise (later ones wait behind it)."""
        ...

    def delivered(self, notification_id: int, attempts: int, at_us: int) -> None: ...

    def failed(self, notification_id: int, attempts: int, error: str, retry_at_us: int) -> None: ...

    def given_up(self, notification_id: int, attempts: int, error: str, at_us: int) -> None:
        """Stop retrying: the row counts as done, with the error kept."""
        ...

    def notifications_pending(self) -> int: ...


__all__ = [
    "AlertKey",
    "AlertRecord",
    "AlertStatus",
    "AlertStore",
    "Evaluation",
    "IntervalCalls",
    "NewAlert",
    "Notification",
    "StoredRule",
    "StreakState",
]
