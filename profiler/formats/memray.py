"""A memray capture file (as `memray attach -o FILE` writes it) read with memray's own API.

Gives what a memory capture ships (`hotpath.profiler.formats.memory_capture`):
- three typed profiles: `alloc_bytes` and `alloc_count` (every allocation during the capture,
  realloc included as memray counts it) and `held_bytes` (allocated during it, still held at
  its end), stacks root first, frames memray's (function, file, line) as py-spy names them;
- per innermost Python frame, its held bytes over the capture, from memray's temporal records
  (allocation intervals between memory snapshots, every ~10 ms): each record's intervals add
  to the function's held bytes from the snapshot it was allocated before until the one it
  was freed before.

Memory stays bounded by the number of distinct stacks, not of allocations: events are summed
per stack as they stream, and held series are kept at `MAX_POINTS` sampling points from the
start. Allocations memray's own attach code makes in the target are left out.

Not in the upload registry: memray's reader needs a file on disk and parses it in C++; a
server should not run that on bytes from outside. The agent reads its own captures.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hotpath.profiler.formats.memory_capture import MAX_FUNCTIONS, MAX_POINTS, HeldSeries
from hotpath.profiler.model import ALLOC_BYTES, ALLOC_COUNT, HELD_BYTES, Frame, Profile, Stack

NO_PYTHON_FRAME = Frame("<no Python frame>", "<native>")  # allocations from C threads or start-up
_DEALLOCATORS = {"FREE", "MUNMAP", "PYMALLOC_FREE"}
# The files of memray's own code running in the target (its attach payload, its package).
_MEMRAY_FILES = ("_memray_attach_hook.py", "/memray/")


class MemrayFileError(ValueError):
    """Not a complete memray capture (cut short, wrong format); the message says why."""


@dataclass
class MemrayProfiles:
    start: datetime
    end: datetime
    pid: int
    total_allocations: int
    alloc_bytes: Profile
    alloc_count: Profile
    held_bytes: Profile
    functions: list[HeldSeries]  # the MAX_FUNCTIONS holding the most at the end, most first
    functions_dropped: int  # functions past MAX_FUNCTIONS (their bytes stay in the profiles)

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


def _stack(trace: list[tuple[str, str, int]]) -> Stack | None:
    """memray's trace (innermost first) as a root-first stack; None for memray's own code."""
    if any(marker in file for _name, file, _line in trace for marker in _MEMRAY_FILES):
        return None
    if not trace:
        return (NO_PYTHON_FRAME,)
    return tuple(Frame(name, file, line) for name, file, line in reversed(trace))


def _reader(path: Path, memray: Any) -> Any:
    try:
        reader = memray.FileReader(str(path))
    except (OSError, ValueError) as exc:
        raise MemrayFileError(f"{path} is not a readable memray capture: {exc}") from None
    meta = reader.metadata
    if meta.file_format != memray.FileFormat.ALL_ALLOCATIONS:
        raise MemrayFileError(f"{path} is an aggregated memray file: its history is not in it")
    if meta.end_time <= meta.start_time:
        raise MemrayFileError(f"{path} was not finished (no end time): the capture was cut short")
    return reader


def read(
    path: Path, *, max_functions: int = MAX_FUNCTIONS, max_points: int = MAX_POINTS
) -> MemrayProfiles:
    """The typed profiles and per-function held series of the capture at `path`."""
    try:
        import memray
    except ImportError:
        raise MemrayFileError("memray is not installed: `pip install 'hotpath[memory]'`") from None

    reader = _reader(path, memray)
    try:
        meta = reader.metadata
        alloc_bytes, alloc_count = _allocated(reader, memray.AllocatorType)
        held, series, dropped = _held(reader, meta, max_functions, max_points)
    finally:
        reader.close()
    span = (meta.start_time, meta.end_time)
    for profile, kind in (
        (alloc_bytes, ALLOC_BYTES),
        (alloc_count, ALLOC_COUNT),
        (held, HELD_BYTES),
    ):
        profile.type = kind
        profile.start, profile.end = span
    return MemrayProfiles(
        start=meta.start_time,
        end=meta.end_time,
        pid=meta.pid,
        total_allocations=meta.total_allocations,
        alloc_bytes=alloc_bytes,
        alloc_count=alloc_count,
        held_bytes=held,
        functions=series,
        functions_dropped=dropped,
    )


def _allocated(reader: Any, allocator_type: Any) -> tuple[Profile, Profile]:
    """Bytes and allocations per stack, summed as the events stream."""
    frees = {int(getattr(allocator_type, name)) for name in _DEALLOCATORS}
    totals: dict[tuple[int, int], list[int]] = {}  # (thread, stack id) -> [bytes, count]
    first: dict[tuple[int, int], Any] = {}  # one record per stack, to resolve it once
    for record in reader.get_allocation_records():
        if int(record.allocator) in frees:
            continue
        key = (record.tid, record.stack_id)
        entry = totals.get(key)
        if entry is None:
            totals[key] = [record.size, record.n_allocations]
            first[key] = record
        else:
            entry[0] += record.size
            entry[1] += record.n_allocations
    alloc_bytes, alloc_count = Profile(), Profile()
    for key, (size, count) in totals.items():
        stack = _stack(first[key].stack_trace())
        if stack is not None:
            alloc_bytes.add(stack, size)
            alloc_count.add(stack, count)
    return alloc_bytes, alloc_count


def _sampling_points(
    snapshot_ms: list[int], start_ms: float, end_ms: float, max_points: int
) -> tuple[list[int], list[float]]:
    """Snapshot indices to sample the held series at (index len(snapshot_ms) is the end of
    the capture) and their times in seconds since the start, strictly increasing."""
    n = len(snapshot_ms) + 1
    wanted = (
        range(n)
        if n <= max_points
        else (round(i * (n - 1) / (max_points - 1)) for i in range(max_points))
    )
    indices: list[int] = []
    times: list[float] = []
    for index in wanted:
        ms = end_ms if index == n - 1 else snapshot_ms[index]
        t = max(0.0, (ms - start_ms) / 1000)
        if times and t <= times[-1]:
            if index == n - 1:  # the end is always a point: it replaces the last one
                indices[-1], times[-1] = index, max(t, times[-1])
            continue
        indices.append(index)
        times.append(t)
    return indices, times


# Before Python 3.12 a comprehension runs as a code object of its own: the bytes it makes
# belong to the function it is written in, which is the name a person looks for.
_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


def _owner(stack: Stack) -> Frame:
    """The function a held allocation is charged to: the innermost frame that is not a
    comprehension (the comprehension's when it is the whole stack)."""
    for frame in reversed(stack):
        if frame.name not in _COMPREHENSIONS:
            return frame
    return stack[-1]


def _held(
    reader: Any, meta: Any, max_functions: int, max_points: int
) -> tuple[Profile, list[HeldSeries], int]:
    """The held-bytes profile at the end and each function's held bytes at the sampling
    points, from the temporal records."""
    snapshot_ms = [s.time for s in reader.get_memory_snapshots()]
    start_ms = meta.start_time.timestamp() * 1000
    end_ms = meta.end_time.timestamp() * 1000
    indices, times = _sampling_points(snapshot_ms, start_ms, end_ms, max_points)
    points = len(indices)
    held = Profile()
    # Per function: held-bytes changes at the sampling points (a difference array), and the
    # allocations still held at the end.
    changes: dict[tuple[str, str], array[int]] = {}
    held_allocations: Counter[tuple[str, str]] = Counter()
    for record in reader.get_temporal_allocation_records(merge_threads=True):
        stack = _stack(record.stack_trace())
        if stack is None:
            continue
        leaf = _owner(stack)
        key = (leaf.name, leaf.file)
        diff = changes.get(key)
        if diff is None:
            diff = changes[key] = array("q", bytes(8 * (points + 1)))
        for interval in record.intervals:
            # Held at snapshot k when allocated before it and not freed before it: from the
            # first sampling point at or after `allocated_before_snapshot` ...
            first = bisect.bisect_left(indices, interval.allocated_before_snapshot)
            freed = interval.deallocated_before_snapshot
            last = points if freed is None else bisect.bisect_left(indices, freed)
            if first < last:
                diff[first] += interval.n_bytes
                diff[last] -= interval.n_bytes
            if freed is None:
                held.add(stack, interval.n_bytes)
                held_allocations[key] += interval.n_allocations
    found: list[tuple[tuple[str, str], list[int]]] = []
    for key, diff in changes.items():
        values, level = [], 0
        for i in range(points):
            level += diff[i]
            values.append(level)
        if any(values):
            found.append((key, values))
    found.sort(key=lambda item: (-item[1][-1], -max(item[1]), item[0]))
    series = [
        HeldSeries(
            function=name,
            file=file,
            held_bytes=values[-1],
            allocations_held=held_allocations[(name, file)],
            points=list(zip(times, values, strict=True)),
        )
        for (name, file), values in found[:max_functions]
    ]
    return held, series, max(0, len(found) - max_functions)
