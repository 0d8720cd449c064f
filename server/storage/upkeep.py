"""The upkeep contract: the background work a backend needs, and the figures that show it.

The maintenance thread (`server/maintenance.py`) calls `roll_up` until it reports nothing
left and `enforce_retention` every minute; `/healthz` calls `ping`; `/metrics` shows
`figures` at scrape time. Several servers on one database may call all of these at once:
a backend shares the work safely (each step is its own short transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class UpkeepFigures:
    """Progress figures, the same on every server of one database."""

    oldest_unrolled_end_us: int | None  # the end of the oldest window not rolled up; None: none
    alerts_evaluated_until_us: int | None  # None before alert evaluation first ran


class Upkeep(Protocol):
    def roll_up(self) -> int:
        """One roll-up step; how much it rolled up (0: nothing was waiting)."""
        ...

    def enforce_retention(self, now: datetime | None = None) -> int:
        """Delete what has expired; how many rows were deleted."""
        ...

    def ping(self) -> None:
        """Return when the database answers; `StorageUnavailable` when it does not."""
        ...

    def figures(self) -> UpkeepFigures: ...


__all__ = ["Upkeep", "UpkeepFigures"]
