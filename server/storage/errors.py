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


class UnknownRun(LookupError):
    """No benchmark run with this id in this tenant."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id


__all__ = ["Conflict", "StorageError", "StorageUnavailable", "UnknownRun", "UnknownService"]
