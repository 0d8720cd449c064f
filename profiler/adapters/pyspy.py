"""Continuous sampling of a running Python process with py-spy, cut into consecutive windows.

py-spy runs outside the target process and only writes its output when a recording ends, so
continuous profiling is a chain of recordings. `WindowedSampler` keeps exactly one
`py-spy record` process responsible for every instant:

* each recording is open-ended and is ended with SIGINT, which makes py-spy write its file and
  exit 0 (SIGTERM would lose the file), so windows can be any length. (`--duration N` would not
  do: it takes whole seconds, and it really counts N x rate sample ticks, which are randomly
  spaced, so a "2 s" recording lasts anywhere from 1.8 to 2.2 s.)
* the next recorder is started a little before the current window is due to end (the lead is a
  running estimate of py-spy's start-up time, 10-40 ms), and the moment it has really started
  sampling, the current one gets its SIGINT. "Really started" is read from /proc: py-spy
  installs its SIGINT handler right after its sampling timer starts, so the SIGINT bit in
  `SigCgt` is both the proof that sampling has begun and the proof that a SIGINT will be handled
  rather than kill it. The hand-over is polled every 0.5 ms, so windows neither overlap nor
  leave a gap by more than about a millisecond, whatever py-spy's start-up time happens to be
  (benchmarks/window_gap.py measures it; on an overloaded machine, scheduling delays in py-spy
  and here can stretch it to a few ms).

py-spy samples at exponentially distributed intervals (a Poisson process, to avoid aliasing), so
a window's sample count is itself Poisson: two recordings of the same period differ by about
sqrt(N) samples even when the windows are perfect.

Linux only: liveness and readiness are read from /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "NotAPythonProcess",
    "PySpyError",
    "PySpyMissing",
    "SampledWindow",
    "TargetNotFound",
    "WindowedSampler",
    "check_target",
    "py_spy_path",
]


class PySpyError(Exception):
    """Base of this module's errors; str(e) is a message fit to show a user."""


class TargetNotFound(PySpyError):
    """The target PID does not exist (or has already exited)."""


class NotAPythonProcess(PySpyError):
    """The PID exists but py-spy cannot find a Python interpreter in it."""


class PySpyMissing(PySpyError):
    """The py-spy binary cannot be found."""


@dataclass(frozen=True)
class SampledWindow:
    """The samples py-spy took of the target between `start` and `end`."""

    start: datetime  # tz-aware UTC: when this window's sampling began (best estimate)
    end: datetime  # tz-aware UTC: when it ended; equal to the next window's start
    collapsed: str  # py-spy raw output: "frame;frame;frame count" lines, root first; "" if empty
    final: bool  # True for the last window (target exited or stop() requested)


# Ready detection polls /proc this often; it bounds the overlap between two windows.
_READY_POLL_S = 0.0005
# How often a running window checks for stop(), the target's exit and py-spy's exit.
_IDLE_POLL_S = 0.025
# py-spy retries attaching for a few hundred ms before giving up; this is a generous bound.
_READY_TIMEOUT_S = 15.0
# A py-spy started while the target changes a frame can fail at once reading its memory
# ("Failed to copy PyCodeObject: Bad address", seen in CI): started again, up to this many
# times, while the running recorder keeps sampling, instead of ending the agent.
_START_ATTEMPTS = 3
_TRANSIENT = ("Failed to get stack traces", "Bad address", "Failed to copy")

log = logging.getLogger("hotpath.agent")


def transient_failure(stderr: str) -> bool:
    """Whether py-spy's error is a racy read of the target's memory, worth a new start."""
    return any(marker in stderr for marker in _TRANSIENT)


# First guess of py-spy's start-up time, replaced by measurements as recorders start.
_INITIAL_LEAD_S = 0.05
_SIGINT_BIT = 1 << (signal.SIGINT - 1)
_PR_SET_PDEATHSIG = 1


def py_spy_path() -> str:
    """The py-spy next to sys.executable (this virtualenv's) if present, else the one on PATH."""
    beside = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    for name in ("py-spy", "py-spy.exe"):
        candidate = beside / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("py-spy")
    if found:
        return found
    raise PySpyMissing(
        f"py-spy was not found next to {sys.executable} or on PATH; "
        "install it with `pip install py-spy`"
    )


def _py_spy_env() -> dict[str, str]:
    # RUST_BACKTRACE=1 (set in some shells) turns every py-spy error into a page of backtrace;
    # keep stderr to the message so it can go into our exceptions.
    env = dict(os.environ)
    env["RUST_BACKTRACE"] = "0"
    env.pop("RUST_LIB_BACKTRACE", None)
    return env


def _target_alive(pid: int) -> bool:
    """True while `pid` is a running process (not gone, not a zombie waiting to be reaped)."""
    if pid <= 0:
        return False
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True  # exists but unreadable: not ours to judge
    # The state follows the parenthesised command name, which may itself contain ") ".
    state = data[data.rfind(b")") + 2 : data.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _error_summary(stderr: str, limit: int = 600) -> str:
    """py-spy's own error lines ("Error: ...", causes), without the noise around them."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Error")), None)
    keep = lines[start:] if start is not None else lines[-5:]
    keep = [line for line in keep if not line.startswith("Stack backtrace")]
    text = " | ".join(keep) or "(no error output)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attach_error(pid: int, stderr: str) -> PySpyError:
    """The exception for py-spy failing to attach to `pid`, judged from its stderr."""
    summary = _error_summary(stderr)
    if not _target_alive(pid):
        return TargetNotFound(f"no running process with PID {pid} (it has exited)")
    lowered = stderr.lower()
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return PySpyError(
            f"py-spy is not allowed to read process {pid}: run as root or give py-spy "
            f"CAP_SYS_PTRACE (py-spy said: {summary})"
        )
    if "python" in lowered:
        return NotAPythonProcess(
            f"process {pid} ({_process_name(pid)}) does not look like a Python process "
            f"py-spy can profile (py-spy said: {summary})"
        )
    return PySpyError(f"py-spy failed on process {pid}: {summary}")


def check_target(pid: int) -> None:
    """Raise TargetNotFound / NotAPythonProcess unless py-spy can sample `pid`.

    Takes one `py-spy dump` (tens of milliseconds; --nonblocking so the target is not paused).
    """
    if not _target_alive(pid):
        raise TargetNotFound(f"no running process with PID {pid}")
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            result = subprocess.run(
                [py_spy_path(), "dump", "--pid", str(pid), "--nonblocking"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                env=_py_spy_env(),
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PySpyError(f"py-spy dump of process {pid} did not finish in 60 s") from exc
        if result.returncode == 0:
            return
        # A racy read of a target that is busy changing frames (starting up, say): again.
        if attempt == _START_ATTEMPTS or not transient_failure(result.stderr):
            break
        log.warning("py-spy could not read process %s: trying again", pid)
        time.sleep(0.05)
    raise _attach_error(pid, result.stderr)


def _normalise_collapsed(text: str) -> str:
    """py-spy's raw output minus lines with an empty stack.

    py-spy writes a line " 1" (no frames) when it catches the interpreter between frames, e.g.
    while it shuts down; as a stack it would be a nameless root frame, so it is dropped.
    """
    lines = [line for line in text.splitlines() if line.rpartition(" ")[0].strip()]
    return "\n".join(lines) + "\n" if lines else ""


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes py-spy die with us, so it never samples on as an orphan.

    PR_SET_PDEATHSIG fires when the thread that started the child exits, so the thread
    iterating windows() must outlive the iteration (it does, unless the generator is handed
    between threads).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()  # not cached: a forked copy of this process has another pid

    def hook() -> None:
        # Runs in the child between fork and exec: only async-safe work, no imports.
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # parent already died before prctl took effect
            os._exit(1)

    return hook


class _Recorder:
    """One open-ended `py-spy record` process, writing raw output to a file."""

    def __init__(self, argv: list[str], output: Path, log: Path) -> None:
        self.output = output
        self.log = log
        self.spawned = time.monotonic()
        self.ready_at: float | None = None  # monotonic time sampling was seen to have begun
        self.ready_wall: float | None = None
        with log.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [*argv, "--output", str(output)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # status lines only
                stderr=log_file,  # a file, not a pipe: nothing to drain, can't block py-spy
                env=_py_spy_env(),
                # Own session: a Ctrl-C in our terminal reaches us (and stop()), not py-spy.
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def is_ready(self) -> bool:
        """True once py-spy samples and handles SIGINT (its handler is set once sampling runs)."""
        if self.ready_at is not None:
            return True
        try:
            with open(f"/proc/{self.proc.pid}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"SigCgt:"):
                        caught = int(line.split()[1], 16)
                        break
                else:
                    return False
        except (FileNotFoundError, ProcessLookupError):
            return False
        if not caught & _SIGINT_BIT:
            return False
        self.ready_at = time.monotonic()
        self.ready_wall = time.time()
        return True

    def interrupt(self) -> None:
        """End the recording, keeping its samples (py-spy writes its file on SIGINT).

        Called from stop(), so possibly from a signal handler or another thread: a bare kill().
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        """Discard the recording: SIGKILL and reap (no zombie is left)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def collapsed(self) -> str | None:
        """The recording's samples, or None if py-spy wrote no file."""
        try:
            return _normalise_collapsed(self.output.read_text(errors="replace"))
        except FileNotFoundError:
            return None

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def remove_files(self) -> None:
        for path in (self.output, self.log):
            with contextlib.suppress(OSError):
                path.unlink()


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


class WindowedSampler:
    """Samples `pid` with py-spy continuously and yields the samples window by window.

    `windows()` can be iterated once. `stop()` may be called at any time, from any thread or a
    signal handler, also before iterating (then the only window is an empty final one).
    """

    def __init__(
        self,
        pid: int,
        rate_hz: int = 100,
        window_s: float = 10.0,
        *,
        nonblocking: bool = True,
        by_function: bool = True,
        idle: bool = False,
        workdir: str | None = None,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        # Below a few start-up times a window would be mostly hand-over.
        if window_s < 0.2:
            raise ValueError(f"window_s must be at least 0.2 s, got {window_s}")
        self.pid = pid
        self.rate_hz = rate_hz
        self.window_s = window_s
        self.nonblocking = nonblocking
        self.by_function = by_function
        # Also sample threads that are waiting (py-spy --idle): wall-clock time, not CPU time.
        self.idle = idle
        self.workdir = workdir
        # State shared with stop(): only plain attribute reads and writes, which are atomic,
        # so stop() never needs a lock (a lock could deadlock inside a signal handler).
        self._active: _Recorder | None = None  # the recorder whose samples make the window
        self._stop_requested = False
        self._stop_wall: float | None = None
        self._stop_target: _Recorder | None = None
        self._started = False
        self._lead = _INITIAL_LEAD_S
        self._seq = 0
        # SIGINT makes py-spy wait for its next (exponentially spaced) tick before exiting.
        self._exit_timeout = 5.0 + 20.0 / rate_hz

    # -- public API ---------------------------------------------------------------------------

    def stop(self) -> None:
        """End the current window now; it is yielded with final=True and iteration ends."""
        if self._stop_requested:
            return
        self._stop_wall = time.time()
        active = self._active
        self._stop_target = active
        self._stop_requested = True
        if active is not None:
            active.interrupt()

    def windows(self) -> Iterator[SampledWindow]:
        """Consecutive windows (each start is the previous end) until the target exits or stop().

        The last window has final=True. Raises TargetNotFound / NotAPythonProcess / PySpyError
        (from the first next()) if py-spy cannot sample the target.
        """
        if self._started:
            raise RuntimeError("WindowedSampler.windows() can only be iterated once")
        self._started = True
        return self._windows()

    # -- internals ----------------------------------------------------------------------------

    def _windows(self) -> Iterator[SampledWindow]:
        if self._stop_requested:
            yield self._empty_final(self._stop_wall or time.time())
            return
        check_target(self.pid)
        owned_dir = None
        if self.workdir is None:
            owned_dir = tempfile.mkdtemp(prefix="hotpath-pyspy-")
            workdir = Path(owned_dir)
        else:
            workdir = Path(self.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        recorders: list[_Recorder] = []
        try:
            yield from self._run(workdir, recorders)
        finally:
            # Every path (normal end, exception, generator closed early) ends here: no py-spy
            # outlives the iteration and every one is reaped.
            self._active = None
            for recorder in recorders:
                recorder.kill()
                recorder.remove_files()
            if owned_dir is not None:
                shutil.rmtree(owned_dir, ignore_errors=True)

    def _argv(self) -> list[str]:
        argv = [py_spy_path(), "record", "--pid", str(self.pid), "--rate", str(self.rate_hz)]
        argv += ["--format", "raw"]
        if self.nonblocking:
            argv.append("--nonblocking")
        if self.idle:
            argv.append("--idle")
        if self.by_function:
            argv.append("--function")
        return argv

    def _spawn(self, workdir: Path, recorders: list[_Recorder]) -> _Recorder:
        self._seq += 1
        stem = f"pyspy-{self.pid}-{os.getpid()}-{self._seq:06d}"
        recorder = _Recorder(self._argv(), workdir / f"{stem}.txt", workdir / f"{stem}.err")
        recorders.append(recorder)
        return recorder

    def _empty_final(self, at: float) -> SampledWindow:
        return SampledWindow(start=_utc(at), end=_utc(at), collapsed="", final=True)

    def _start(
        self, workdir: Path, recorders: list[_Recorder], active: _Recorder | None
    ) -> tuple[_Recorder, str]:
        """A new recorder and how its start went (`_await_ready`), started again after a
        transient failure (`transient_failure`) while the target lives."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            recorder = self._spawn(workdir, recorders)
            outcome = self._await_ready(recorder, active)
            if (
                outcome != "failed"
                or attempt == _START_ATTEMPTS
                or not _target_alive(self.pid)
                or not transient_failure(recorder.stderr())
            ):
                break
            log.warning(
                "py-spy could not read process %s (%s): starting it again",
                self.pid,
                _error_summary(recorder.stderr()),
            )
        return recorder, outcome

    def _run(self, workdir: Path, recorders: list[_Recorder]) -> Iterator[SampledWindow]:
        first, outcome = self._start(workdir, recorders, None)
        if outcome == "stop":
            first.kill()
            yield self._empty_final(self._stop_wall or time.time())
            return
        if outcome != "ready":
            first.kill()
            if outcome == "failed" and not _target_alive(self.pid):
                yield self._empty_final(time.time())  # target exited while py-spy attached
                return
            raise self._start_failure(first, outcome)
        assert first.ready_at is not None and first.ready_wall is not None
        self._lead = first.ready_at - first.spawned
        active, start_wall = first, first.ready_wall
        self._active = active
        due = first.ready_at + self.window_s  # nominal end of the current window (monotonic)

        while True:
            # Let the active recorder sample until its successor has to be started.
            outcome = self._watch(active, due - self._lead)
            if outcome != "due":
                yield self._finish(active, start_wall, stopped=outcome == "stop")
                return

            successor, outcome = self._start(workdir, recorders, active)
            if outcome != "ready":
                if outcome == "failed" and _target_alive(self.pid):
                    raise self._start_failure(successor, outcome)
                if outcome == "timeout":
                    raise self._start_failure(successor, outcome)
                # stop(), or the target/py-spy exited: the active window is the last one.
                successor.kill()
                yield self._finish(active, start_wall, stopped=outcome == "stop")
                return

            # Hand-over: the successor is sampling, so end the active window right now.
            boundary_wall = time.time()
            self._active = successor
            active.interrupt()
            assert successor.ready_at is not None
            self._lead = 0.7 * self._lead + 0.3 * (successor.ready_at - successor.spawned)
            if self._stop_requested and self._stop_target is active:
                # stop() came just before the hand-over, so it ended `active`; everything the
                # successor has seen is after the stop.
                successor.kill()
                yield self._finish(active, start_wall, stopped=True)
                return
            window = self._collect(active, start_wall, boundary_wall)
            recorders.remove(active)
            active, start_wall = successor, boundary_wall
            due += self.window_s
            # A consumer that held the generator past a window's end makes that window longer;
            # re-anchor instead of following it with a burst of short windows.
            if due < successor.ready_at + self.window_s / 2:
                due = successor.ready_at + self.window_s
            yield window

    def _await_ready(self, recorder: _Recorder, active: _Recorder | None) -> str:
        """Poll until `recorder` samples: "ready", "stop", "exited", "failed" or "timeout"."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            if recorder.is_ready():
                return "ready"
            if self._stop_requested:
                return "stop"
            if active is not None and (active.poll() is not None or not _target_alive(self.pid)):
                return "exited"
            if recorder.poll() is not None:
                return "failed"
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(_READY_POLL_S)

    def _watch(self, active: _Recorder, until: float) -> str:
        """Wait until monotonic `until`: "due", or early with "stop" / "exited"."""
        while True:
            if self._stop_requested:
                return "stop"
            if active.poll() is not None or not _target_alive(self.pid):
                return "exited"
            remaining = until - time.monotonic()
            if remaining <= 0:
                return "due"
            time.sleep(min(remaining, _IDLE_POLL_S))

    def _start_failure(self, recorder: _Recorder, outcome: str) -> PySpyError:
        if outcome == "timeout":
            recorder.kill()
            return PySpyError(
                f"py-spy did not start sampling process {self.pid} within {_READY_TIMEOUT_S:.0f} s"
                f" ({_error_summary(recorder.stderr())})"
            )
        return _attach_error(self.pid, recorder.stderr())

    def _collect(self, recorder: _Recorder, start_wall: float, end_wall: float) -> SampledWindow:
        """Wait for an interrupted recorder to write its file; the window it recorded."""
        returncode = recorder.wait(self._exit_timeout)
        if returncode is None:
            recorder.kill()
            raise PySpyError(
                f"py-spy (pid {recorder.proc.pid}) did not exit {self._exit_timeout:.0f} s after "
                "SIGINT"
            )
        collapsed = recorder.collapsed()
        recorder.remove_files()
        if collapsed is None:
            raise PySpyError(
                f"py-spy exited with status {returncode} without writing its output "
                f"({_error_summary(recorder.stderr())})"
            )
        return SampledWindow(_utc(start_wall), _utc(end_wall), collapsed, final=False)

    def _finish(self, recorder: _Recorder, start_wall: float, *, stopped: bool) -> SampledWindow:
        """The last window: after stop(), or after the target (and so py-spy) exited."""
        self._active = None
        if stopped:
            end_wall = max(start_wall, self._stop_wall or time.time())
            recorder.interrupt()  # normally done by stop() already; harmless twice
        else:
            end_wall = time.time()
            # py-spy notices the exit at its next sample; if it has not yet, tell it.
            if recorder.wait(1.0 + 5.0 / self.rate_hz) is None:
                recorder.interrupt()
        returncode = recorder.wait(self._exit_timeout)
        if returncode is None:
            recorder.kill()
        collapsed = recorder.collapsed()
        stderr = recorder.stderr()
        recorder.remove_files()
        if not stopped and self._target_still_alive():
            # py-spy ended by itself while the target runs on: that is a failure, not an end.
            raise PySpyError(
                f"py-spy stopped sampling process {self.pid} unexpectedly (exit status "
                f"{returncode}): {_error_summary(stderr)}"
            )
        return SampledWindow(_utc(start_wall), _utc(end_wall), collapsed or "", final=True)

    def _target_still_alive(self) -> bool:
        # py-spy sees the exit (its reads fail once the memory is gone) slightly before /proc
        # shows a zombie; give the kernel a moment before calling py-spy's exit a failure.
        deadline = time.monotonic() + 0.5
        while _target_alive(self.pid):
            if time.monotonic() > deadline:
                return True
            time.sleep(0.01)
        return False
