"""The SQL alert store (`server/storage/alerts.py` is its contract).

The evaluation lock: one round is one write transaction that takes a PostgreSQL advisory
lock (`pg_try_advisory_xact_lock`: a second server gets None at once); on SQLite the
transaction's write lock (BEGIN IMMEDIATE) does the same, a second caller waiting for it.
The progress, `alert_progress.evaluated_until_us`, is read again inside the lock, so
whoever comes second sees what the first judged.

The outbox claim is a conditional update on the claim that was read: of several servers
racing for one row, exactly one changes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.hotpath.histogram import Histogram, merge_all
from hotpath.server.storage.alerts import (
    AlertKey,
    AlertRecord,
    AlertStatus,
    IntervalCalls,
    NewAlert,
    Notification,
    StoredRule,
    StreakState,
)
from hotpath.server.storage.errors import Conflict
from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.hotpath_rollups import decode
from hotpath.server.storage.sql.tables import (
    alert_notifications,
    alert_progress,
    alert_rules,
    alert_states,
    alerts,
    hot_path_calls,
    services,
)

PROGRESS_NAME = "hot_paths"
_LOCK_ID = 0x6870616C  # any constant shared by every hotpath server on one database
_RULE_FIELDS = (
    "quantile",
    "budget_ns",
    "fire_after",
    "resolve_after",
    "min_calls",
    "severity",
    "enabled",
)


class SqlAlertStore:
    """`AlertStore` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- rules ------------------------------------------------------------------------------

    def rules(self, tenant: str) -> list[StoredRule]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alert_rules)
                .where(alert_rules.c.tenant == tenant)
                .order_by(alert_rules.c.service, alert_rules.c.hot_path)
            ).all()
        return [_rule(r) for r in rows]

    def put_rule(self, rule: StoredRule, now_us: int) -> StoredRule:
        values: dict[str, Any] = {f: getattr(rule, f) for f in _RULE_FIELDS}
        values["updated_us"] = now_us
        where = _rule_key(rule.tenant, rule.service, rule.hot_path)
        try:
            with write_transaction(self.engine) as conn:
                if conn.execute(update(alert_rules).where(where).values(**values)).rowcount == 0:
                    key = {"tenant": rule.tenant, "service": rule.service}
                    conn.execute(insert(alert_rules), {**key, "hot_path": rule.hot_path, **values})
                row = conn.execute(select(alert_rules).where(where)).one()
        except IntegrityError:
            raise Conflict("the rule was written concurrently; retry") from None
        return _rule(row)

    def delete_rule(self, tenant: str, service: str, hot_path: str) -> bool:
        with write_transaction(self.engine) as conn:
            deleted = conn.execute(
                delete(alert_rules).where(_rule_key(tenant, service, hot_path))
            ).rowcount
        return bool(deleted)

    # -- evaluation -------------------------------------------------------------------------

    def evaluated_until(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(_progress_query()).scalar()  # type: ignore[no-any-return]

    def start_evaluation(self, until_us: int) -> None:
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    insert(alert_progress), {"name": PROGRESS_NAME, "evaluated_until_us": until_us}
                )
        except IntegrityError:
            pass  # another server started it first

    @contextmanager
    def evaluation(self) -> Iterator[_SqlEvaluation | None]:
        with write_transaction(self.engine) as conn:
            if not _take_lock(conn):
                yield None
                return
            done = conn.execute(_progress_query()).scalar()
            if done is None:
                yield None  # not started: `start_evaluation` first
                return
            yield _SqlEvaluation(conn, done)

    # -- reading alerts ---------------------------------------------------------------------

    def alerts(
        self,
        tenant: str,
        *,
        state: AlertStatus | None = None,
        service: str | None = None,
        limit: int = 100,
    ) -> list[AlertRecord]:
        pending = (
            select(func.count())
            .where(
                alert_notifications.c.alert_id == alerts.c.id,
                alert_notifications.c.delivered_us.is_(None),
            )
            .scalar_subquery()
        )
        query = (
            select(alerts, pending.label("notifications_pending"))
            .where(alerts.c.tenant == tenant)
            .order_by(
                (alerts.c.state == "firing").desc(), alerts.c.starts_us.desc(), alerts.c.id.desc()
            )
        )
        if state:
            query = query.where(alerts.c.state == state)
        if service:
            query = query.where(alerts.c.service == service)
        with read_snapshot(self.engine) as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [AlertRecord(**r._mapping) for r in rows]

    def firing(self) -> list[AlertRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).where(alerts.c.state == "firing")).all()
        return [AlertRecord(**r._mapping) for r in rows]

    # -- the outbox -------------------------------------------------------------------------

    def pending_urls(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(alert_notifications.c.url)
                    .where(alert_notifications.c.delivered_us.is_(None))
                    .distinct()
                ).scalars()
            )

    def claim_next(self, url: str, now_us: int, claim_us: int) -> Notification | None:
        t = alert_notifications
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(t)
                .where(t.c.url == url, t.c.delivered_us.is_(None))
                .order_by(t.c.id)
                .limit(1)
            ).first()
            if row is None or row.next_attempt_us > now_us or row.claimed_until_us > now_us:
                return None
            # Conditional on the claim we read: another server claiming meanwhile wins.
            claimed = conn.execute(
                update(t)
                .where(t.c.id == row.id, t.c.claimed_until_us == row.claimed_until_us)
                .values(claimed_until_us=now_us + claim_us)
            ).rowcount
        if claimed != 1:
            return None
        m = row._mapping
        return Notification(**{k: m[k] for k in Notification.__dataclass_fields__})

    def delivered(self, notification_id: int, attempts: int, at_us: int) -> None:
        self._update(
            notification_id,
            attempts=attempts,
            delivered_us=at_us,
            claimed_until_us=0,
            last_error=None,
        )

    def failed(self, notification_id: int, attempts: int, error: str, retry_at_us: int) -> None:
        self._update(
            notification_id,
            attempts=attempts,
            next_attempt_us=retry_at_us,
            claimed_until_us=0,
            last_error=error,
        )

    def given_up(self, notification_id: int, attempts: int, error: str, at_us: int) -> None:
        self._update(
            notification_id, attempts=attempts, delivered_us=at_us, last_error=f"gave up: {error}"
        )

    def notifications_pending(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(alert_notifications.c.delivered_us.is_(None))
                ).scalar_one()
            )

    def _update(self, notification_id: int, **values: Any) -> None:
        t = alert_notifications
        with write_transaction(self.engine) as conn:
            conn.execute(update(t).where(t.c.id == notification_id).values(**values))


class _SqlEvaluation:
    """One round's transaction, holding the lock (see the module doc)."""

    def __init__(self, conn: Connection, evaluated_until_us: int) -> None:
        self.conn = conn
        self.evaluated_until_us = evaluated_until_us

    def rules(self) -> list[StoredRule]:
        return [_rule(r) for r in self.conn.execute(select(alert_rules))]

    def states(self) -> list[StreakState]:
        return [
            StreakState(
                r.tenant,
                r.service,
                r.hot_path,
                r.breach_streak,
                r.ok_streak,
                r.streak_start_us,
                r.alert_id,
            )
            for r in self.conn.execute(select(alert_states))
        ]

    def hot_path_calls(self, start_us: int, end_us: int, interval_us: int) -> IntervalCalls:
        conn = self.conn
        service_ids = list(conn.execute(select(services.c.id)).scalars())
        if not service_ids:
            return {}
        # service_id IN (...) lets both databases use the (service_id, start_us) index.
        query = (
            select(
                services.c.tenant,
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
        parts: dict[int, dict[AlertKey, list[Histogram]]] = defaultdict(lambda: defaultdict(list))
        budgets: dict[tuple[int, AlertKey], int | None] = {}
        for tenant, service, name, start, budget, sum_ns, max_ns, blob in conn.execute(query):
            interval = start - (start - start_us) % interval_us
            key = (tenant, service, name)
            parts[interval][key].append(decode(sum_ns, max_ns, blob))
            if budget is not None:
                budgets[(interval, key)] = budget  # ordered by time: the latest wins
        return {
            interval: {
                key: (budgets.get((interval, key)), merge_all(histograms))
                for key, histograms in by_key.items()
            }
            for interval, by_key in parts.items()
        }

    def fire(self, alert: NewAlert) -> AlertRecord:
        row = {
            **vars(alert),
            "state": "firing",
            "peak_ns": alert.value_ns,
            "ends_us": None,
        }
        alert_id = self.conn.execute(insert(alerts).returning(alerts.c.id), row).scalar_one()
        return AlertRecord(id=alert_id, **row)

    def resolve(self, alert_id: int, ends_us: int) -> AlertRecord:
        self.conn.execute(
            update(alerts).where(alerts.c.id == alert_id).values(state="resolved", ends_us=ends_us)
        )
        return AlertRecord(
            **self.conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()._mapping
        )

    def raise_peak(self, alert_id: int, value_ns: int) -> None:
        self.conn.execute(
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.peak_ns < value_ns)
            .values(peak_ns=value_ns)
        )

    def notify(
        self, alert_id: int, status: AlertStatus, body: str, urls: Sequence[str], now_us: int
    ) -> None:
        if not urls:
            return
        self.conn.execute(
            insert(alert_notifications),
            [
                {
                    "alert_id": alert_id,
                    "status": status,
                    "url": url,
                    "body": body,
                    "created_us": now_us,
                    "attempts": 0,
                    "next_attempt_us": now_us,
                    "claimed_until_us": 0,
                    "delivered_us": None,
                    "last_error": None,
                }
                for url in urls
            ],
        )

    def put_state(self, state: StreakState) -> None:
        values = {
            "breach_streak": state.breach_streak,
            "ok_streak": state.ok_streak,
            "streak_start_us": state.streak_start_us,
            "alert_id": state.alert_id,
        }
        where = _state_key(*state.key)
        if self.conn.execute(update(alert_states).where(where).values(**values)).rowcount == 0:
            key = {"tenant": state.tenant, "service": state.service, "hot_path": state.hot_path}
            self.conn.execute(insert(alert_states), {**key, **values})

    def drop_state(self, key: AlertKey) -> None:
        self.conn.execute(delete(alert_states).where(_state_key(*key)))

    def advance(self, until_us: int) -> None:
        self.conn.execute(
            update(alert_progress)
            .where(alert_progress.c.name == PROGRESS_NAME)
            .values(evaluated_until_us=until_us)
        )
        self.evaluated_until_us = until_us


def _take_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE already holds SQLite's one write lock
    return bool(
        conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}).scalar()
    )


def _progress_query():  # type: ignore[no-untyped-def]
    return select(alert_progress.c.evaluated_until_us).where(alert_progress.c.name == PROGRESS_NAME)


def _rule_key(tenant: str, service: str, hot_path: str):  # type: ignore[no-untyped-def]
    t = alert_rules.c
    return (t.tenant == tenant) & (t.service == service) & (t.hot_path == hot_path)


def _state_key(tenant: str, service: str, hot_path: str):  # type: ignore[no-untyped-def]
    t = alert_states.c
    return (t.tenant == tenant) & (t.service == service) & (t.hot_path == hot_path)


def _rule(row: Any) -> StoredRule:
    m = row._mapping
    return StoredRule(
        tenant=m["tenant"],
        service=m["service"],
        hot_path=m["hot_path"],
        **{f: m[f] for f in _RULE_FIELDS if f != "enabled"},
        enabled=bool(m["enabled"]),
    )
