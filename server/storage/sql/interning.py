"""Interning frames and stacks: content digest -> id, the same stack stored once for all windows.

Ids are cached in bounded maps keyed by content, so that a steady service (the same few
thousand stacks every window) costs no digest and no database round trip per stack. Cache
entries learned inside a transaction are published only after it commits: an id from a
rolled-back insert must never be reused.
Rows are inserted with ON CONFLICT DO NOTHING in digest order, so concurrent servers on one
PostgreSQL neither fail nor deadlock on the same new stack.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hotpath.profiler.model import Frame, Stack
from hotpath.server.storage.sql.tables import frames as frames_table
from hotpath.server.storage.sql.tables import stacks as stacks_table

K = TypeVar("K")
V = TypeVar("V")

_CHUNK = 2_000  # keeps IN (...) lists under every backend's parameter limit


class LRU(Generic[K, V]):
    """A bounded map that keeps what was used recently: two generations of dicts.

    Lookups take no lock and do not reorder anything (a dict read is atomic under the GIL):
    a hit in the old generation is copied to the young one, and when the young one is full it
    becomes the old one. Memory is bounded by `max_size` entries in all.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self._put(key, value)
        return value

    def put_many(self, items: Iterable[tuple[K, V]]) -> None:
        for key, value in items:
            self._put(key, value)

    def _put(self, key: K, value: V) -> None:
        young = self._young
        young[key] = value
        if len(young) >= self.max_size // 2:
            self._old, self._young = young, {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)


@dataclass
class Learned:
    """Ids learned in an open transaction, to publish once it commits."""

    frames: dict[tuple[str, str, int], int] = field(default_factory=dict)
    stacks: dict[tuple[int, ...], int] = field(default_factory=dict)


def frame_digest(name: str, file: str, line: int) -> bytes:
    return hashlib.blake2b(f"{name}\0{file}\0{line}".encode(), digest_size=16).digest()


class Interner:
    def __init__(self, max_frames: int = 1_000_000, max_stacks: int = 1_000_000) -> None:
        # Keyed by content, so a cached frame or stack costs no digest at all.
        self.frame_ids: LRU[tuple[str, str, int], int] = LRU(max_frames)
        self.stack_ids: LRU[tuple[int, ...], int] = LRU(max_stacks)
        self.stacks_by_id: LRU[int, Stack] = LRU(max_stacks)

    def intern(
        self,
        conn: Connection,
        frames: Sequence[tuple[str, str, int]],
        stacks: Sequence[Sequence[int]],
        learned: Learned,
    ) -> list[int]:
        """Stack ids for `stacks` (lists of indexes into `frames`), inserting what is new."""
        frame_ids = self._ids(
            conn,
            frames_table,
            [tuple(f) for f in frames],
            self.frame_ids,
            learned.frames,
            lambda f: frame_digest(*f),
            lambda f, d: {"digest": d, "name": f[0], "file": f[1], "line": f[2]},
        )
        stack_keys = [tuple(frame_ids[i] for i in stack) for stack in stacks]
        return self._ids(
            conn,
            stacks_table,
            stack_keys,
            self.stack_ids,
            learned.stacks,
            lambda k: hashlib.blake2b(_stack_blob(k), digest_size=16).digest(),
            lambda k, d: {"digest": d, "frame_ids": _stack_blob(k)},
        )

    def publish(self, learned: Learned) -> None:
        self.frame_ids.put_many(learned.frames.items())
        self.stack_ids.put_many(learned.stacks.items())

    def resolve(self, conn: Connection, stack_ids: Iterable[int]) -> dict[int, Stack]:
        """The frames of each stack id (cached; misses read in chunks)."""
        found: dict[int, Stack] = {}
        missing: list[int] = []
        for stack_id in stack_ids:
            stack = self.stacks_by_id.get(stack_id)
            if stack is None:
                missing.append(stack_id)
            else:
                found[stack_id] = stack
        if not missing:
            return found
        frame_lists: dict[int, list[int]] = {}
        for chunk in _chunks(missing):
            rows = conn.execute(
                select(stacks_table.c.id, stacks_table.c.frame_ids).where(
                    stacks_table.c.id.in_(chunk)
                )
            )
            frame_lists.update((row.id, _stack_frame_ids(row.frame_ids)) for row in rows)
        needed = sorted({f for ids in frame_lists.values() for f in ids})
        frames_by_id: dict[int, Frame] = {}
        for chunk in _chunks(needed):
            rows = conn.execute(
                select(
                    frames_table.c.id, frames_table.c.name, frames_table.c.file, frames_table.c.line
                ).where(frames_table.c.id.in_(chunk))
            )
            frames_by_id.update((r.id, Frame(r.name, r.file, r.line)) for r in rows)
        new = {sid: tuple(frames_by_id[f] for f in ids) for sid, ids in frame_lists.items()}
        self.stacks_by_id.put_many(new.items())
        found.update(new)
        return found

    @staticmethod
    def _ids(
        conn: Connection,
        table: Table,
        keys: list,
        cache: LRU,
        learned: dict,  # type: ignore[type-arg]
        digest_of,
        row,
    ) -> list[int]:  # type: ignore[no-untyped-def]
        """The id of each key (cache, then this transaction, then the database)."""
        ids: dict = {}  # type: ignore[type-arg]
        missing: dict[bytes, object] = {}  # digest -> key, computed for misses only
        for key in keys:
            if key in ids:
                continue
            known = cache.get(key) or learned.get(key)
            if known is not None:
                ids[key] = known
            else:
                missing[digest_of(key)] = key
        if missing:
            ordered = sorted(missing)  # one lock order for every server: no deadlocks
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(
                insert(table).on_conflict_do_nothing(index_elements=["digest"]),
                [row(missing[d], d) for d in ordered],
            )
            for chunk in _chunks(ordered):
                rows = conn.execute(
                    select(table.c.digest, table.c.id).where(table.c.digest.in_(chunk))
                )
                for digest, row_id in rows:
                    key = missing[bytes(digest)]
                    ids[key] = learned[key] = row_id
        return [ids[k] for k in keys]


def _stack_blob(frame_ids: Sequence[int]) -> bytes:
    """Frame ids, root first: one byte of width (4 or 8), then little-endian unsigned ints."""
    width = 4 if max(frame_ids, default=0) < 2**32 else 8
    return bytes([width]) + np.asarray(frame_ids, dtype=f"<u{width}").tobytes()


def _stack_frame_ids(blob: bytes) -> list[int]:
    return np.frombuffer(blob, f"<u{blob[0]}", offset=1).tolist()


def _chunks(items: Sequence[int] | Sequence[bytes]) -> Iterable[list]:  # type: ignore[type-arg]
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])
