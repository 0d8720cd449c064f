"""Points in time as users write them: ISO-8601, unix seconds, `now`, or relative like `-15m`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_END_OF_9999 = 253402300800.0  # unix seconds of 10000-01-01


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A tz-aware UTC datetime; naive ISO times are taken as UTC. Raises ValueError with a hint,
    also for a time no datetime holds (`-99999999d`, unix 1e20, year 9999 west of UTC)."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value == "now":
        return now
    try:
        return _parse(value, now)
    except (OverflowError, OSError):
        raise ValueError(
            f"the time {text!r} is out of range: times run from year 1 to year 9999"
        ) from None
    except ValueError:
        raise ValueError(
            f"cannot read the time {text!r}: use ISO-8601 (2026-11-23T10:00:00Z), unix seconds, "
            "'now', or a relative time such as -30s, -15m, -2h, -7d"
        ) from None


def _parse(value: str, now: datetime) -> datetime:
    if match := _RELATIVE.match(value):
        return now - timedelta(seconds=float(match[1]) * _SECONDS_PER[match[2]])
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
        if seconds >= _END_OF_9999:  # fromtimestamp's own error is a ValueError here
            raise OverflowError(value)
        return datetime.fromtimestamp(seconds, UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_range(
    start: str | None, until: str | None, default_start: str = "-1h", now: datetime | None = None
) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    begin = parse_time(start or default_start, now)
    end = parse_time(until or "now", now)
    if end <= begin:
        raise ValueError(
            f"the range is empty: until ({end.isoformat()}) is not after from ({begin.isoformat()})"
        )
    return begin, end
