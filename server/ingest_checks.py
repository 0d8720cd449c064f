"""Checks every way in shares (an agent window, Pyroscope's `/ingest`, an upload, a benchmark
run): times inside a window around now, and for a piece made from a profile file, what the
agent window's model and `wire.check_limits` check of an agent window, applied to the
interned form the profile store takes, so every way in keeps the same names, times and
sizes (ValueError or `wire.LimitExceeded`, which the routes answer with 422 and 413)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hotpath.profiler.formats import window as wire
from hotpath.server.storage.profiles import Piece

# A benchmark run is history, kept whatever its age; the epoch is before any of them ran.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeBounds:
    """The times the server accepts: from `earliest` (now - raw retention: older data would
    only be deleted) to `latest` (now + max_future_s: a clock a little ahead). Anything else
    (year 9999, NaN) would stay stored, unexpired, for good."""

    earliest: datetime
    latest: datetime
    why_earliest: str  # the setting each end comes from, named in the refusal
    why_latest: str

    @classmethod
    def around_now(
        cls, retention_raw: timedelta, max_future_s: float, now: datetime | None = None
    ) -> TimeBounds:
        now = now or datetime.now(UTC)
        return cls(
            now - retention_raw,
            now + timedelta(seconds=max_future_s),
            f"now - retention_raw ({retention_raw})",
            f"now + max_future_s ({max_future_s:g} s)",
        )

    def check(self, what: str, start: datetime, end: datetime) -> None:
        """ValueError naming the allowed range when [start, end] is not inside it."""
        if start < self.earliest or end > self.latest:
            raise ValueError(
                f"{what} ({start.isoformat()} to {end.isoformat()}) is outside the accepted "
                f"range: from {self.earliest.isoformat()} ({self.why_earliest}) "
                f"to {self.latest.isoformat()} ({self.why_latest})"
            )


def unix_time(name: str, seconds: float) -> datetime:
    """Unix seconds as a UTC datetime; ValueError naming `name` for NaN, infinities and times
    no datetime holds."""
    if not math.isfinite(seconds):
        raise ValueError(f"{name}={seconds} is not a time: give unix seconds")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{name}={seconds:g} is out of range: give unix seconds") from None


def check_piece(piece: Piece, limits: wire.WindowLimits) -> Piece:
    """Names, integers and rate as the wire window's model checks them (ValueError), then its
    sizes (`wire.check_sizes`, LimitExceeded). Returns the piece with its frame names cleaned
    as the model cleans a window's (`wire.clean_name`)."""
    key = piece.key
    if not re.match(wire.SERVICE_NAME_PATTERN, key.service):
        raise ValueError(f"service name {key.service!r} is not {wire.SERVICE_NAME_PATTERN}")
    for label_key, value in key.labels.items():
        if not re.match(wire.LABEL_KEY_PATTERN, label_key):
            raise ValueError(f"label key {label_key!r} is not {wire.LABEL_KEY_PATTERN}")
        try:
            wire.printable(value)
        except ValueError as exc:
            raise ValueError(f"label {label_key}: {exc}") from None
    if piece.end < piece.start:
        raise ValueError("until is before from")
    rate = piece.sample_rate_hz
    if not (math.isfinite(rate) and 0 < rate <= 100_000):
        raise ValueError(f"sample rate {rate:g} Hz is not in (0, 100000]")

    wire.check_sizes(
        limits,
        frames=piece.frames,
        stacks=piece.stacks,
        counts=piece.counts,
        labels=key.labels,
        hot_paths=len(piece.hot_paths),
    )
    for i, (_name, _file, line) in enumerate(piece.frames):
        if not 0 <= line <= wire.MAX_LINE:
            raise ValueError(f"frame {i}: line {line} is not in 0..{wire.MAX_LINE}")
    frames = [(wire.clean_name(n), wire.clean_name(f), line) for n, f, line in piece.frames]
    return dataclasses.replace(piece, frames=frames)
