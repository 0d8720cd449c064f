"""Shipping windows to the server: compressed, retried, spooled to disk while the server is away.

A window keeps its idempotency key for life, so a retry of a window the server did store (the
response was lost) is not counted twice. Spooled windows are replayed oldest first before any
new one, so the server sees them in order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import zstandard

from profiler.formats.window import Window

log = logging.getLogger("hotpath.agent")

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class Rejected(Exception):
    """The server refused a window for good (a 4xx): resending it cannot help."""


class Shipper:
    def __init__(
        self,
        server: str,
        spool_dir: Path,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = server.rstrip("/") + "/api/v1/windows"
        self.spool_dir = spool_dir
        self.attempts, self.backoff_s = attempts, backoff_s
        self.client = httpx.Client(timeout=timeout_s)
        self.compressor = zstandard.ZstdCompressor(level=3)
        self.shipped = 0
        self.spooled = 0

    def ship(self, window: Window) -> bool:
        """Send `window` (after any spooled ones); spool it if the server is unreachable.

        Returns True when the server has it.
        """
        body = self.compressor.compress(window.model_dump_json().encode())
        if self.replay_spool() and self._send(body, window.idempotency_key):
            return True
        self._spool(body, window)
        return False

    def replay_spool(self) -> bool:
        """Send spooled windows oldest first; True when the spool is empty afterwards."""
        for path in sorted(self.spool_dir.glob("*.zst")):
            try:
                ok = self._send(path.read_bytes(), path.stem)
            except Rejected as exc:
                log.error("the server refused spooled window %s for good: %s", path.name, exc)
                path.rename(path.with_suffix(".rejected"))
                continue
            if not ok:
                return False
            path.unlink()
        return True

    def close(self) -> None:
        self.client.close()

    def _send(self, body: bytes, key: str) -> bool:
        for attempt in range(self.attempts):
            try:
                response = self.client.post(
                    self.url,
                    content=body,
                    headers={"Content-Encoding": "zstd", "Content-Type": "application/json"},
                )
            except httpx.TransportError as exc:
                log.warning("window %s: server unreachable (%s)", key, exc)
            else:
                if response.status_code in (200, 201):
                    self.shipped += 1
                    return True
                if response.status_code not in RETRYABLE_STATUS:
                    raise Rejected(f"HTTP {response.status_code}: {response.text[:300]}")
                log.warning("window %s: HTTP %s, will retry", key, response.status_code)
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff_s * 2**attempt)
        return False

    def _spool(self, body: bytes, window: Window) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        # Name sorts by window start, so replay keeps the order; write-then-rename keeps a
        # crash from leaving half a file that would later be replayed.
        name = f"{int(window.start.timestamp() * 1e6):020d}-{window.idempotency_key}"
        tmp = self.spool_dir / f"{name}.tmp"
        tmp.write_bytes(body)
        tmp.rename(self.spool_dir / f"{name}.zst")
        self.spooled += 1
        log.warning("server away: window %s spooled to %s", window.idempotency_key, self.spool_dir)
