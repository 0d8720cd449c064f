"""The memory-mapped file of hot-path histograms: its layout, its name, and the codec of its
function table. The recorder (`recorder.py`, in the trading process) writes it; the reader
(`reader.py`, in the agent) reads it. Stdlib only.

The file
--------
``/dev/shm/hotpath-<pid>.hist`` (the temp dir when /dev/shm is missing), created on the first
`hot_path(...)`, sparse (pages are touched only where counts land), removed at interpreter
exit. ``<pid>`` is `os.getpid()`, the PID in the process's own namespace. All integers are
little-endian; offsets in bytes::

    header (128 bytes at 0)
      0  8s  magic          b"HOTPATH\\0", written last: a reader seeing it sees the rest
      8  u32 version        1
     12  u32 max_paths      64: path entries and data blocks per thread slot
     16  u32 max_slots      32: thread slots; the last one is shared (see below)
     20  u32 num_buckets    1699 (`histogram.NUM_BUCKETS`)
     24  u32 sub_bucket_bits 6   (`histogram.SUB_BUCKET_BITS`)
     28  u32 entry_size     128
     32  i64 lowest_ns      1_000 (`histogram.LOWEST_NS`)
     40  i64 highest_ns     100_000_000_000 (`histogram.HIGHEST_NS`)
     48  i64 pid            the writer's os.getpid()
     56  u64 start_time     field 22 of /proc/self/stat (clock ticks after boot), 0 if unknown
     64  u32 data_offset    16384
     68  u32 slot_stride    16384: bytes per (thread slot, path) block
     72  u32 paths_used     entries in use; bumped after the entry is written
     76  u32 slots_used     thread slots handed out (high-water mark, shared slot excluded)
     80  ..                 zero
    path table (max_paths entries of entry_size bytes at 128)
      0  112s name          UTF-8, NUL-padded
    112  i64 budget_ns      0 when the hot path has no budget
    120  i64 reserved       0
    function table (max_paths entries of 120 bytes at 8320, after the path table)
      0  120s function      UTF-8 "qualname\0filename", NUL-padded, the filename cut from
                            the left to fit: the code a hot path times (the decorated
                            function, or the one whose body holds the `with`), for budget
                            attribution from sampled stacks; zero when not known yet
    data (at data_offset): block of thread slot s for path p at
         data_offset + (s * max_paths + p) * slot_stride, as i64 words:
      0  sum_ns             sum of the durations recorded
      1  max_ns             largest duration recorded
      2  buckets[num_buckets] counts per `histogram.bucket_index`; the rest of the block is
                            padding so that blocks start on page boundaries

A path's histogram is the sum of its blocks over the thread slots (max for max_ns); the
call count is the sum of its buckets, not stored apart, which saves a write per call.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from hotpath.profiler.hotpath.histogram import NUM_BUCKETS

MAGIC = b"HOTPATH\x00"
VERSION = 1
MAX_PATHS = 64
MAX_SLOTS = 32
SHARED_SLOT = MAX_SLOTS - 1
NAME_BYTES = 112
HEADER = struct.Struct("<8sIIIIIIqqqQIIII")
HEADER_SIZE = 128
ENTRY = struct.Struct("<112sqq")
ENTRY_SIZE = ENTRY.size
PATHS_USED_AT = 72
SLOTS_USED_AT = 76
U32 = struct.Struct("<I")
I64 = struct.Struct("<q")
DATA_OFFSET = 16384
SLOT_STRIDE = 16384
FILE_SIZE = DATA_OFFSET + MAX_SLOTS * MAX_PATHS * SLOT_STRIDE
SUM_WORD, MAX_WORD, BUCKETS_WORD = 0, 1, 2
FUNCTION_TABLE_AT = HEADER_SIZE + MAX_PATHS * ENTRY_SIZE
FUNCTION_BYTES = 120

assert HEADER.size <= HEADER_SIZE and ENTRY_SIZE == 128
assert FUNCTION_TABLE_AT + MAX_PATHS * FUNCTION_BYTES <= DATA_OFFSET
assert (BUCKETS_WORD + NUM_BUCKETS) * 8 <= SLOT_STRIDE


def histogram_file_name(pid: int) -> str:
    return f"hotpath-{pid}.hist"


def histogram_dir() -> Path:
    """/dev/shm (memory, never written to disk) when there is one, else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def process_start_time(pid: int | str = "self") -> int:
    """Field 22 of /proc/<pid>/stat: with the pid, it tells a process from a later one that
    reused its pid. 0 when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def encode_function(qualname: str, filename: str) -> bytes:
    """ "qualname\0filename" in FUNCTION_BYTES of UTF-8; a long filename loses its start,
    since the sampler's frames are matched by qualname and the end of the path."""
    name = qualname.encode()[: FUNCTION_BYTES - 2]
    room = FUNCTION_BYTES - len(name) - 1
    path = filename.encode()
    if len(path) > room:
        path = path[len(path) - room :]
    return name + b"\x00" + path


def decode_function(raw: bytes) -> tuple[str, str] | None:
    raw = raw.rstrip(b"\x00")
    if b"\x00" not in raw:
        return None
    name, _, path = raw.partition(b"\x00")
    return name.decode(errors="replace"), path.decode(errors="replace").lstrip("\ufffd")
