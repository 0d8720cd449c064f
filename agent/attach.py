"""The attaching agent: sample a PID with py-spy window by window and ship each window."""

from __future__ import annotations

import logging
import signal
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hotpath.agent import process_memory
from hotpath.agent.hotpaths import HotPathTracker
from hotpath.agent.shipper import (
    DEFAULT_MAX_SERVER_ERRORS,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MAX_SPOOL_FILES,
    Shipper,
)
from hotpath.profiler.adapters.pyspy import WindowedSampler
from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import CPU, WALL

log = logging.getLogger("hotpath.agent")


@dataclass
class AttachOptions:
    pid: int
    service: str
    server: str = "http://127.0.0.1:8000"
    rate_hz: int = 100
    window_s: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    spool_dir: Path = Path("data/spool")
    idle: bool = False  # wall-clock sampling: waiting threads too (py-spy --idle)
    token: str | None = field(default=None, repr=False)  # never in a log line
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    max_spool_files: int = DEFAULT_MAX_SPOOL_FILES
    max_server_errors: int = DEFAULT_MAX_SERVER_ERRORS  # the same 5xx in a row: set aside


@dataclass
class AttachSummary:
    windows: int = 0
    samples: int = 0
    shipped: int = 0
    spooled: int = 0  # had to wait while the server was away
    quarantined: int = 0  # refused for good by the server, set aside in quarantine/
    sent_direct: int = 0  # sent from memory: the spool could not be written
    dropped_full: int = 0  # oldest windows deleted to keep the spool within its caps
    dropped_memory: int = 0  # lost from the in-memory queue while the spool was unusable
    left: int = 0  # still in the spool at exit; the next agent with this spool sends them


def default_labels(pid: int) -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(pid)}


def _wire_memory(memory: process_memory.ProcessMemory | None) -> wire.ProcessMemoryWindow | None:
    if memory is None:
        return None
    return wire.ProcessMemoryWindow(
        pid=memory.pid,
        rss_bytes=memory.rss_bytes,
        pss_bytes=memory.pss_bytes,
        uss_bytes=memory.uss_bytes,
    )


def attach(options: AttachOptions) -> AttachSummary:
    """Runs until the target exits or SIGINT/SIGTERM arrives; the last window is always shipped.

    Call `profiler.adapters.pyspy.check_target` first for a clear message about a bad PID;
    py-spy failing later raises `PySpyError` too.
    """
    labels = {**default_labels(options.pid), **options.labels}
    # py-spy samples on-CPU threads by default and every thread with --idle: two profile
    # types, never merged or compared (the type is part of the series key on the server).
    kind = WALL if options.idle else CPU
    sampler = WindowedSampler(
        options.pid, rate_hz=options.rate_hz, window_s=options.window_s, idle=options.idle
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("%s: shipping the last window and stopping", signal.Signals(signum).name)
        sampler.stop()  # before the first window too: then there is one empty final window

    # First thing: a signal during the slower set-up below (the tracker's first read imports
    # numpy) must stop the agent cleanly, not abort it.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    shipper = Shipper(
        options.server,
        options.spool_dir / options.service,
        token=options.token,
        max_spool_bytes=options.max_spool_bytes,
        max_spool_files=options.max_spool_files,
        max_server_errors=options.max_server_errors,
    )
    hot_paths = HotPathTracker(options.pid)
    memory_reader = process_memory.MemoryReader(options.pid)
    summary = AttachSummary()
    try:
        for sampled in sampler.windows():
            profile = collapsed.loads(sampled.collapsed)
            profile.type = kind
            calls = hot_paths.window()
            # At the window's end: RSS rides along with every window, idle ones too.
            memory = memory_reader.read()
            summary.windows += 1
            summary.samples += profile.total
            if not profile.total and not calls and memory is None:
                continue  # an idle window of a gone process: nothing to store
            window = wire.from_profile(
                profile,
                service=options.service,
                idempotency_key=uuid.uuid4().hex,
                start=sampled.start,
                end=sampled.end,
                sample_rate_hz=options.rate_hz,
                labels=labels,
                hot_paths=calls,
                process=_wire_memory(memory),
            )
            shipper.submit(window)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        hot_paths.close()
        summary.left = shipper.close()
    summary.shipped, summary.spooled = shipper.shipped, shipper.deferred
    summary.quarantined, summary.sent_direct = shipper.quarantined, shipper.sent_direct
    summary.dropped_full, summary.dropped_memory = shipper.dropped_full, shipper.dropped_memory
    log.info("target %s done: %s", options.pid, summary)
    return summary
