"""Shipping windows to the server from a background thread, through an on-disk spool.

Every window is written to the spool first (write, then rename: never half a file) and a
thread sends spooled windows oldest first, deleting each once the server has it. So sampling
never waits for the network, a server that is away loses nothing (windows wait on disk, and
an agent restarted with the same spool replays them), and the server sees windows in order.
A window keeps its idempotency key for life, so a retry of a window whose response was lost
is not counted twice.

Several agents may share one spool folder (one per service): each works in a folder of its
own, held with an flock, and adopts the folders of agents that are gone (lock free), so no
two agents send the same file and nothing an earlier agent left behind is stranded.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import httpx
import zstandard

from hotpath.profiler.formats.window import Window

log = logging.getLogger("hotpath.agent")

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 10.0


class Rejected(Exception):
    """The server refused a window for good (a 4xx): resending it cannot help."""


class Shipper:
    def __init__(
        self,
        server: str,
        spool_dir: Path,
        *,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = server.rstrip("/") + "/api/v1/windows"
        # The folder is locked before it gets the name other agents look for, so no agent
        # starting at the same moment can take it for an orphan.
        name = f"agent-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        spool_dir.mkdir(parents=True, exist_ok=True)
        staging = spool_dir / f".{name}"
        staging.mkdir()
        self._lock = (staging / ".lock").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.spool_dir = staging.rename(spool_dir / name)
        self.adopted = _adopt_orphans(spool_dir, self.spool_dir)
        self.backoff_s = backoff_s
        self.client = httpx.Client(timeout=timeout_s)
        self.compressor = zstandard.ZstdCompressor(level=3)
        self.shipped = 0  # windows the server acknowledged
        self.deferred = 0  # windows that had to wait in the spool for the server
        self.rejected = 0  # windows the server refused for good (kept as *.rejected)
        self._wake = threading.Event()
        self._close_requested = threading.Event()
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="hotpath-shipper", daemon=True)
        self._thread.start()

    def submit(self, window: Window) -> None:
        """Spool `window` and let the shipping thread send it; never blocks on the network."""
        body = self.compressor.compress(window.model_dump_json().encode())
        # The name sorts by window start, so the spool replays in order.
        name = f"{int(window.start.timestamp() * 1e6):020d}-{window.idempotency_key}"
        tmp = self.spool_dir / f"{name}.tmp"
        tmp.write_bytes(body)
        tmp.rename(self.spool_dir / f"{name}.zst")
        self._wake.set()

    def close(self, timeout_s: float = 15.0) -> int:
        """Try to send what is spooled for up to `timeout_s`; returns the windows left on disk.

        Safe to call more than once."""
        if self._lock.closed:
            return len(self.pending()) if self.spool_dir.exists() else 0
        self._deadline = time.monotonic() + timeout_s
        self._closing = True
        self._close_requested.set()
        self._wake.set()
        self._thread.join(timeout_s + 5)
        self.client.close()
        left = len(self.pending())
        if not left and not any(self.spool_dir.glob("*.rejected")):
            (self.spool_dir / ".lock").unlink()
            self.spool_dir.rmdir()
        self._lock.close()
        return left

    def pending(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.zst"))

    def _run(self) -> None:
        backoff = 0.0
        waited: set[str] = set()
        while True:
            files = self.pending()
            if self._closing and (not files or time.monotonic() > self._deadline):
                return
            if not files:
                self._wake.wait()
                self._wake.clear()
                continue
            for path in files:
                try:
                    sent = self._send(path.read_bytes())
                except Rejected as exc:
                    self.rejected += 1
                    log.error("the server refused window %s for good: %s", path.name, exc)
                    path.rename(path.with_suffix(".rejected"))
                    continue
                if not sent:
                    waited.update(p.name for p in files)
                    backoff = min(MAX_BACKOFF_S, max(self.backoff_s, backoff * 2))
                    break
                path.unlink()
                self.shipped += 1
                if path.name in waited:
                    waited.discard(path.name)
                    self.deferred += 1
                backoff = 0.0
            if backoff:
                # Wait out the whole backoff (new windows only wake the thread when the server
                # is up), but not past the closing deadline; close() cuts the wait short.
                pause = min(backoff, max(0.0, self._deadline - time.monotonic()))
                if self._closing:
                    time.sleep(pause)
                else:
                    self._close_requested.wait(pause)

    def _send(self, body: bytes) -> bool:
        try:
            response = self.client.post(
                self.url,
                content=body,
                headers={"Content-Encoding": "zstd", "Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            log.warning("server unreachable (%s): windows wait in %s", exc, self.spool_dir)
            return False
        if response.status_code in (200, 201):
            return True
        if response.status_code in RETRYABLE_STATUS:
            log.warning(
                "server answered %s: windows wait in %s", response.status_code, self.spool_dir
            )
            return False
        raise Rejected(f"HTTP {response.status_code}: {response.text[:300]}")


def _adopt_orphans(parent: Path, own: Path) -> int:
    """Move the spooled windows of agents that are gone (their lock is free) into `own`."""
    adopted = 0
    for folder in parent.glob("agent-*"):
        if folder == own or not folder.is_dir():
            continue
        with (folder / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live agent owns it
            for path in folder.glob("*.zst"):
                path.rename(own / path.name)
                adopted += 1
            for path in folder.glob("*.tmp"):  # half-written by an agent that crashed
                path.unlink()
        if not any(p.suffix == ".rejected" for p in folder.iterdir()):
            with contextlib.suppress(OSError):
                (folder / ".lock").unlink()
                folder.rmdir()
    if adopted:
        log.warning("adopted %d windows left by earlier agents in %s", adopted, parent)
    return adopted
