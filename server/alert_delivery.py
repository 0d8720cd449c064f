"""Delivering alert notifications: the webhook outbox, sent in order with retries.

The evaluator (server/alerts.py) puts one outbox row per (notification, receiver URL) in the
same transaction that fires or resolves the alert, so a notification exists exactly when
the transition does. The maintenance thread delivers them: per URL strictly in order (a
resolve never overtakes its firing), the oldest undelivered row first; a row is claimed for
`timeout + 10 s` (`AlertStore.claim_next`), so of several servers only one sends it. A failed
POST (no connection, timeout, non-2xx) is retried with backoff doubling from
`alert_retry_base_s` to `alert_retry_max_s` and holds back that URL's later rows; after
`alert_give_up_after` it is dropped with an error in the log. A server that dies between a
successful POST and recording it sends that row again once the claim expires (at least
once, as Alertmanager; receivers dedupe by fingerprint and status).
"""

from __future__ import annotations

import logging
import time

import httpx

from hotpath.server.settings import Settings
from hotpath.server.storage.alerts import AlertStore, Notification

log = logging.getLogger("hotpath.alerts")

_US = 1_000_000


class WebhookSender:
    """Delivers the outbox (see module doc). `deliver` is called by the maintenance thread."""

    def __init__(self, store: AlertStore, settings: Settings) -> None:
        self.store = store
        self.timeout_s = settings.alert_webhook_timeout_s
        self.retry_base_us = int(settings.alert_retry_base_s * _US)
        self.retry_max_us = int(settings.alert_retry_max_s * _US)
        self.give_up_us = int(settings.alert_give_up_after.total_seconds() * _US)
        self.claim_us = int((self.timeout_s + 10) * _US)
        self.client = httpx.Client(timeout=self.timeout_s)

    def deliver(self, now_us: int | None = None, limit: int = 100) -> int:
        """Send what is due, per URL in order. Returns how many were delivered."""
        delivered = 0
        for url in self.store.pending_urls():
            while delivered < limit:
                now = now_us if now_us is not None else int(time.time() * _US)
                row = self.store.claim_next(url, now, self.claim_us)
                if row is None or not self._send(row, now):
                    break
                delivered += 1
        return delivered

    def _send(self, row: Notification, now_us: int) -> bool:
        error: str | None = None
        try:
            response = self.client.post(
                row.url,
                content=row.body.encode(),
                headers={"Content-Type": "application/json", "User-Agent": "hotpath"},
            )
            if not response.is_success:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row.attempts + 1
        if error is None:
            self.store.delivered(row.id, attempts, int(time.time() * _US))
        elif now_us - row.created_us >= self.give_up_us:
            log.error(
                "alert notification %d to %s dropped after %d attempts: %s",
                row.id,
                row.url,
                attempts,
                error,
            )
            self.store.given_up(row.id, attempts, error, now_us)
        else:
            delay = min(self.retry_max_us, self.retry_base_us * 2 ** min(attempts - 1, 30))
            log.warning(
                "alert notification %d to %s failed (attempt %d, next in %.0f s): %s",
                row.id,
                row.url,
                attempts,
                delay / _US,
                error,
            )
            self.store.failed(row.id, attempts, error, now_us + delay)
        return error is None
