"""The agent's side of hot-path timing: find another process's histogram file and read it.

The file is found through `/proc/<pid>/maps`, which lists every mapped file by path, and
opened through `/proc/<pid>/root`, so an agent in a sidecar container that shares the PID
namespace (or on the host) reads the file the target sees, in the target's /dev/shm. The
name carries the target's pid as the target knows it (the last `NSpid` of
`/proc/<pid>/status`), and the header repeats that pid with the process's start time: a file
left behind by a crashed process is not mapped by anyone, and a file that is somehow found for
the wrong process (pid reused, another namespace) fails the check. Either way the answer is
"no hot paths", never someone else's.

The layout is documented in `hotpath.profiler.hotpath.layout`. The writer only ever increases
aligned 8-byte words with single stores and publishes entries and thread slots by bumping
`paths_used` / `slots_used` after them; this side reads the words through a read-only mapping
as a `memoryview` cast to 8-byte integers ('q'), one whole aligned word at a time (see
`_sum_slots`), and such loads do not tear on x86-64 or arm64 (unlike a `read()` or a bytes
copy, which may copy byte by byte). A read is therefore a slightly stale snapshot, never
garbage: the counts, sum and max of one path may be a few calls apart, each of them right.

Plain Python, no numpy: the agent runs from `pip install hotpath` alone. The agent calls
`read(pid)` once per window and ships `snapshot.calls.delta(before)` per hot path.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from itertools import compress
from operator import add
from pathlib import Path
from typing import TYPE_CHECKING

from hotpath.profiler.hotpath.histogram import (
    HIGHEST_NS,
    LOWEST_NS,
    NUM_BUCKETS,
    SUB_BUCKET_BITS,
)
from hotpath.profiler.hotpath.layout import (
    BUCKETS_WORD,
    ENTRY,
    FUNCTION_BYTES,
    FUNCTION_TABLE_AT,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_WORD,
    SUM_WORD,
    VERSION,
    decode_function,
    histogram_file_name,
    process_start_time,
)
from hotpath.profiler.hotpath.sparse import SparseHistogram

if TYPE_CHECKING:
    from hotpath.profiler.hotpath.histogram import Histogram


class UnsupportedHistogramFile(ValueError):
    """The target writes a layout this reader does not know (another hotpath version)."""


@dataclass(frozen=True, slots=True)
class HotPathSnapshot:
    """One hot path of a process at the time of reading: all calls since it started."""

    name: str
    budget_ns: int | None
    calls: SparseHistogram
    function: tuple[str, str] | None = None  # (qualname, filename tail) of the timed code

    @property
    def histogram(self) -> Histogram:
        """The calls as the server's dense `Histogram` (imports numpy; the agent uses `calls`)."""
        return self.calls.to_histogram()

    @property
    def over_budget(self) -> int:
        """Calls slower than the budget (0 without a budget)."""
        return self.calls.over(self.budget_ns) if self.budget_ns else 0


def namespace_pid(pid: int) -> int:
    """The pid the process sees for itself (innermost PID namespace); `pid` when unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def find_histogram_file(pid: int) -> Path | None:
    """The path to open for `pid`'s histogram file, or None when it has no hot paths (or is
    gone, or cannot be inspected)."""
    wanted = "/" + histogram_file_name(namespace_pid(pid))
    try:
        maps = Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        # A deleted file shows as "<path> (deleted)" and fails this test: its process is
        # exiting and the path may already name another file.
        if len(fields) == 6 and fields[5].endswith(wanted):
            seen_by_target = fields[5]
            through_root = Path(f"/proc/{pid}/root{seen_by_target}")
            try:
                through_root.stat()
                return through_root
            except OSError:
                # No access to the target's root (e.g. not privileged): the same path here
                # is the right file when we share its mounts, and the header check says so.
                return Path(seen_by_target)
    return None


def read(pid: int) -> dict[str, HotPathSnapshot]:
    """Every hot path of `pid` by name; {} when the process has none (or is gone).

    Raises UnsupportedHistogramFile when the file is of a layout this code doesn't read.
    """
    with HeldHistograms(pid) as held:
        return held.read()


class HeldHistograms:
    """A process's histogram file, mapped once found and held: the agent keeps reading it after
    the target has exited and removed it, so the calls of the last (partial) window are not
    lost. Until the target makes its file (its first hot path), each read looks again."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._mm: mmap.mmap | None = None
        self._expected = (0, 0)  # the owner's own pid and start time, taken when found

    def read(self) -> dict[str, HotPathSnapshot]:
        if self._mm is None:
            self._mm = self._open()
            if self._mm is None:
                return {}
        return _read_mapped(self._mm, *self._expected)

    def _open(self) -> mmap.mmap | None:
        path = find_histogram_file(self.pid)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                return None
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            return None
        finally:
            os.close(fd)
        self._expected = (namespace_pid(self.pid), process_start_time(self.pid))
        return mm

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __enter__(self) -> HeldHistograms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_mapped(mm: mmap.mmap, expected_pid: int, start_time: int) -> dict[str, HotPathSnapshot]:
    (
        magic,
        version,
        max_paths,
        max_slots,
        num_buckets,
        sub_bits,
        entry_size,
        lowest,
        highest,
        pid,
        writer_start,
        data_offset,
        stride,
        paths_used,
        slots_used,
    ) = HEADER.unpack_from(mm, 0)
    if magic != MAGIC:
        return {}  # not (yet) a histogram file
    if version != VERSION:
        raise UnsupportedHistogramFile(f"histogram file version {version}, expected {VERSION}")
    if (num_buckets, sub_bits, lowest, highest) != (
        NUM_BUCKETS,
        SUB_BUCKET_BITS,
        LOWEST_NS,
        HIGHEST_NS,
    ):
        raise UnsupportedHistogramFile("histogram file uses another bucket layout")
    if pid != expected_pid or (start_time and writer_start and writer_start != start_time):
        return {}  # a leftover of another process
    paths_used = min(paths_used, max_paths)
    slots_used = min(slots_used, max_slots - 1)
    if paths_used == 0:
        return {}
    needed = data_offset + max_slots * max_paths * stride
    if (
        len(mm) < needed
        or entry_size != ENTRY.size
        or stride % 8
        or data_offset % 8
        or stride < (BUCKETS_WORD + NUM_BUCKETS) * 8
    ):
        raise UnsupportedHistogramFile("histogram file header does not match its size")

    entries = [ENTRY.unpack_from(mm, HEADER_SIZE + i * entry_size) for i in range(paths_used)]
    calls = _sum_slots(
        mm, data_offset, stride, max_paths, [*range(slots_used), max_slots - 1], paths_used
    )
    snapshots: dict[str, HotPathSnapshot] = {}
    for i, (raw_name, budget_ns, _reserved) in enumerate(entries):
        name = raw_name.rstrip(b"\x00").decode(errors="replace")
        at = FUNCTION_TABLE_AT + i * FUNCTION_BYTES
        function = decode_function(bytes(mm[at : at + FUNCTION_BYTES]))
        snapshots[name] = HotPathSnapshot(name, budget_ns or None, calls[i], function)
    return snapshots


def _sum_slots(
    mm: mmap.mmap,
    data_offset: int,
    stride: int,
    max_paths: int,
    slots: list[int],
    paths_used: int,
) -> list[SparseHistogram]:
    """Each path's calls, summed over the given thread slots (max for the max).

    Every word is loaded whole: indexing a memoryview of format 'q', or its `tolist()`, unpacks
    item by item with a fixed 8-byte copy into an integer (CPython's `unpack_single`), which
    compiles to one 8-byte load; the words are 8-byte aligned (the mapping starts on a page,
    `data_offset` and `stride` are multiples of 8), and aligned 8-byte loads are single-copy
    atomic on x86-64 and arm64. So a word the target is writing is read as before or after
    the store, never half of each. ('q' is native order; the file is little-endian, and the
    recorder shares it only from little-endian machines.)
    """
    sums, maxes = [0] * paths_used, [0] * paths_used
    # Per path, the bucket counts summed over the slots so far (None: all zero so far).
    dense: list[list[int] | None] = [None] * paths_used
    words_per_block = stride // 8
    with memoryview(mm) as view, view[: len(mm) - len(mm) % 8].cast("q") as words:
        for slot in slots:
            base = data_offset // 8 + slot * max_paths * words_per_block
            for path in range(paths_used):
                at = base + path * words_per_block
                sums[path] += words[at + SUM_WORD]
                maxes[path] = max(maxes[path], words[at + MAX_WORD])
                first = at + BUCKETS_WORD
                counts = words[first : first + NUM_BUCKETS].tolist()
                if not any(counts):
                    continue  # a thread that never timed this path: the common case
                so_far = dense[path]
                dense[path] = counts if so_far is None else list(map(add, so_far, counts))
    return [
        SparseHistogram(
            {i: counts[i] for i in compress(range(NUM_BUCKETS), counts)} if counts else None,
            sums[path],
            maxes[path],
        )
        for path, counts in enumerate(dense)
    ]
