"""What an alert notification says: Alertmanager's webhook body, labels and fingerprint.

Body: what Alertmanager POSTs to a webhook receiver (version "4"), one group per alert,
grouped by (alertname, service, hot_path), so any receiver written for Alertmanager (or
Alertmanager's own webhook tooling) reads ours. A firing alert has the zero time as
`endsAt`, as Alertmanager sends it. The evaluator (server/alerts.py) writes bodies into the
outbox; the sender (server/alert_delivery.py) posts them as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

ALERT_NAME = "HotPathOverBudget"
RSS_ALERT_NAME = "ProcessRssGrowing"  # server/rss_alerts.py
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: "no end yet" in Alertmanager's body
GROUP_BY = ("alertname", "service", "hot_path", "pid")
_US = 1_000_000


def alert_labels(service: str, hot_path: str, severity: str) -> dict[str, str]:
    return {"alertname": ALERT_NAME, "service": service, "hot_path": hot_path, "severity": severity}


def rss_alert_labels(service: str, pid: str, severity: str) -> dict[str, str]:
    """`pid` as the alert names it ("pid 4242")."""
    return {"alertname": RSS_ALERT_NAME, "service": service, "pid": pid, "severity": severity}


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits of the sorted labels, like Alertmanager's: one per hot path and rule."""
    text = "\0".join(f"{k}\0{v}" for k, v in sorted(labels.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def rfc3339(micros: int) -> str:
    moment = datetime.fromtimestamp(micros / _US, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


def _quantile_name(q: float) -> str:
    return f"p{q * 100:g}"


def alert_object(alert: Mapping[str, Any], external_url: str) -> dict[str, Any]:
    """One entry of the body's `alerts`, from a stored alert (its fields as a mapping)."""
    if alert.get("kind") == "rss_growth":
        return _rss_alert_object(alert, external_url)
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


def _rss_alert_object(alert: Mapping[str, Any], external_url: str) -> dict[str, Any]:
    """An RSS growth alert: the sentence is its summary; the stored numbers are bytes/min."""
    rule = (
        f"RSS trend over {alert['interval_s'] / 60:g} min (Theil-Sen, Mann-Kendall): its lower "
        f"bound above {alert['budget_ns'] / 1e6:.2f} MB/min"
    )
    if alert["state"] == "resolved":
        description = f"{rule}; no longer growing (peak {alert['peak_ns'] / 1e6:.1f} MB/min)"
    else:
        description = f"{rule} (peak so far {alert['peak_ns'] / 1e6:.1f} MB/min)"
    return {
        "status": alert["state"],
        "labels": rss_alert_labels(alert["service"], alert["hot_path"], alert["severity"]),
        "annotations": {
            "summary": f"{alert['summary']} in {alert['service']}",
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
