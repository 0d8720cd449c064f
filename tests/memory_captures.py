"""Memory captures built from the wire model, shaped like memray's: a function that keeps a
few KB per call (the leak), one that allocates a lot and keeps nothing (churn), and a cache
filled once at the start. For the server's tests until the real agent sends them (B1's
end-to-end test)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hotpath.profiler.formats import window as wire
from hotpath.profiler.formats.memory_capture import HeldSeries, MemoryCapture
from hotpath.profiler.model import ALLOC_BYTES, ALLOC_COUNT, HELD_BYTES, Frame, Profile

APP = "/srv/app/trading.py"
MAIN = Frame("main", APP, 1)
SERVE = Frame("serve", APP, 10)
LEAK = Frame("remember_order", APP, 20)  # keeps 4 KB per call in a module-level list
CHURN = Frame("parse_quotes", APP, 30)  # allocates 400 KB per call, frees it all
CACHE = Frame("load_symbols", APP, 40)  # 2 MB once, early in the capture
LEAK_RATE = 40_960  # bytes kept per second (10 calls/s x 4 KB)


def capture(
    service: str = "mem-svc",
    *,
    start: datetime | None = None,
    seconds: float = 20.0,
    leak: bool = True,
    key: str | None = None,
    pid: int = 4242,
    labels: dict[str, str] | None = None,
) -> MemoryCapture:
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    end = start + timedelta(seconds=seconds)
    held_leak = int(LEAK_RATE * seconds) if leak else 0
    alloc_bytes = Profile(type=ALLOC_BYTES)
    alloc_bytes.add((MAIN, SERVE, CHURN), 400_000 * int(seconds * 10))
    alloc_bytes.add((MAIN, CACHE), 2_000_000)
    alloc_count = Profile(type=ALLOC_COUNT)
    alloc_count.add((MAIN, SERVE, CHURN), 50 * int(seconds * 10))
    alloc_count.add((MAIN, CACHE), 1_000)
    held = Profile(type=HELD_BYTES)
    held.add((MAIN, CACHE), 2_000_000)
    held.add((MAIN, SERVE, CHURN), 1_024)  # a buffer alive at the end
    if leak:
        alloc_bytes.add((MAIN, SERVE, LEAK), held_leak)
        alloc_count.add((MAIN, SERVE, LEAK), int(seconds * 10))
        held.add((MAIN, SERVE, LEAK), held_leak)
    key = key or f"cap-{uuid.uuid4().hex}"
    window_labels = {"pid": str(pid), **(labels or {})}
    windows = [
        wire.from_profile(
            p,
            service=service,
            idempotency_key=f"{key}:{p.type.id}",
            start=start,
            end=end,
            sample_rate_hz=1.0,
            labels=window_labels,
        )
        for p in (alloc_bytes, alloc_count, held)
    ]
    steps = [seconds * i / 40 for i in range(1, 41)]
    functions = [
        # Filled once, early in the capture (what was built before it is not counted).
        _series(CACHE, [(t, 2_000_000 if i else 0) for i, t in enumerate(steps)], 1_000),
        _series(CHURN, [(t, 1_024 if i % 2 else 401_024) for i, t in enumerate(steps)], 1),
    ]
    if leak:
        functions.insert(0, _series(LEAK, [(t, int(LEAK_RATE * t)) for t in steps], 200))
    return MemoryCapture(
        service=service,
        idempotency_key=key,
        pid=pid,
        start=start,
        end=end,
        pause_attach_ms=412.5,
        pause_detach_ms=120.25,
        tool="memray 1.20.0",
        windows=windows,
        functions=functions,
    )


def _series(frame: Frame, points: list[tuple[float, int]], allocations: int) -> HeldSeries:
    return HeldSeries(
        function=frame.name,
        file=frame.file,
        held_bytes=points[-1][1],
        allocations_held=allocations,
        points=points,
    )


def body(capture: MemoryCapture) -> dict[str, Any]:
    return capture.model_dump(mode="json")
