"""Alert notifications: the webhook body Alertmanager sends, the outbox, and its delivery.

Body: what Alertmanager POSTs to a webhook receiver (version "4"), one group per alert,
grouped by (alertname, service, hot_path), so any receiver written for Alertmanager (or
Alertmanager's own webhook tooling) reads ours. A firing alert has the zero time as
`endsAt`, as Alertmanager sends it.

Outbox: `alert_notifications` gets one row per (notification, receiver URL) in the same
transaction that fires or resolves the alert (server/alerts.py), so a notification exists
exactly when the transition does. The maintenance thread delivers them: per URL strictly in
order (a resolve never overtakes its firing), the oldest undelivered row first; a row is
claimed for `timeout + 10 s` by a conditional update, so of several servers only one sends
it. A failed POST (no connection, timeout, non-2xx) is retried with backoff doubling from
`alert_retry_base_s` to `alert_retry_max_s` and holds back that URL's later rows; after
`alert_give_up_after` it is dropped with an error in the log. A server that dies between a
successful POST and recording it sends that row again once the claim expires (at least
once, as Alertmanager; receivers dedupe by fingerprint and status).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import Connection, Engine, insert, select, update

from hotpath.server.settings import Settings
from hotpath.server.storage.sql.database import write_transaction
from hotpath.server.storage.sql.tables import alert_notifications

log = logging.getLogger("hotpath.alerts")

_US = 1_000_000
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: "no end yet" in Alertmanager's body
GROUP_BY = ("alertname", "service", "hot_path")


def rfc3339(micros: int) -> str:
    moment = datetime.fromtimestamp(micros / _US, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


def _quantile_name(q: float) -> str:
    return f"p{q * 100:g}"


def alert_object(alert: Mapping[str, Any], external_url: str) -> dict[str, Any]:
    """One entry of the body's `alerts`, from an `alerts` row."""
    from hotpath.server.alerts import alert_labels  # alerts imports this module

    labels = alert_labels(alert["service"], alert["hot_path"], alert["severity"])
    q = _quantile_name(alert["quantile"])
    over = (
        f"{q} of {alert['hot_path']} in {alert['service']} was {_ms(alert['value_ns'])} against "
        f"a budget of {_ms(alert['budget_ns'])} in {alert['fire_after']} consecutive "
        f"{alert['interval_s']:g} s intervals"
    )
    if alert["state"] == "resolved":
        description = f"{over}; back within budget (peak {_ms(alert['peak_ns'])})"
    else:
        description = f"{over} (peak so far {_ms(alert['peak_ns'])})"
    return {
        "status": alert["state"],
        "labels": labels,
        "annotations": {
            "summary": f"{alert['hot_path']} {q} over its {_ms(alert['budget_ns'])} budget "
            f"in {alert['service']}",
            "description": description,
        },
        "startsAt": rfc3339(alert["starts_us"]),
        "endsAt": rfc3339(alert["ends_us"]) if alert["ends_us"] is not None else ZERO_TIME,
        "generatorURL": f"{external_url}/services/{quote(alert['service'], safe='')}",
        "fingerprint": alert["fingerprint"],
    }


def webhook_body(
    alerts: Sequence[Mapping[str, Any]], *, receiver: str, external_url: str
) -> dict[str, Any]:
    """Alertmanager's webhook body (version "4") for alerts of one group."""
    entries = [alert_object(a, external_url) for a in alerts]
    common = dict(entries[0]["labels"])
    for entry in entries[1:]:
        common = {k: v for k, v in common.items() if entry["labels"].get(k) == v}
    annotations = dict(entries[0]["annotations"])
    for entry in entries[1:]:
        annotations = {k: v for k, v in annotations.items() if entry["annotations"].get(k) == v}
    group = {k: common[k] for k in GROUP_BY if k in common}
    matchers = ", ".join(f'{k}="{v}"' for k, v in group.items())
    return {
        "version": "4",
        "groupKey": "{}:{" + matchers + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(e["status"] == "firing" for e in entries) else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": entries,
    }


def enqueue(
    conn: Connection, alert_id: int, body: Mapping[str, Any], urls: Sequence[str], now_us: int
) -> None:
    """Outbox rows for one notification, in the caller's transaction."""
    if not urls:
        return
    text = json.dumps(body, separators=(",", ":"))
    conn.execute(
        insert(alert_notifications),
        [
            {
                "alert_id": alert_id,
                "status": body["status"],
                "url": url,
                "body": text,
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


class WebhookSender:
    """Delivers the outbox (see module doc). `deliver` is called by the maintenance thread."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.timeout_s = settings.alert_webhook_timeout_s
        self.retry_base_us = int(settings.alert_retry_base_s * _US)
        self.retry_max_us = int(settings.alert_retry_max_s * _US)
        self.give_up_us = int(settings.alert_give_up_after.total_seconds() * _US)
        self.claim_us = int((self.timeout_s + 10) * _US)
        self.client = httpx.Client(timeout=self.timeout_s)

    def deliver(self, now_us: int | None = None, limit: int = 100) -> int:
        """Send what is due, per URL in order. Returns how many were delivered."""
        with self.engine.connect() as conn:
            urls = list(
                conn.execute(
                    select(alert_notifications.c.url)
                    .where(alert_notifications.c.delivered_us.is_(None))
                    .distinct()
                ).scalars()
            )
        delivered = 0
        for url in urls:
            while delivered < limit:
                now = now_us if now_us is not None else int(time.time() * _US)
                row = self._claim_next(url, now)
                if row is None or not self._send(row, now):
                    break
                delivered += 1
        return delivered

    def _claim_next(self, url: str, now_us: int) -> Mapping[str, Any] | None:
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
                .values(claimed_until_us=now_us + self.claim_us)
            ).rowcount
        return dict(row._mapping) if claimed == 1 else None

    def _send(self, row: Mapping[str, Any], now_us: int) -> bool:
        error: str | None = None
        try:
            response = self.client.post(
                row["url"],
                content=row["body"].encode(),
                headers={"Content-Type": "application/json", "User-Agent": "hotpath"},
            )
            if not response.is_success:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        t = alert_notifications
        attempts = row["attempts"] + 1
        if error is None:
            values: dict[str, Any] = {
                "attempts": attempts,
                "delivered_us": int(time.time() * _US),
                "claimed_until_us": 0,
                "last_error": None,
            }
        elif now_us - row["created_us"] >= self.give_up_us:
            log.error(
                "alert notification %d to %s dropped after %d attempts: %s",
                row["id"],
                row["url"],
                attempts,
                error,
            )
            values = {
                "attempts": attempts,
                "delivered_us": now_us,
                "last_error": f"gave up: {error}",
            }
        else:
            delay = min(self.retry_max_us, self.retry_base_us * 2 ** min(attempts - 1, 30))
            log.warning(
                "alert notification %d to %s failed (attempt %d, next in %.0f s): %s",
                row["id"],
                row["url"],
                attempts,
                delay / _US,
                error,
            )
            values = {
                "attempts": attempts,
                "next_attempt_us": now_us + delay,
                "claimed_until_us": 0,
                "last_error": error,
            }
        with write_transaction(self.engine) as conn:
            conn.execute(update(t).where(t.c.id == row["id"]).values(**values))
        return error is None
