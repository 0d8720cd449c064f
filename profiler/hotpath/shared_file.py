"""The shared file of one recording process: created, mapped and published field by field
in the order `layout.py` promises readers (the magic last), locked while its writer lives,
and removed by its writer at exit; plus the removal of files whose writer was killed."""

from __future__ import annotations

import fcntl
import mmap
import os
import sys
import time
import warnings
from pathlib import Path

from hotpath.profiler.hotpath.histogram import (
    HIGHEST_NS,
    LOWEST_NS,
    NUM_BUCKETS,
    SUB_BUCKET_BITS,
)
from hotpath.profiler.hotpath.layout import (
    DATA_OFFSET,
    ENTRY,
    ENTRY_SIZE,
    FILE_SIZE,
    FUNCTION_BYTES,
    FUNCTION_TABLE_AT,
    HEADER,
    HEADER_SIZE,
    I64,
    MAGIC,
    MAX_PATHS,
    MAX_SLOTS,
    NAME_BYTES,
    PATHS_USED_AT,
    SLOT_STRIDE,
    SLOTS_USED_AT,
    U32,
    VERSION,
    histogram_dir,
    histogram_file_name,
    process_start_time,
)

STRIDE_WORDS = SLOT_STRIDE // 8  # i64 words per (thread slot, path) block
SLOT_WORDS = MAX_PATHS * STRIDE_WORDS  # i64 words per thread slot


class SharedFile:
    """The shared file of one process, mapped; or an anonymous stand-in when it can't be made."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.path: Path | None = None
        self.lock_fd: int | None = None
        try:
            if sys.byteorder != "little":
                raise OSError("the shared layout is little-endian; this machine is not")
            self.mm = self._create_file()
        except OSError as exc:
            # Timing must go on whatever happens to the file: keep the counts in private
            # memory, where no agent can read them, and say so once.
            warnings.warn(
                f"hotpath: no shared histogram file ({exc}); hot paths are timed but unreadable",
                RuntimeWarning,
                stacklevel=4,
            )
            self.path = None
            self.mm = mmap.mmap(-1, FILE_SIZE)
        self.view = memoryview(self.mm)
        self.words = self.view.cast("q")
        mp_util = sys.modules.get("multiprocessing.util")
        if self.path is not None and mp_util is not None:
            # multiprocessing's children end with os._exit, which skips atexit; its own exit
            # hook runs these finalizers first.
            mp_util.Finalize(None, self.remove, exitpriority=0)

    def _create_file(self) -> mmap.mmap:
        directory = histogram_dir()
        remove_stale_files(directory)
        path = directory / histogram_file_name(self.pid)
        # A file by this name is a leftover of a dead process that had our pid: start afresh.
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # held while this process lives: "not stale"
            os.ftruncate(fd, FILE_SIZE)
            mm = mmap.mmap(fd, FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self.lock_fd = fd
        self.path = path
        header = HEADER.pack(
            b"\x00" * 8,  # the magic goes in last
            VERSION,
            MAX_PATHS,
            MAX_SLOTS,
            NUM_BUCKETS,
            SUB_BUCKET_BITS,
            ENTRY_SIZE,
            LOWEST_NS,
            HIGHEST_NS,
            self.pid,
            process_start_time(),
            DATA_OFFSET,
            SLOT_STRIDE,
            0,
            0,
        )
        mm[: len(header)] = header
        mm[:8] = MAGIC
        return mm

    def add_path(self, index: int, name: bytes, budget_ns: int) -> None:
        ENTRY.pack_into(self.mm, HEADER_SIZE + index * ENTRY_SIZE, name, budget_ns, 0)
        U32.pack_into(self.mm, PATHS_USED_AT, index + 1)

    def set_function(self, index: int, encoded: bytes) -> None:
        at = FUNCTION_TABLE_AT + index * FUNCTION_BYTES
        self.mm[at : at + FUNCTION_BYTES] = encoded.ljust(FUNCTION_BYTES, b"\x00")

    def set_budget(self, index: int, budget_ns: int) -> None:
        I64.pack_into(self.mm, HEADER_SIZE + index * ENTRY_SIZE + NAME_BYTES, budget_ns)

    def publish_slots(self, used: int) -> None:
        U32.pack_into(self.mm, SLOTS_USED_AT, used)

    def slot_base(self, slot: int) -> int:
        """Word index of the thread slot's block for path 0."""
        return DATA_OFFSET // 8 + slot * SLOT_WORDS

    def remove(self) -> None:
        if self.path is not None and self.pid == os.getpid():
            self.path.unlink(missing_ok=True)

    def drop(self) -> None:
        """Unmap without touching the file (a forked child dropping its parent's mapping)."""
        if self.lock_fd is not None:
            # The child's copy of the descriptor shares the parent's lock: closing the copy
            # keeps the lock (flock locks belong to the open file, which the parent holds).
            os.close(self.lock_fd)
            self.lock_fd = None
        try:
            self.words.release()
            self.view.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass  # something still holds a view: leave it mapped, it is only address space


def remove_stale_files(directory: Path, min_age_s: float = 60.0) -> int:
    """Remove the files of writers that are gone (killed before their exit hooks ran)."""
    removed = 0
    for path in directory.glob("hotpath-*.hist"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its writer is alive
            # Free of locks and with the magic: its writer is gone. Without the magic it may be
            # a file being created (not locked yet): only an old one is a leftover.
            complete = os.pread(fd, len(MAGIC), 0) == MAGIC
            if complete or time.time() - os.fstat(fd).st_mtime > min_age_s:
                path.unlink(missing_ok=True)
                removed += 1
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed
