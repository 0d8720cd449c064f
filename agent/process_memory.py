"""A process's memory read from outside, once per window, without touching the target.

RSS comes from `/proc/PID/statm` every window: a counter the kernel keeps, ~0.1 ms to read
whatever the process's size. PSS and USS (private clean + dirty) come from
`/proc/PID/smaps_rollup`, which the kernel sums by walking every page table of the process
(measured by benchmarks/memory_rss.py: ~2 ms at 60 MB RSS, ~17 ms at 0.5 GB, ~54 ms at 2 GB,
holding the target's mmap lock for reading meanwhile); so it is read only as often as keeps
its cost within `budget` of wall-clock time (0.1%: every window for a small process, about
once a minute at 2 GB), and the windows between carry RSS alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BUDGET = 0.001  # of wall-clock time spent walking the target's page tables


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    rss_bytes: int
    pss_bytes: int | None = None  # proportional: shared pages split between their users
    uss_bytes: int | None = None  # unique: what freeing the process would give back


def from_smaps_rollup(pid: int, text: str) -> ProcessMemory:
    """The fields of a `smaps_rollup` (lines like `Rss:   1234 kB`); ValueError without Rss."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            kb[name] = int(parts[0]) * 1024
    if "Rss" not in kb:
        raise ValueError("no Rss line in smaps_rollup")
    private = [kb[k] for k in ("Private_Clean", "Private_Dirty") if k in kb]
    return ProcessMemory(pid, kb["Rss"], kb.get("Pss"), sum(private) if len(private) == 2 else None)


def from_statm(pid: int, text: str) -> ProcessMemory:
    """RSS from a `statm` line (sizes in pages; the second is resident)."""
    return ProcessMemory(pid, int(text.split()[1]) * PAGE_SIZE)


def read_statm(pid: int, proc: str = "/proc") -> ProcessMemory | None:
    try:
        with open(f"{proc}/{pid}/statm") as f:
            return from_statm(pid, f.read())
    except (OSError, ValueError, IndexError):
        return None


def read_smaps_rollup(pid: int, proc: str = "/proc") -> ProcessMemory | None:
    try:
        with open(f"{proc}/{pid}/smaps_rollup") as f:
            return from_smaps_rollup(pid, f.read())
    except (OSError, ValueError):
        return None


def read(pid: int, proc: str = "/proc") -> ProcessMemory | None:
    """Everything readable now (smaps_rollup, else statm), whatever it costs; None when the
    process is gone."""
    return read_smaps_rollup(pid, proc) or read_statm(pid, proc)


class MemoryReader:
    """One process's memory at each window's end: RSS every time, PSS and USS when the
    budget allows (see the module doc). RSS always comes from statm, so one series is never
    a mix of two counters."""

    def __init__(
        self,
        pid: int,
        budget: float = BUDGET,
        proc: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid, self.budget, self.proc, self.clock = pid, budget, proc, clock
        self._next_full = float("-inf")
        self.full_reads = 0

    def read(self) -> ProcessMemory | None:
        rss = read_statm(self.pid, self.proc)
        if rss is None:
            return None  # gone (or /proc unreadable)
        now = self.clock()
        if now < self._next_full or self.budget <= 0:
            return rss
        full = read_smaps_rollup(self.pid, self.proc)
        spent = self.clock() - now
        # Unreadable (no permission, old kernel): try again rarely, not every window.
        self._next_full = now + max(spent / self.budget, 0 if full else 600)
        if full is None:
            return rss
        self.full_reads += 1
        return ProcessMemory(
            self.pid,
            rss.rss_bytes,
            None if full.pss_bytes is None else min(full.pss_bytes, rss.rss_bytes),
            None if full.uss_bytes is None else min(full.uss_bytes, rss.rss_bytes),
        )
