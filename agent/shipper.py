"""Shipping windows to the server from a background thread, through a bounded on-disk spool.

Every window is written to the spool first (write, then rename: never half a file) and a
thread sends spooled windows oldest first, deleting each once the server has it. So sampling
never waits for the network, a server that is away loses nothing while the spool has room
(windows wait on disk, and an agent restarted with the same spool replays them), and the
server sees windows in order. A window keeps its idempotency key for life, so a retry of a
window whose response was lost is not counted twice.

The agent never stops profiling because of its disk or the server:
- The spool is capped (bytes and files, per agent folder); when a new window would not fit,
  the oldest spooled windows are deleted first, counted and logged.
- A spool that cannot be written (disk full, read-only, gone) means windows are held in a
  small in-memory queue and sent directly (oldest dropped and counted when it overflows);
  every new window tries the disk first, so once the disk works again windows are spooled
  again, the memory queue with them. Each change of state is logged once.
- A window the server refuses for good (a 4xx, or the same 5xx `max_server_errors` times in
  a row) is moved to `quarantine/` beside the agent folders with a `.reason` file, and the
  windows behind it go on. A refused token (401/403) or a URL without the ingest route
  (404/405/3xx) is about the agent's set-up, not the window: windows stay spooled, with
  backoff, until it is fixed.

Several agents may share one spool folder (one per service): each works in a folder of its
own, held with an flock, and adopts the folders of agents that are gone (lock free), so no
two agents send the same file and nothing an earlier agent left behind is stranded. The
quarantine folder is shared by the agents of the service, so adoption leaves it in place;
`*.rejected` files of agents from before the quarantine are moved into it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import zstandard

from hotpath.profiler.formats.window import Window

log = logging.getLogger("hotpath.agent")

# Windows dropped since the last delivered one, sent with the next (server/metrics.py counts
# them as hotpath_agent_windows_dropped_total).
DROPPED_HEADER = "X-Hotpath-Agent-Dropped"
MAX_BACKOFF_S = 10.0
HOT_PATH_LIMIT = "max_hot_paths_per_service"  # the server's 422 for names past its limit
REFUSED_HOT_PATHS_S = 600.0  # then the refused names are offered again
DEFAULT_MAX_SPOOL_BYTES = 256 * 2**20
DEFAULT_MAX_SPOOL_FILES = 10_000  # 27 hours of 10 s windows
DEFAULT_MAX_SERVER_ERRORS = 20  # about 3 minutes of backoff for one window
DEFAULT_MEMORY_WINDOWS = 64
DEFAULT_MEMORY_BYTES = 32 * 2**20
QUARANTINE = "quarantine"

# "Later", whatever the window: 503 is the server's own answer while its database is away.
RETRY_LATER = {408, 425, 429, 503}
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class Refusal:
    """Why the server will never take a window."""

    status: int
    body: str
    why: str  # e.g. "HTTP 422" or "HTTP 500 20 times in a row"

    def reason_file(self, server: str) -> str:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return (
            f"status: {self.status}\nwhy: {self.why}\ntime: {now}\nserver: {server}\n"
            f"body: {self.body}\n"
        )


class Shipper:
    def __init__(
        self,
        server: str,
        spool_dir: Path,
        *,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
        token: str | None = None,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        max_spool_files: int = DEFAULT_MAX_SPOOL_FILES,
        max_server_errors: int = DEFAULT_MAX_SERVER_ERRORS,
        memory_windows: int = DEFAULT_MEMORY_WINDOWS,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        self.server = server.rstrip("/")
        self.url = self.server + "/api/v1/windows"
        self.parent = spool_dir
        self.spool_dir = spool_dir / f"agent-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.quarantine_dir = spool_dir / QUARANTINE
        self.max_bytes, self.max_files = max_spool_bytes, max_spool_files
        self.max_server_errors = max_server_errors
        self.memory_windows, self.memory_bytes = memory_windows, memory_bytes
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.compressor = zstandard.ZstdCompressor(level=3)

        self.adopted = 0  # windows taken over from agents that are gone
        self.shipped = 0  # windows the server acknowledged
        self.deferred = 0  # windows that had to wait for the server
        self.quarantined = 0  # windows the server refused for good
        self.quarantine_pruned = 0  # quarantined windows deleted to keep the folder capped
        self.dropped_full = 0  # oldest spooled windows deleted to keep the spool capped
        self.dropped_memory = 0  # windows lost from the in-memory queue (disk unusable)
        self._reported_drops = (0, 0)  # of the two above, told to the server
        # Hot-path names the service has no room for (max_hot_paths_per_service): left out of
        # the windows sent, for a while.
        self._refused_hot_paths: set[str] = set()
        self._refused_hot_paths_until = 0.0
        self.sent_direct = 0  # windows shipped from memory, never spooled

        # Everything below is guarded by _mutex: submit() and the shipping thread share it.
        self._mutex = threading.Lock()
        self._lock: IO[str] | None = None  # the flock on our folder, once it exists
        self._on_disk: dict[str, int] = {}  # spooled window name -> bytes
        self._disk_bytes = 0
        self._in_memory: dict[str, bytes] = {}  # insertion order is window order
        self._memory_used = 0
        # Done with, but the file could not be removed or set aside (read-only disk):
        # name -> None (shipped) or the reason file text (refused).
        self._stuck: dict[str, str | None] = {}
        self._in_flight: str | None = None  # never evicted while it is being sent
        self._waited: set[str] = set()
        self._disk_error: str | None = None
        self._full = False
        self._memory_full = False
        # Shipping thread only.
        self._errors: dict[str, tuple[int, int]] = {}  # name -> (5xx status, times in a row)
        self._server_trouble: str | None = None

        self._closed = False
        self._left = 0
        self._wake = threading.Event()
        self._close_requested = threading.Event()
        self._closing = False
        self._deadline = float("inf")
        with self._mutex:
            self._claim()
        self._thread = threading.Thread(target=self._run, name="hotpath-shipper", daemon=True)
        self._thread.start()

    @property
    def rejected(self) -> int:
        """The older name of `quarantined`."""
        return self.quarantined

    def submit(self, window: Window) -> None:
        """Spool `window` (or hold it in memory if the disk fails) and let the shipping thread
        send it; never blocks on the network, never raises for the disk."""
        body = self.compressor.compress(window.model_dump_json().encode())
        # The name sorts by window start, so the spool replays in order.
        name = f"{int(window.start.timestamp() * 1e6):020d}-{window.idempotency_key}"
        with self._mutex:
            if self._server_trouble is not None:
                self._waited.add(name)  # it will wait for the server too
            if self._spool(name, body):
                self._flush_memory()
            else:
                self._hold(name, body)
        self._wake.set()

    def close(self, timeout_s: float = 15.0) -> int:
        """Try to send what is waiting for up to `timeout_s`; returns the windows left on disk
        for the next agent (windows held in memory are spooled if the disk allows, else lost
        and counted in `dropped_memory`). Safe to call more than once."""
        if self._closed:
            return self._left
        self._closed = True
        self._deadline = time.monotonic() + timeout_s
        self._closing = True
        self._close_requested.set()
        self._wake.set()
        self._thread.join(timeout_s + 5)
        self.client.close()
        with self._mutex:
            self._flush_memory()
            if self._in_memory:
                lost = len(self._in_memory)
                self.dropped_memory += lost
                log.error(
                    "%d windows held in memory are lost: the spool cannot be written (%s)",
                    lost,
                    self._disk_error,
                )
                self._in_memory.clear()
            self._left = len(self._on_disk) - len(self._stuck)
            self._release()
        return self._left

    def pending(self) -> list[Path]:
        """The spooled windows still to send, oldest first."""
        with self._mutex:
            names = sorted(n for n in self._on_disk if n not in self._stuck)
        return [self.spool_dir / f"{name}.zst" for name in names]

    # -- the spool folder ---------------------------------------------------------------------

    def _claim(self) -> bool:
        """Create and lock our folder (once), then adopt orphans; False if the disk refuses."""
        if self._lock is not None:
            return True
        # The folder is locked before it gets the name other agents look for, so no agent
        # starting at the same moment can take it for an orphan.
        staging = self.parent / f".{self.spool_dir.name}"
        lock = None
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir(exist_ok=True)
            # Read-only: an flock needs no more, and a file open for writing would keep the
            # disk from being remounted read-only (as a failing disk is).
            (staging / ".lock").touch()
            lock = (staging / ".lock").open()
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            staging.rename(self.spool_dir)
        except OSError as exc:
            if lock is not None:
                lock.close()
            with suppress(OSError):
                (staging / ".lock").unlink(missing_ok=True)
                staging.rmdir()
            self._disk_failed(exc)
            return False
        self._lock = lock
        self._adopt()
        try:
            self._make_room(0)
        except OSError as exc:
            self._disk_failed(exc)
        return True

    def _release(self) -> None:
        if self._lock is None:
            return
        with suppress(OSError):
            if not any(p.name != ".lock" for p in self.spool_dir.iterdir()):
                (self.spool_dir / ".lock").unlink()
                self.spool_dir.rmdir()
        self._lock.close()
        self._lock = None

    def _adopt(self) -> None:
        for folder in sorted(self.parent.glob("agent-*")):
            if folder == self.spool_dir or not folder.is_dir():
                continue
            try:
                self._adopt_folder(folder)
            except OSError as exc:
                log.warning("could not adopt the windows in %s: %s", folder, exc)
        if self.adopted:
            log.warning("adopted %d windows of earlier agents in %s", self.adopted, self.parent)

    def _adopt_folder(self, folder: Path) -> None:
        """Move the windows of an agent that is gone (its lock is free) into our folder."""
        with (folder / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live agent owns it
            for path in folder.glob("*.zst"):
                target = self.spool_dir / path.name
                path.rename(target)
                self._index_add(path.stem, target.stat().st_size)
                self.adopted += 1
            for path in folder.glob("*.tmp"):  # half-written by an agent that crashed
                path.unlink()
            for path in folder.glob("*.rejected"):  # refused before the quarantine existed
                note = "why: refused by an earlier agent (kept as *.rejected, no reason kept)\n"
                self._set_aside(path.stem, path, None, note)
        with suppress(OSError):
            (folder / ".lock").unlink()
            folder.rmdir()

    # -- spool, memory and their caps (called with _mutex held) -------------------------------

    def _spool(self, name: str, body: bytes) -> bool:
        """Write one window to our folder; False if the disk would not take it (it was not
        counted anywhere yet). A window bigger than the whole cap is dropped (True)."""
        if not self._claim():
            return False
        tmp = self.spool_dir / f"{name}.tmp"
        try:
            if not self._make_room(len(body)):
                return True
            tmp.write_bytes(body)
            tmp.rename(self.spool_dir / f"{name}.zst")
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            self._disk_failed(exc)
            return False
        self._index_add(name, len(body))
        self._disk_works()
        return True

    def _make_room(self, incoming: int) -> bool:
        """Delete the oldest spooled windows until one of `incoming` bytes fits in the caps
        (0: just enforce them); False, counted as dropped, if it can never fit."""
        if incoming > self.max_bytes:
            self.dropped_full += 1
            log.error("a window of %d bytes is over the spool's cap: dropped", incoming)
            return False
        extra = 1 if incoming else 0

        def fits() -> bool:
            return (
                len(self._on_disk) + extra <= self.max_files
                and self._disk_bytes + incoming <= self.max_bytes
            )

        if fits():
            if self._full and incoming:
                self._full = False
                log.warning("the spool %s has room again", self.spool_dir)
            return True
        # Files already shipped or set aside go first: they cost nothing to lose.
        dropped = 0
        for name in sorted(self._on_disk, key=lambda n: (n not in self._stuck, n)):
            if fits():
                break
            if name == self._in_flight:
                continue
            (self.spool_dir / f"{name}.zst").unlink(missing_ok=True)
            if name in self._stuck:
                del self._stuck[name]
            else:
                dropped += 1
            self._index_drop(name)
        self.dropped_full += dropped
        if dropped and not self._full:
            self._full = True
            log.error(
                "the spool %s is full (cap %d windows, %.1f MiB): the oldest windows are "
                "deleted to make room for new ones",
                self.spool_dir,
                self.max_files,
                self.max_bytes / 2**20,
            )
        return True

    def _hold(self, name: str, body: bytes) -> None:
        """Keep a window in memory for direct sending; the oldest go when the queue is full."""
        self._in_memory[name] = body
        self._memory_used += len(body)
        for oldest in list(self._in_memory):
            if len(self._in_memory) <= self.memory_windows and (
                self._memory_used <= self.memory_bytes
            ):
                break
            if oldest == self._in_flight:
                continue
            self._memory_drop(oldest)
            self.dropped_memory += 1
            if not self._memory_full:
                self._memory_full = True
                log.error(
                    "the in-memory queue is full (%d windows): the oldest windows are dropped "
                    "until the spool can be written or the server takes them",
                    self.memory_windows,
                )

    def _flush_memory(self) -> None:
        """Spool the windows held in memory, oldest first, while the disk takes them."""
        for name in list(self._in_memory):
            if not self._spool(name, self._in_memory[name]):
                return
            self._memory_drop(name)

    def _disk_failed(self, exc: OSError) -> None:
        reason = f"{exc.strerror or exc}"
        if self._disk_error is None:
            log.error(
                "cannot write the spool %s (%s): windows are sent directly from memory "
                "(at most %d held) until it can be written again",
                self.spool_dir,
                reason,
                self.memory_windows,
            )
        self._disk_error = reason

    def _disk_works(self) -> None:
        if self._disk_error is None:
            return
        self._disk_error = None
        self._memory_full = False
        log.warning("the spool %s can be written again: windows are spooled again", self.spool_dir)
        for name, reason in list(self._stuck.items()):
            path = self.spool_dir / f"{name}.zst"
            with suppress(OSError):
                if reason is None:
                    path.unlink(missing_ok=True)
                else:
                    self._set_aside(name, path, None, reason)
                self._stuck.pop(name)
                self._index_drop(name)

    def _set_aside(self, name: str, source: Path | None, body: bytes | None, reason: str) -> Path:
        """Move a refused window (a file, or bytes held in memory) into the quarantine with its
        reason; raises OSError if the disk will not have it."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{name}.zst"
        if source is not None:
            source.rename(target)
        elif body is not None:
            target.write_bytes(body)
        try:
            (self.quarantine_dir / f"{name}.reason").write_text(reason)
        except OSError as exc:  # the window is aside; only its note is missing
            log.warning("could not write the reason for %s: %s", target, exc)
        self._prune_quarantine()
        return target

    def _prune_quarantine(self) -> None:
        """The quarantine has the spool's caps too: its oldest windows go first."""
        sizes: list[tuple[Path, int]] = []
        for path in sorted(self.quarantine_dir.glob("*.zst")):
            with suppress(FileNotFoundError):  # another agent of the service pruned it
                sizes.append((path, path.stat().st_size))
        count, total = len(sizes), sum(size for _, size in sizes)
        pruned = 0
        for path, size in sizes:
            if count <= self.max_files and total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            path.with_suffix(".reason").unlink(missing_ok=True)
            count, total, pruned = count - 1, total - size, pruned + 1
        if pruned:
            self.quarantine_pruned += pruned
            log.warning(
                "deleted the %d oldest windows of the full quarantine %s",
                pruned,
                self.quarantine_dir,
            )

    def _index_add(self, name: str, size: int) -> None:
        self._disk_bytes += size - self._on_disk.get(name, 0)
        self._on_disk[name] = size

    def _index_drop(self, name: str) -> None:
        self._disk_bytes -= self._on_disk.pop(name, 0)
        self._waited.discard(name)

    def _memory_drop(self, name: str) -> None:
        self._memory_used -= len(self._in_memory.pop(name))
        self._waited.discard(name)

    # -- the shipping thread ------------------------------------------------------------------

    def _queue(self) -> list[str]:
        with self._mutex:
            return sorted([*(n for n in self._on_disk if n not in self._stuck), *self._in_memory])

    def _run(self) -> None:
        backoff = 0.0
        while True:
            names = self._queue()
            if self._closing and (not names or time.monotonic() > self._deadline):
                return
            if not names:
                self._wake.wait()
                self._wake.clear()
                continue
            for name in names:
                if self._closing and time.monotonic() > self._deadline:
                    break
                try:
                    delivered = self._ship(name)
                except Exception:  # never let the thread die: windows would pile up unsent
                    log.exception("shipping window %s failed", name)
                    delivered = False
                if not delivered:
                    backoff = min(MAX_BACKOFF_S, max(self.backoff_s, backoff * 2))
                    break
                backoff = 0.0
            if backoff:
                # Wait out the whole backoff (new windows only wake the thread when the server
                # is up), but not past the closing deadline; close() cuts the wait short.
                pause = min(backoff, max(0.0, self._deadline - time.monotonic()))
                if self._closing:
                    time.sleep(pause)
                else:
                    self._close_requested.wait(pause)

    def _ship(self, name: str) -> bool:
        """Send one window; False when it has to wait (the others behind it wait too)."""
        body = self._take(name)
        if body is None:
            return True  # gone meanwhile (dropped, or the file vanished)
        answer: bool | Refusal = False
        try:
            answer = self._send(name, body)
        finally:
            with self._mutex:
                self._in_flight = None
                if answer is True:
                    self._shipped(name)
                elif answer is False:
                    self._waited.update(self._on_disk, self._in_memory)
                else:
                    self._quarantine(name, body, answer)
        return answer is not False

    def _take(self, name: str) -> bytes | None:
        with self._mutex:
            if name in self._in_memory:
                self._in_flight = name
                return self._in_memory[name]
            if name not in self._on_disk or name in self._stuck:
                return None
            try:
                body = (self.spool_dir / f"{name}.zst").read_bytes()
            except OSError as exc:
                log.error("cannot read the spooled window %s (%s): skipped", name, exc)
                self._index_drop(name)
                return None
            self._in_flight = name
            return body

    def _shipped(self, name: str) -> None:
        self.shipped += 1
        if name in self._waited:
            self.deferred += 1
        if name in self._in_memory:
            self.sent_direct += 1
            self._memory_drop(name)
        elif name in self._on_disk:
            try:
                (self.spool_dir / f"{name}.zst").unlink(missing_ok=True)
            except OSError as exc:
                self._stuck[name] = None
                self._disk_failed(exc)
            else:
                self._index_drop(name)

    def _quarantine(self, name: str, body: bytes, refusal: Refusal) -> None:
        self.quarantined += 1
        reason = refusal.reason_file(self.server)
        on_disk = name in self._on_disk
        try:
            source = self.spool_dir / f"{name}.zst" if on_disk else None
            target: Path | str = self._set_aside(name, source, body, reason)
        except OSError as exc:
            target = f"nowhere: the quarantine cannot be written ({exc.strerror or exc})"
            if on_disk:
                self._stuck[name] = reason
        if name in self._in_memory:
            self._memory_drop(name)
        elif on_disk and name not in self._stuck:
            self._index_drop(name)
        log.error(
            "the server refused window %s for good (%s: %s); set aside in %s, the windows "
            "behind it go on",
            name,
            refusal.why,
            refusal.body,
            target,
        )

    def _send(self, name: str, body: bytes, again: bool = True) -> bool | Refusal:
        """True: stored; False: try again later; a Refusal: never."""
        if self._refused_hot_paths:
            body = self._without_refused_hot_paths(body) or body
        headers = {"Content-Encoding": "zstd", "Content-Type": "application/json"}
        # Windows dropped since the last delivery ride on the next one, outside its body (the
        # spooled bytes stay as they are): the server counts them once, with a stored window.
        unreported = (
            self.dropped_full - self._reported_drops[0],
            self.dropped_memory - self._reported_drops[1],
        )
        if any(unreported):
            headers[DROPPED_HEADER] = f"spool_full={unreported[0]},memory_full={unreported[1]}"
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            self._trouble("unreachable", f"server unreachable ({exc})")
            return False
        status = response.status_code
        if status < 500 or status in RETRY_LATER:
            self._errors.pop(name, None)  # "in a row": any other answer ends a run of 5xx
        if status == 422 and again and self._learn_refused_hot_paths(response):
            # The service has no room for some of the window's hot-path names: the window
            # goes again without them (its samples kept), and so do the next ones.
            return self._send(name, body, again=False)
        if status in (200, 201):
            self._trouble(None, "")
            self._reported_drops = (
                self._reported_drops[0] + unreported[0],
                self._reported_drops[1] + unreported[1],
            )
            return True
        excerpt = response.text[:EXCERPT_CHARS]
        if status in (401, 403):
            self._trouble("token", f"the server refused the token: HTTP {status}: {excerpt}")
            return False
        if status in (404, 405) or 300 <= status < 400:
            message = f"{self.url} answered HTTP {status}: is the server address right?"
            self._trouble("address", message)
            return False
        if status in RETRY_LATER:
            self._trouble(f"http {status}", f"server answered HTTP {status}")
            return False
        if status >= 500:
            seen, times = self._errors.get(name, (status, 0))
            times = times + 1 if seen == status else 1
            self._errors[name] = (status, times)
            if times >= self.max_server_errors:
                del self._errors[name]
                return Refusal(status, excerpt, f"HTTP {status} {times} times in a row")
            self._trouble(f"http {status}", f"server answered HTTP {status}: {excerpt}")
            return False
        return Refusal(status, excerpt, f"HTTP {status}")

    def _learn_refused_hot_paths(self, response: httpx.Response) -> bool:
        """Whether the 422 is the hot-path names limit (then its names are remembered for
        `REFUSED_HOT_PATHS_S`, after which the agent offers them again)."""
        try:
            answer = response.json()
        except ValueError:
            return False
        if not isinstance(answer, dict) or answer.get("limit") != HOT_PATH_LIMIT:
            return False
        names = {str(n) for n in answer.get("refused_hot_paths") or []}
        if not names:
            return False
        now = time.monotonic()
        if now > self._refused_hot_paths_until or len(self._refused_hot_paths) > 10_000:
            self._refused_hot_paths = set()
            self._refused_hot_paths_until = now + REFUSED_HOT_PATHS_S
        if not names <= self._refused_hot_paths:
            log.warning(
                "the server has no room for hot paths %s (%s): windows go without them",
                ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else ""),
                answer.get("detail", HOT_PATH_LIMIT),
            )
        self._refused_hot_paths |= names
        return True

    def _without_refused_hot_paths(self, body: bytes) -> bytes | None:
        """The zstd window `body` without the refused hot paths (None: it has none)."""
        if time.monotonic() > self._refused_hot_paths_until:
            self._refused_hot_paths = set()  # the service may have room again: offer them
            return None
        window = json.loads(zstandard.ZstdDecompressor().decompress(body))
        hot_paths = window.get("hot_paths") or []
        kept = [h for h in hot_paths if h.get("name") not in self._refused_hot_paths]
        if len(kept) == len(hot_paths):
            return None
        window["hot_paths"] = kept
        # a compressor of its own: `self.compressor` belongs to the sampling thread (submit)
        return zstandard.ZstdCompressor(level=3).compress(json.dumps(window).encode())

    def _trouble(self, kind: str | None, message: str) -> None:
        """Log the server's state when it changes, not on every retry."""
        if kind == self._server_trouble:
            return
        if kind is None:
            log.warning("the server takes windows again")
        else:
            log.error("%s: windows wait in %s", message, self.spool_dir)
        self._server_trouble = kind
