"""An on-demand memory capture: attach memray to a PID for a while, read the capture, ship it.

One capture is one request (`POST /api/v1/memory/captures`, zstd JSON, its idempotency key
kept across retries so a retried capture is stored once). It is shipped whole or not at all:
a capture cut short (the target exited, memray failed) or refused by the server leaves
nothing behind, and the temporary file the target wrote is always removed. There is no spool:
a capture is asked for by someone at a terminal, who is told at once when the server is away.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import zstandard

from hotpath.agent.attach import default_labels
from hotpath.profiler.adapters.memray import CaptureFile, MemrayCapture, Pause
from hotpath.profiler.formats import memray as memray_file
from hotpath.profiler.formats import window as wire
from hotpath.profiler.formats.memory_capture import MemoryCapture
from hotpath.profiler.model import Profile

log = logging.getLogger("hotpath.agent")

ENDPOINT = "/api/v1/memory/captures"
ATTEMPTS = 4  # a 5xx or an unreachable server: tried again after 0.5, 1 and 2 s
# Memory windows carry no sampling rate; uploaded memory profiles are stored at the upload
# default (hotpath.profiler.formats.collapsed.DEFAULT_RATE_HZ), so these merge with them.
MEMORY_RATE_HZ = 100.0
# What a capture costs the target, measured by benchmarks/memory_capture.py on 2 cores (told
# to the user before attaching; the real pauses are measured and shown after).
# The figure the agent stores (first to last tracing stop) matches the freeze seen inside
# the target (its longest loop gap) within ~35 ms: 0.5-1.25 s on a busy 2-core machine.
TYPICAL_PAUSE_MS = (500, 1250)  # each of attach and detach
TYPICAL_SLOWDOWN = "allocation-heavy code does 0.35-0.6x the work per CPU second while captured"


class ShipError(Exception):
    """The server did not store the capture; str(e) says why."""


@dataclass
class MemoryOptions:
    pid: int
    service: str
    duration_s: float
    server: str = "http://127.0.0.1:8000"
    token: str | None = field(default=None, repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    small_objects: bool = False  # trace every Python object (memray --trace-python-allocators)


@dataclass(frozen=True)
class Captured:
    capture: MemoryCapture
    file: CaptureFile
    profiles: memray_file.MemrayProfiles


def _window(
    profile: Profile, service: str, key: str, start: datetime, end: datetime, labels: dict[str, str]
) -> wire.Window:
    return wire.from_profile(
        profile,
        service=service,
        idempotency_key=f"{key}.{profile.type.id}",
        start=start,
        end=end,
        sample_rate_hz=MEMORY_RATE_HZ,
        labels=labels,
    )


def build(
    profiles: memray_file.MemrayProfiles, file: CaptureFile, service: str, labels: dict[str, str]
) -> MemoryCapture:
    """The wire capture of a read memray file and the pauses measured around it."""
    key = uuid.uuid4().hex
    start, end = profiles.start, profiles.end
    windows = [
        _window(p, service, key, start, end, labels)
        for p in (profiles.alloc_bytes, profiles.alloc_count, profiles.held_bytes)
    ]
    return MemoryCapture(
        service=service,
        idempotency_key=key,
        pid=file.pid,
        start=start,
        end=end,
        pause_attach_ms=round(file.attach.span_ms, 1),
        pause_detach_ms=round(file.detach.span_ms, 1),
        tool=f"memray {_memray_version()}",
        windows=windows,
        functions=profiles.functions,
    )


def _memray_version() -> str:
    from importlib.metadata import version

    return version("memray")


def capture(options: MemoryOptions, on_attached: Callable[[Pause], None] | None = None) -> Captured:
    """Attach, record for `duration_s`, detach, read: a MemrayError (cut short, refused by
    the kernel ...) or MemrayFileError otherwise; the temporary file is always removed."""
    labels = {**default_labels(options.pid), **options.labels}
    with MemrayCapture(options.pid, small_objects=options.small_objects) as session:
        pause = session.attach()
        if on_attached is not None:
            on_attached(pause)
        session.wait(options.duration_s)
        finished = session.detach()
        profiles = memray_file.read(finished.path)
    return Captured(build(profiles, finished, options.service, labels), finished, profiles)


def ship(capture: MemoryCapture, server: str, token: str | None) -> int:
    """POST the capture; its HTTP status (201 stored, 200 already stored) or ShipError."""
    url = server.rstrip("/") + ENDPOINT
    body = zstandard.ZstdCompressor(level=3).compress(capture.model_dump_json().encode())
    headers = {"Content-Encoding": "zstd", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    problem = ""
    with httpx.Client(timeout=30.0) as client:
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"cannot reach the server at {server}: {exc}"
                log.info("%s (attempt %d of %d)", problem, attempt + 1, ATTEMPTS)
                continue
            if response.status_code in (200, 201):
                return response.status_code
            problem = f"the server answered HTTP {response.status_code}: {_detail(response)}"
            if response.status_code < 500:
                raise ShipError(problem)  # it will answer the same again
            log.info("%s (attempt %d of %d)", problem, attempt + 1, ATTEMPTS)
    raise ShipError(f"{problem} ({ATTEMPTS} attempts)")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return str(detail)[:300]
