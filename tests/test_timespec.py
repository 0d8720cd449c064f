from datetime import UTC, datetime, timedelta

import pytest

from hotpath.profiler.labels import parse_labels
from hotpath.profiler.timespec import parse_range, parse_time

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("-15m", NOW - timedelta(minutes=15)),
        ("-2h", NOW - timedelta(hours=2)),
        ("-1.5d", NOW - timedelta(hours=36)),
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T10:00:00+01:00", datetime(2026, 11, 23, 9, tzinfo=UTC)),
        ("2026-11-23 10:00", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("1795428000", datetime.fromtimestamp(1795428000, UTC)),
    ],
)
def test_times_users_write(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_bad_times_and_ranges_explain_themselves() -> None:
    with pytest.raises(ValueError, match="relative time"):
        parse_time("last tuesday", NOW)
    with pytest.raises(ValueError, match="empty"):
        parse_range("-1m", "-5m", now=NOW)
    assert parse_range(None, None, now=NOW) == (NOW - timedelta(hours=1), NOW)


def test_labels() -> None:
    assert parse_labels(["version=1.4.2", "a=b=c"]) == {"version": "1.4.2", "a": "b=c"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_labels(["version"])
