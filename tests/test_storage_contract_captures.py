"""The memory-capture store's contract (`server/storage/captures.py`) on every backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hotpath.profiler.model import ALLOC_BYTES, HELD_BYTES
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.captures import Capture, piece_key
from hotpath.server.storage.errors import Conflict, UnknownService
from hotpath.server.storage.profiles import Piece, Selection
from hotpath.server.storage.sql.tables import memory_captures, windows
from tests.memory_captures import CACHE, LEAK, LEAK_RATE, capture

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
WIDE = (T0 - timedelta(days=1), T0 + timedelta(days=1))


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url)
    yield opened
    opened.close()


def _rows(storage: Storage) -> tuple[int, int]:
    engine = storage.profiles.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(memory_captures)).scalar_one(),
            conn.execute(select(func.count()).select_from(windows)).scalar_one(),
        )


def test_a_capture_is_stored_with_its_three_typed_profiles_and_read_back(
    storage: Storage,
) -> None:
    wire = capture(start=T0, seconds=20, labels={"host": "a"})
    result = storage.captures.put_capture(Capture.from_wire(wire, "default"))
    assert not result.duplicate and result.capture_id > 0
    assert _rows(storage) == (1, 3)
    [got] = storage.captures.captures("default", "mem-svc", *WIDE)
    assert got.id == result.capture_id and got.pid == 4242
    assert got.start == T0 and got.end == T0 + timedelta(seconds=20)
    assert (got.pause_attach_ms, got.pause_detach_ms) == (412.5, 120.25)
    assert got.tool == "memray 1.20.0" and got.labels == {"pid": "4242", "host": "a"}
    assert got.function_count == 3
    leak = next(f for f in got.functions if f.function == LEAK.name)
    assert leak.file == LEAK.file and leak.held_bytes == LEAK_RATE * 20
    assert leak.points[-1] == (20.0, LEAK_RATE * 20) and len(leak.points) == 40
    assert got.held_bytes == sum(f.held_bytes for f in wire.functions)
    # The profiles are the service's memory types, read like any other (never CPU).
    held = storage.profiles.profile(Selection("default", "mem-svc", HELD_BYTES, *WIDE))
    assert held.type == HELD_BYTES and held.total == 2_000_000 + 1_024 + LEAK_RATE * 20
    assert any(frame.name == CACHE.name for stack in held.samples for frame in stack)
    allocated = storage.profiles.sample_count(Selection("default", "mem-svc", ALLOC_BYTES, *WIDE))
    assert allocated == sum(wire.window("alloc_bytes").counts)
    assert [t.id for t in storage.profiles.profile_types("default", "mem-svc")] == [
        "alloc_bytes",
        "alloc_count",
        "held_bytes",
    ]
    # Without functions: the same rows, lighter.
    [light] = storage.captures.captures("default", "mem-svc", *WIDE, functions=False)
    assert light.functions == () and light.function_count == 3


def test_a_capture_put_twice_is_stored_once(storage: Storage) -> None:
    wire = capture(start=T0, key="capture-once-1234")
    first = storage.captures.put_capture(Capture.from_wire(wire, "default"))
    again = storage.captures.put_capture(Capture.from_wire(wire, "default"))
    assert again.duplicate and again.capture_id == first.capture_id
    assert _rows(storage) == (1, 3)
    # The key is per tenant and service: another tenant's capture under it is its own.
    other = storage.captures.put_capture(Capture.from_wire(wire, "beta"))
    assert not other.duplicate
    assert _rows(storage) == (2, 6)
    assert len(storage.captures.captures("beta", "mem-svc", *WIDE)) == 1
    with pytest.raises(UnknownService):
        storage.captures.captures("gamma", "mem-svc", *WIDE)


def test_a_failure_part_way_leaves_nothing(storage: Storage) -> None:
    """The third piece fails (its key is taken by a plain window): neither the row nor the
    first two pieces, nor the service, are kept."""
    wire = capture(start=T0, key="capture-fails-1234")
    held = Piece.from_window(wire.window("held_bytes"), "default")
    squatter = dataclasses.replace(
        held, idempotency_key=piece_key("capture-fails-1234", "held_bytes")
    )
    storage.profiles.put(squatter)
    assert _rows(storage) == (0, 1)
    with pytest.raises(Conflict, match="nothing was stored"):
        storage.captures.put_capture(Capture.from_wire(wire, "default"))
    assert _rows(storage) == (0, 1)
    # The database refuses the row itself (written after its pieces): the pieces go too.
    broken = dataclasses.replace(
        Capture.from_wire(capture(start=T0, key="capture-broken-1234"), "default"),
        tool=None,  # type: ignore[arg-type]  # NOT NULL
    )
    with pytest.raises(Exception, match=r"(?i)null"):
        storage.captures.put_capture(broken)
    assert _rows(storage) == (0, 1)
    # The caches learned nothing from the rolled-back writes: a good capture still stores.
    assert not storage.captures.put_capture(
        Capture.from_wire(capture(start=T0), "default")
    ).duplicate
    assert _rows(storage) == (1, 4)


def test_reads_cover_the_range_most_recent_first_bounded(storage: Storage) -> None:
    starts = [T0 + timedelta(minutes=i) for i in range(5)]
    for start in starts:
        storage.captures.put_capture(Capture.from_wire(capture(start=start), "default"))
    got = storage.captures.captures("default", "mem-svc", starts[1], starts[4])
    assert [c.start for c in got] == starts[1:4]  # [start, end), oldest first
    recent = storage.captures.captures("default", "mem-svc", *WIDE, limit=2)
    assert [c.start for c in recent] == starts[3:]  # the most recent two
    assert storage.captures.captures("default", "mem-svc", *WIDE, limit=10_000)[0].start == T0
    # A label filter keeps the captures carrying every pair (the limit counts those only).
    later = T0 + timedelta(minutes=10)
    for host in ("a", "b", "a"):
        wire = capture(start=later, labels={"host": host})
        storage.captures.put_capture(Capture.from_wire(wire, "default"))
    hosts = storage.captures.captures("default", "mem-svc", *WIDE, labels={"host": "a"})
    assert len(hosts) == 2 and all(c.labels["host"] == "a" for c in hosts)
    assert all(c.functions for c in hosts)
    [one] = storage.captures.captures("default", "mem-svc", *WIDE, labels={"host": "a"}, limit=1)
    assert one.id == hosts[-1].id
    assert storage.captures.captures("default", "mem-svc", *WIDE, labels={"host": "c"}) == []


def test_captures_expire_with_raw_data(storage: Storage) -> None:
    old = datetime.now(UTC) - timedelta(days=9)
    storage.captures.put_capture(Capture.from_wire(capture(start=old), "default"))
    storage.captures.put_capture(Capture.from_wire(capture(start=T0), "default"))
    storage.upkeep.enforce_retention()  # raw data is kept 7 days by default
    left = storage.captures.captures("default", "mem-svc", old - timedelta(days=1), WIDE[1])
    assert [c.start for c in left] == [T0]
