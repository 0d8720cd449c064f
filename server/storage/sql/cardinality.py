"""Cardinality limits per service (`Limits`): how many series and hot-path names may be active.

Cost on the ingest path: nothing for a series or a name this server already knows (series ids
are cached by the writer, name stamps here); the counts run only when something is new, and
read one service's rows through the primary key or unique index that starts with service_id.

Concurrency: a writer that adds a series or a name to a service first locks the service's row,
then looks again, counts and inserts, all in its transaction; so the limit holds exactly
however many servers write to one database. On PostgreSQL the lock is FOR NO KEY UPDATE, which
the foreign-key checks of other writers' inserts (FOR KEY SHARE) do not wait for: only writers
adding to the same service queue. SQLite writers are one at a time already (BEGIN IMMEDIATE).
The writer takes the lock before it inserts frames or stacks, so interning cannot deadlock
with it.

Refusals are remembered per server for a twelfth of the active window (5 minutes of 1 hour):
a sender that keeps sending a refused series or name (every window) is refused from memory,
without the lock, so it does not queue the service's other writers. Room that frees up in the
meantime is seen that much later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, desc, func, insert, select, update

from hotpath.server.storage.errors import SeriesLimitExceeded
from hotpath.server.storage.profiles import Limits, SeriesKey
from hotpath.server.storage.sql.interning import LRU
from hotpath.server.storage.sql.tables import hot_path_names, series, series_labels, services

# A name's arrival stamp is refreshed, and a refusal remembered, for this fraction of the
# active window per server (5 minutes of 1 hour): a steady service costs one UPDATE per few
# minutes.
_REFRESH_FRACTION = 12
_REFUSALS_KEPT = 100_000
_NAMES_SHOWN = 5  # new names quoted in a warning; the rest are counted


def lock_service(conn: Connection, service_id: int) -> None:
    """Serialise the writers that add series or hot-path names to this service."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(services.c.id)
            .where(services.c.id == service_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
        )


def check_series_room(
    conn: Connection, service_id: int, key: SeriesKey, limits: Limits, now_us: int
) -> None:
    """Raise `SeriesLimitExceeded` if the service has no room for one more active series.
    Called with the service locked and the new series known not to exist."""
    since_us = now_us - _us(limits.active_window.total_seconds())
    active = conn.execute(
        select(func.count())
        .select_from(series)
        .where(series.c.service_id == service_id, series.c.arrived_us >= since_us)
    ).scalar_one()
    if active < limits.series_per_service:
        return
    label, values = _busiest_label(conn, service_id, key.labels, since_us)
    raise SeriesLimitExceeded(key.service, active, limits.series_per_service, label, values)


class SeriesRefusals:
    """Series refused lately, by (service id, digest): refused again from memory."""

    def __init__(self, limits: Limits) -> None:
        self._keep_us = _us(limits.active_window.total_seconds()) // _REFRESH_FRACTION
        self._refused: LRU[tuple[int, bytes], tuple[int, SeriesLimitExceeded]] = LRU(_REFUSALS_KEPT)

    def check(self, service_id: int, digest: bytes, now_us: int) -> None:
        refusal = self._refused.get((service_id, digest))
        if refusal is not None and refusal[0] > now_us:
            e = refusal[1]
            raise SeriesLimitExceeded(e.service, e.series, e.limit, e.label, e.label_values)

    def note(self, service_id: int, digest: bytes, error: SeriesLimitExceeded, now_us: int) -> None:
        self._refused.put_many([((service_id, digest), (now_us + self._keep_us, error))])


def _busiest_label(
    conn: Connection, service_id: int, keys: Iterable[str], since_us: int
) -> tuple[str | None, int]:
    """Of `keys`, the label with the most values among the service's active series."""
    keys = list(keys)
    if not keys:
        return None, 0
    values = func.count(func.distinct(series_labels.c.value)).label("values")
    row = conn.execute(
        select(series_labels.c.key, values)
        .join(series, series.c.id == series_labels.c.series_id)
        .where(
            series.c.service_id == service_id,
            series.c.arrived_us >= since_us,
            series_labels.c.key.in_(keys),
        )
        .group_by(series_labels.c.key)
        .order_by(desc("values"), series_labels.c.key)
        .limit(1)
    ).first()
    if row is None or row.values < 2:
        return None, 0
    return row.key, row.values


class HotPathNames:
    """Admits a piece's hot-path names against `Limits.hot_paths_per_service`, and keeps
    each name's arrival stamp fresh enough for the active count."""

    def __init__(self, limits: Limits, max_cached: int = 1_000_000) -> None:
        self.limits = limits
        self._window_us = _us(limits.active_window.total_seconds())
        self._refresh_us = self._window_us // _REFRESH_FRACTION
        # (service id, name) -> the arrival stamp stored for it, as far as this server knows.
        self._stamps: LRU[tuple[int, str], int] = LRU(max_cached)
        # (service id, name) -> until when it is refused from memory, and the active count then.
        self._refused: LRU[tuple[int, str], tuple[int, int]] = LRU(_REFUSALS_KEPT)

    def admit(
        self,
        conn: Connection,
        service_id: int,
        names: Sequence[str],
        now_us: int,
        learned: dict[tuple[int, str], int],
    ) -> tuple[list[str], int]:
        """The new names refused (in the piece's order) and the service's active names after
        this piece. Stamps to cache once the transaction commits go into `learned`."""
        due = now_us - self._refresh_us
        stale: list[str] = []
        refused: list[str] = []
        active = 0
        for name in dict.fromkeys(names):
            if (self._stamps.get((service_id, name)) or -1) >= due:
                continue
            refusal = self._refused.get((service_id, name))
            if refusal is not None and refusal[0] > now_us:
                refused.append(name)
                active = max(active, refusal[1])
            else:
                stale.append(name)
        if not stale:
            return refused, active
        known = _stored(conn, service_id, stale)
        new = [name for name in stale if name not in known]
        if new:
            lock_service(conn, service_id)
            known.update(_stored(conn, service_id, new))  # added while this one waited
            new = [name for name in new if name not in known]
        if new:
            active = conn.execute(
                select(func.count())
                .select_from(hot_path_names)
                .where(
                    hot_path_names.c.service_id == service_id,
                    hot_path_names.c.arrived_us >= now_us - self._window_us,
                )
            ).scalar_one()
            room = max(0, self.limits.hot_paths_per_service - active)
            admitted, refused_now = new[:room], new[room:]
            if admitted:
                conn.execute(
                    insert(hot_path_names),
                    [{"service_id": service_id, "name": n, "arrived_us": now_us} for n in admitted],
                )
                active += len(admitted)
            learned.update(((service_id, name), now_us) for name in admitted)
            until = now_us + self._refresh_us
            self._refused.put_many(((service_id, n), (until, active)) for n in refused_now)
            refused += refused_now
        outdated = [name for name, stamp in known.items() if stamp < due]
        if outdated:
            conn.execute(
                update(hot_path_names)
                .where(
                    hot_path_names.c.service_id == service_id,
                    hot_path_names.c.name.in_(outdated),
                    hot_path_names.c.arrived_us < now_us,
                )
                .values(arrived_us=now_us)
            )
        learned.update(
            ((service_id, name), now_us if stamp < due else stamp) for name, stamp in known.items()
        )
        order = {name: i for i, name in enumerate(names)}
        return sorted(refused, key=order.__getitem__), active

    def publish(self, learned: dict[tuple[int, str], int]) -> None:
        self._stamps.put_many(learned.items())


def _stored(conn: Connection, service_id: int, names: Sequence[str]) -> dict[str, int]:
    """The names of `names` the service has, with their stored arrival stamps."""
    rows = conn.execute(
        select(hot_path_names.c.name, hot_path_names.c.arrived_us).where(
            hot_path_names.c.service_id == service_id, hot_path_names.c.name.in_(names)
        )
    )
    return {row.name: row.arrived_us for row in rows}


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)
