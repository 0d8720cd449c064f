"""The agent's side of hot-path timing: find another process's histogram file and read it.

The file is found through `/proc/<pid>/maps`, which lists every mapped file by path, and
opened through `/proc/<pid>/root`, so an agent in a sidecar container that shares the PID
namespace (or on the host) reads the file the target sees, in the target's /dev/shm. The
name carries the target's pid as the target knows it (the last `NSpid` of
`/proc/<pid>/status`), and the header repeats that pid with the process's start time: a file
left behind by a crashed process is not mapped by anyone, and a file that is somehow found for
the wrong process (pid reused, another namespace) fails the check. Either way the answer is
"no hot paths", never someone else's.

The layout is documented in `profiler.hotpath.recorder`. The writer only ever increases
aligned 8-byte words with single stores and publishes entries and thread slots by bumping
`paths_used` / `slots_used` after them; this side reads the words through a read-only mapping
with numpy ufuncs, i.e. aligned 8-byte loads, which do not tear on x86-64 or arm64 (unlike a
`read()` into a buffer, which the kernel may copy byte by byte). A read is therefore a
slightly stale snapshot, never garbage: the counts, sum and max of one path may be a few
calls apart, each of them right.

The agent calls `read(pid)` once per window and ships `now.delta(before)` per hot path.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hotpath.profiler.hotpath.histogram import (
    HIGHEST_NS,
    LOWEST_NS,
    NUM_BUCKETS,
    SUB_BUCKET_BITS,
    Histogram,
)
from hotpath.profiler.hotpath.recorder import (
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

if TYPE_CHECKING:
    import numpy as np


class UnsupportedHistogramFile(ValueError):
    """The target writes a layout this reader does not know (another hotpath version)."""


@dataclass(frozen=True, slots=True)
class HotPathSnapshot:
    """One hot path of a process at the time of reading: all calls since it started."""

    name: str
    budget_ns: int | None
    histogram: Histogram
    function: tuple[str, str] | None = None  # (qualname, filename tail) of the timed code

    @property
    def over_budget(self) -> int:
        """Calls slower than the budget (0 without a budget)."""
        return self.histogram.over(self.budget_ns) if self.budget_ns else 0


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
    if len(mm) < needed or entry_size != ENTRY.size or stride % 8:
        raise UnsupportedHistogramFile("histogram file header does not match its size")

    entries = [ENTRY.unpack_from(mm, HEADER_SIZE + i * entry_size) for i in range(paths_used)]
    sums, maxes, counts = _sum_slots(
        mm, data_offset, stride, max_paths, [*range(slots_used), max_slots - 1], paths_used
    )
    snapshots: dict[str, HotPathSnapshot] = {}
    for i, (raw_name, budget_ns, _reserved) in enumerate(entries):
        name = raw_name.rstrip(b"\x00").decode(errors="replace")
        histogram = Histogram(counts[i], int(sums[i]), int(maxes[i]))
        at = FUNCTION_TABLE_AT + i * FUNCTION_BYTES
        function = decode_function(bytes(mm[at : at + FUNCTION_BYTES]))
        snapshots[name] = HotPathSnapshot(name, budget_ns or None, histogram, function)
    return snapshots


def _sum_slots(
    mm: mmap.mmap,
    data_offset: int,
    stride: int,
    max_paths: int,
    slots: list[int],
    paths_used: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum, max and bucket counts per path over the given thread slots."""
    import numpy as np

    sums = np.zeros(paths_used, dtype=np.int64)
    maxes = np.zeros(paths_used, dtype=np.int64)
    counts = np.zeros((paths_used, NUM_BUCKETS), dtype=np.int64)
    words_per_block = stride // 8
    for slot in slots:
        blocks = np.frombuffer(
            mm,
            dtype="<i8",
            count=paths_used * words_per_block,
            offset=data_offset + slot * max_paths * stride,
        ).reshape(paths_used, words_per_block)
        # ufuncs load element by element: each word is read whole.
        np.add(sums, blocks[:, SUM_WORD], out=sums)
        np.maximum(maxes, blocks[:, MAX_WORD], out=maxes)
        np.add(counts, blocks[:, BUCKETS_WORD : BUCKETS_WORD + NUM_BUCKETS], out=counts)
        del blocks  # the mapping closes after this function: no view may outlive it
    return sums, maxes, counts
