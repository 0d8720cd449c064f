"""Reading a target's hot-path histograms each window and turning them into per-window deltas.

The target's histograms count every call since it started; the server wants the calls of each
window, so the agent keeps the previous snapshot per hot path and ships the difference. The
first snapshot, taken when the agent attaches, is the baseline: calls made before the agent
came are not charged to its first window.

No numpy here: the agent runs from a plain `pip install hotpath`, and reads, subtracts and
ships histograms as `SparseHistogram`s, whose wire form is the server's `Histogram`'s.
"""

from __future__ import annotations

import logging

from hotpath.profiler.formats.window import HotPathWindow
from hotpath.profiler.hotpath import reader
from hotpath.profiler.hotpath.sparse import SparseHistogram

log = logging.getLogger("hotpath.agent")


class HotPathTracker:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        # Held open, so that the last window after the target's exit still reads its calls.
        self._file = reader.HeldHistograms(pid)
        self._before: dict[str, SparseHistogram] = {
            name: snap.calls for name, snap in self._read().items()
        }

    def window(self) -> list[HotPathWindow]:
        """The calls of each hot path since the previous call (empty for a process without)."""
        out = []
        for name, snap in self._read().items():
            before = self._before.get(name)
            try:
                calls = snap.calls.delta(before) if before is not None else snap.calls
            except ValueError:  # counts went down: the process restarted its histograms
                calls = snap.calls
            self._before[name] = snap.calls
            if calls.count:
                function = f"{snap.function[0]} ({snap.function[1]})" if snap.function else None
                out.append(
                    HotPathWindow(
                        name=name,
                        budget_ns=snap.budget_ns,
                        function=function,
                        histogram=calls.to_wire(),
                    )
                )
        return out

    def close(self) -> None:
        self._file.close()

    def _read(self) -> dict[str, reader.HotPathSnapshot]:
        try:
            return self._file.read()
        except (reader.UnsupportedHistogramFile, OSError) as exc:
            log.warning("cannot read the hot-path histograms of pid %s: %s", self.pid, exc)
            return {}
