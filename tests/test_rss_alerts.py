"""RSS growth alerts through the alert path: a growing pid fires one `rss_growth` alert with
the trend's sentence, into the same outbox as hot-path alerts, and resolves when its readings
stop growing; a steady pid never fires; the hot-path evaluator leaves them alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hotpath.profiler.model import CPU
from hotpath.server.alerts import AlertEvaluator
from hotpath.server.memory_trends import TrendRule, process_trends
from hotpath.server.rss_alerts import RssAlertEvaluator
from hotpath.server.settings import Settings
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.memory import MemorySample
from hotpath.server.storage.profiles import Piece, SeriesKey

MB = 1024 * 1024
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url)
    yield opened
    opened.close()


def put_reading(storage: Storage, end: datetime, pid: int, rss: int) -> None:
    storage.profiles.put(
        Piece(
            key=SeriesKey("default", "svc", CPU, {"pid": str(pid)}),
            start=end - timedelta(seconds=10),
            end=end,
            sample_rate_hz=100,
            frames=[],
            stacks=[],
            counts=[],
            idempotency_key=uuid.uuid4().hex,
            memory=MemorySample(pid, rss),
        )
    )


def test_a_growing_pid_fires_once_with_its_sentence_and_resolves_when_it_stops(
    storage: Storage,
) -> None:
    settings = Settings(alert_webhook_url="http://127.0.0.1:9/hook", memory_trend_warmup_s=0)
    storage.alerts.start_evaluation(0)
    wobble = [((i * 7919) % 13 - 6) * MB / 3 for i in range(60)]
    for i in range(60):  # ten minutes: pid 1 grows 3 MB/min, pid 2 wobbles
        at = T0 + timedelta(seconds=10 * i)
        put_reading(storage, at, 1, int(200 * MB + 500_000 * i + wobble[i]))
        put_reading(storage, at, 2, int(200 * MB + wobble[i]))
    rss = RssAlertEvaluator(storage.alerts, storage.memory, settings)
    now = T0 + timedelta(minutes=10)
    assert rss.evaluate(now) == (1, 0)
    assert rss.evaluate(now + timedelta(seconds=5)) == (0, 0)  # still growing: no second alert
    (alert,) = storage.alerts.firing()
    assert alert.kind == "rss_growth" and alert.hot_path == "pid 1" and alert.service == "svc"
    assert alert.summary is not None
    assert alert.summary.startswith("RSS of pid 1 growing 3.0 MB/min for 10 min"), alert.summary
    assert 2.7e6 < alert.value_ns < 3.3e6  # bytes per minute, for this kind
    # The hot-path evaluator judges its own hot paths and leaves this alert firing.
    AlertEvaluator(storage.alerts, settings).evaluate(int((now.timestamp() + 600) * 1e6))
    assert [a.id for a in storage.alerts.firing()] == [alert.id]
    note = storage.alerts.claim_next("http://127.0.0.1:9/hook", 2**62, 1)
    assert note is not None and note.status == "firing"
    body = json.loads(note.body)
    (entry,) = body["alerts"]
    assert entry["labels"] == {
        "alertname": "ProcessRssGrowing",
        "service": "svc",
        "pid": "pid 1",
        "severity": "warning",
    }
    assert entry["annotations"]["summary"].startswith("RSS of pid 1 growing 3.0 MB/min")
    assert body["groupLabels"] == {
        "alertname": "ProcessRssGrowing",
        "service": "svc",
        "pid": "pid 1",
    }
    # It stops growing: flat for the next 30 minutes, and the horizon (30 min) sees that.
    for i in range(180):
        put_reading(
            storage, now + timedelta(seconds=10 * (i + 1)), 1, int(230 * MB + wobble[i % 60])
        )
    later = now + timedelta(minutes=30, seconds=10)
    assert rss.evaluate(later) == (0, 1)
    assert storage.alerts.firing() == []
    (resolved,) = storage.alerts.alerts("default", state="resolved")
    assert resolved.id == alert.id and resolved.ends_us == int(later.timestamp() * 1e6)


def test_a_pid_that_stops_sending_readings_resolves(storage: Storage) -> None:
    storage.alerts.start_evaluation(0)
    for i in range(60):
        put_reading(storage, T0 + timedelta(seconds=10 * i), 7, 100 * MB + i * MB)
    rss = RssAlertEvaluator(storage.alerts, storage.memory, Settings(memory_trend_warmup_s=0))
    assert rss.evaluate(T0 + timedelta(minutes=10)) == (1, 0)
    assert rss.evaluate(T0 + timedelta(hours=2)) == (0, 1)  # nothing within the horizon


def test_growth_while_a_process_warms_up_is_not_a_leak(storage: Storage) -> None:
    # pid 3 fills its caches for 4 minutes after it starts (5 MB/min), then holds steady;
    # pid 4 grows 3 MB/min for 10 minutes. Judged at 10 minutes with the default warm-up
    # (5 min): only pid 4 grows. Without the warm-up, pid 3's start alone looks like a leak.
    wobble = [((i * 7919) % 13 - 6) * MB / 3 for i in range(60)]
    for i in range(60):
        at = T0 + timedelta(seconds=10 * i)
        put_reading(storage, at, 3, int(100 * MB + min(i, 24) * 5 * MB / 6 + wobble[i]))
        put_reading(storage, at, 4, int(100 * MB + i * 3 * MB / 6 + wobble[i]))
    now = T0 + timedelta(minutes=10)
    default = TrendRule.from_settings(Settings())
    assert default.warmup_s == 300
    judged = process_trends(storage.memory, "default", "svc", now, default)
    assert not judged[3].growing and judged[4].growing
    assert judged[4].trend.span_s < 300  # the warm-up's readings were left out
    no_warmup = TrendRule.from_settings(Settings(memory_trend_warmup_s=0))
    assert process_trends(storage.memory, "default", "svc", now, no_warmup)[3].growing
