"""The errors storage raises that callers outside the storage package answer for.

Backends translate their own failures into these (the SQL backend turns SQLAlchemy's
connection-level errors into `StorageUnavailable` in one engine hook, see
`sql/database.py`), so the HTTP layer, the maintenance loop and the metrics never see a
driver's exception types. `server/error_handlers.py` maps each to one HTTP answer.
"""

from __future__ import annotations

from hotpath.server.storage.profiles import UnknownService  # defined with the profile contract


class StorageError(Exception):
    """Base of the errors storage raises on purpose."""


class StorageUnavailable(StorageError):
    """The database cannot be reached (or stayed locked): retry later. Nothing was
    half-written, since every write is one transaction."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Conflict(StorageError):
    """A concurrent write to the same thing won; the caller may retry."""


class SeriesLimitExceeded(StorageError):
    """A piece would make a new series beyond `Limits.series_per_service`; nothing was
    stored. `label` is the piece's label with the most values among the service's active
    series (None when no label has more than one): the likely cause."""

    def __init__(
        self, service: str, series: int, limit: int, label: str | None, label_values: int
    ) -> None:
        self.service, self.series, self.limit = service, series, limit
        self.label, self.label_values = label, label_values
        cause = (
            f"label {label!r} has {label_values} values: drop it or raise the limit"
            if label is not None
            else "raise the limit"
        )
        super().__init__(
            f"service {service!r} has {series} active series "
            f"(max_series_per_service is {limit}); {cause}"
        )


class UnknownRun(LookupError):
    """No benchmark run with this id in this tenant."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id


__all__ = [
    "Conflict",
    "SeriesLimitExceeded",
    "StorageError",
    "StorageUnavailable",
    "UnknownRun",
    "UnknownService",
]


class HotPathLimitExceeded(StorageError):
    """A window would add hot-path names beyond `Limits.hot_paths_per_service`; nothing was
    stored. `refused` are the names it brought that did not fit (the agent sends the window
    again without them, so its samples are kept)."""

    def __init__(self, service: str, refused: list[str], active: int, limit: int) -> None:
        self.service, self.refused, self.active, self.limit = service, refused, active, limit
        shown = ", ".join(repr(name) for name in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        super().__init__(
            f"service {service!r} has {active} active hot-path names "
            f"(max_hot_paths_per_service is {limit}); the window brings {len(refused)} new "
            f"ones that do not fit: {shown}{more}. Nothing was stored: send it without them, "
            "or raise the limit"
        )
