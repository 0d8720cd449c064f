"""memray attached to a live Python process on demand, with the target's pause measured.

`memray attach` injects memray into the target through gdb: gdb ptrace-stops every thread of
the target, loads symbols, plants breakpoints, lets the target run to the next malloc, loads
memray's injector library and starts the tracker; `memray detach` does the same to stop it
(the tracker then writes the rest of its file from inside the target). So the capture file is
written by the target itself, and the target pays a pause at each end.

The pause is measured from outside, by polling the target's main thread's state in
/proc/PID/task/PID/stat while gdb runs: 't' (tracing stop) is the thread frozen by the tracer.
The pause reported and stored is the span from the first stop to the end of the last: between
gdb's stops the target runs the code gdb makes it call (memray's injector and start-up, or its
tear-down), not its own work, so the longest single stop alone understated what a target feels
by about a third (benchmarks/memory_capture.py measures the pause from inside a target beside
this figure). The resolution is the poll interval (`POLL_S`, 0.5 ms, plus this thread's
scheduling delay: about 1 ms on a quiet machine).

Linux only: liveness, owner and thread state are read from /proc.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AttachFailed",
    "CaptureFile",
    "GdbMissing",
    "MemrayCapture",
    "MemrayError",
    "MemrayMissing",
    "MemrayMissingInTarget",
    "NotAPythonProcess",
    "Pause",
    "PtraceNotPermitted",
    "TargetExited",
    "TargetNotFound",
    "check_target",
]

POLL_S = 0.0005
GDB_TIMEOUT_S = 60.0  # memray's gdb script takes ~1 s; symbol loading can take more
_ALIVE_POLL_S = 0.05


class MemrayError(Exception):
    """Base of this module's errors; str(e) is a message fit to show a user."""


class TargetNotFound(MemrayError):
    """The PID does not exist (or has exited)."""


class NotAPythonProcess(MemrayError):
    """The PID runs no Python interpreter memray can attach to."""


class PtraceNotPermitted(MemrayError):
    """The kernel will not let this process trace the target."""


class GdbMissing(MemrayError):
    """gdb, which memray attaches through, is not installed."""


class MemrayMissing(MemrayError):
    """memray is not importable here (the agent's environment)."""


class MemrayMissingInTarget(MemrayError):
    """The target's own environment cannot import memray, which the attach runs in it."""


class TargetExited(MemrayError):
    """The target exited during the capture: the capture is cut short and refused."""


class AttachFailed(MemrayError):
    """memray's attach or detach failed for another reason (its message is kept)."""


@dataclass(frozen=True)
class Pause:
    """How long the target's main thread was stopped by the tracer during one gdb run."""

    span_ms: float  # from the first stop to the end of the last: the pause we report
    longest_ms: float  # the longest continuous stop
    total_ms: float  # all stops added up
    stops: int  # separate stops seen
    resolution_ms: float  # the median time between two polls: each figure is +- this
    gdb_ms: float  # the whole gdb run, wall clock

    def __str__(self) -> str:
        return (
            f"{self.span_ms:.0f} ms ({self.stops} stops, the longest {self.longest_ms:.0f} ms, "
            f"+-{self.resolution_ms:.1f} ms)"
        )


@dataclass(frozen=True)
class CaptureFile:
    """A finished capture: the file memray wrote and the pauses it cost."""

    path: Path
    pid: int
    attach: Pause
    detach: Pause


def _state(pid: int, tid: int) -> str | None:
    """The thread's state letter, None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/task/{tid}/stat").read_bytes()
    except OSError:
        return None
    end = data.rfind(b")")  # the command name may hold ") "
    return data[end + 2 : end + 3].decode()


def alive(pid: int) -> bool:
    return _state(pid, pid) not in (None, "Z", "X", "x")


def _uids(pid: int) -> tuple[int, ...]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:4])  # real, effective, saved
    return ()


def owner(pid: int) -> tuple[int, int]:
    """The target's (uid, gid), from /proc/PID."""
    st = os.stat(f"/proc/{pid}")
    return st.st_uid, st.st_gid


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None  # no Yama: classic same-user-or-root rules


def _permission_advice(pid: int) -> str:
    scope = _ptrace_scope()
    hint = "run the agent as root, or as the target's user with CAP_SYS_PTRACE"
    if scope:
        hint += f" (kernel.yama.ptrace_scope is {scope}; 0 lets a user trace its own processes)"
    return f"not permitted to trace process {pid}: {hint}"


def _check_permission(pid: int) -> None:
    if os.geteuid() == 0:
        return  # root: gdb's own failure (no CAP_SYS_PTRACE in a container) is mapped later
    try:
        uids = _uids(pid)
    except OSError:
        return
    if any(uid != os.geteuid() for uid in uids):
        owner_uid = uids[0] if uids else "?"
        raise PtraceNotPermitted(
            f"process {pid} belongs to uid {owner_uid}, this agent runs as uid {os.geteuid()}: "
            + _permission_advice(pid)
        )
    if _ptrace_scope() in (2, 3):
        raise PtraceNotPermitted(_permission_advice(pid))


def gdb_path() -> str:
    found = shutil.which("gdb")
    if not found:
        raise GdbMissing(
            "gdb is not installed (or not on PATH): memray attaches to a running process "
            "through it; install it (e.g. `apt-get install gdb`) and try again"
        )
    return found


def check_target(pid: int) -> None:
    """Everything that can be known before attaching: the PID is alive, tracing it is
    permitted, gdb and memray are here, and the process runs Python. Raises the matching
    MemrayError."""
    if pid <= 0 or not alive(pid):
        raise TargetNotFound(f"no running process with PID {pid}")
    _check_permission(pid)
    gdb_path()
    if importlib.util.find_spec("memray") is None:
        raise MemrayMissing(
            f"memray is not installed in {sys.executable}'s environment: "
            "`pip install 'hotpath[memory]'`"
        )
    # py-spy's check finds the interpreter the same way it would sample it, without
    # pausing the target (a gdb attach to a non-Python process would freeze it for nothing).
    from hotpath.profiler.adapters import pyspy

    try:
        pyspy.check_target(pid)
    except pyspy.TargetNotFound:
        raise TargetNotFound(f"no running process with PID {pid}") from None
    except pyspy.NotAPythonProcess as exc:
        message = str(exc).replace("py-spy can profile", "memray can attach to")
        raise NotAPythonProcess(message) from None
    except pyspy.PySpyError:
        pass  # py-spy missing or unsure: memray's own check below decides


class _PauseMeter:
    """Polls the target's main thread while a tracer works on it (see the module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._done = threading.Event()
        self._stops: list[float] = []
        self._first: float | None = None  # when the first stop began
        self._last: float | None = None  # when the last stop ended
        self._gaps: list[float] = []
        self._thread = threading.Thread(target=self._run, name="hotpath-pause-meter", daemon=True)

    def __enter__(self) -> _PauseMeter:
        self._began = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._elapsed = time.perf_counter() - self._began

    def _run(self) -> None:
        stopped_since: float | None = None
        last = time.perf_counter()
        while True:
            done = self._done.is_set()  # read before the poll: the last poll is after gdb
            state = _state(self.pid, self.pid)
            now = time.perf_counter()
            self._gaps.append(now - last)
            last = now
            if state in ("t", "T"):
                if stopped_since is None:
                    stopped_since = now
                    self._first = self._first if self._first is not None else now
            elif stopped_since is not None:
                self._stops.append(now - stopped_since)
                self._last, stopped_since = now, None
            if done or state is None:
                break
            time.sleep(POLL_S)
        if stopped_since is not None:
            self._last = time.perf_counter()
            self._stops.append(self._last - stopped_since)

    def pause(self) -> Pause:
        gaps = sorted(self._gaps[1:]) or [POLL_S]
        span = self._last - self._first if self._first is not None and self._last else 0.0
        return Pause(
            span_ms=span * 1000,
            longest_ms=max(self._stops, default=0.0) * 1000,
            total_ms=sum(self._stops) * 1000,
            stops=len(self._stops),
            resolution_ms=gaps[len(gaps) // 2] * 1000,
            gdb_ms=self._elapsed * 1000,
        )


def _memray(args: list[str], pid: int, action: str) -> tuple[Pause, str]:
    """Run `python -m memray ARGS` (gdb underneath) with the pause meter; its output."""
    argv = [sys.executable, "-m", "memray", *args, "--method", "gdb", str(pid)]
    with _PauseMeter(pid) as meter:
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=GDB_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise AttachFailed(
                f"memray {action} of process {pid} did not finish in {GDB_TIMEOUT_S:.0f} s"
            ) from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise _failure(pid, action, output)
    return meter.pause(), output


def _failure(pid: int, action: str, output: str) -> MemrayError:
    """The exception for memray's failed attach/detach, judged from what it printed."""
    said = " | ".join(line.strip() for line in output.splitlines() if line.strip())[-600:]
    if not alive(pid):
        return TargetExited(f"process {pid} exited during the memray {action}")
    if "does not exist" in said:
        return TargetNotFound(f"no running process with PID {pid}")
    if "permission" in said.lower() or "owned by a different user" in said:
        return PtraceNotPermitted(_permission_advice(pid) + f" (memray said: {said})")
    if "Python 3.7 or newer" in said:
        return NotAPythonProcess(f"process {pid} does not run a Python memray can attach to")
    if "No module named 'memray'" in said or "No module named memray" in said:
        return MemrayMissingInTarget(
            f"process {pid} cannot import memray: memray runs inside the target, so the "
            "target's own environment needs it (`pip install 'hotpath[memory]'` there, the "
            f"same memray version as the agent's); memray said: {said}"
        )
    if "Cannot find a supported gdb" in said:
        return GdbMissing("gdb is not installed (or not on PATH): install it and try again")
    return AttachFailed(f"memray {action} of process {pid} failed: {said}")


def _capture_dir(pid: int) -> Path:
    """A fresh folder the target can write its capture into (memray writes from inside it)."""
    folder = Path(tempfile.mkdtemp(prefix=f"hotpath-memray-{pid}-"))
    if os.geteuid() == 0:
        uid, gid = owner(pid)
        if uid != 0:
            os.chown(folder, uid, gid)
    return folder


class MemrayCapture:
    """One on-demand capture: `attach()`, wait, `detach()`; `discard()` always (removes the
    file, and detaches if still attached, so an interrupted agent never leaves memray
    running in the target).

        with MemrayCapture(pid) as capture:
            capture.attach()
            capture.wait(seconds)
            finished = capture.detach()
            ... read finished.path ...
    """

    def __init__(self, pid: int, *, small_objects: bool = False) -> None:
        self.pid = pid
        # memray's --trace-python-allocators: without it, objects of 512 B or less (served by
        # pymalloc from its pools) are seen only as whole new pools, so a leak of many small
        # objects shows as an occasional 256 KiB arena; with it, every object is traced, at
        # a higher cost to the target.
        self.small_objects = small_objects
        self.folder: Path | None = None
        self.path: Path | None = None
        self.attach_pause: Pause | None = None
        self._attached = False

    def __enter__(self) -> MemrayCapture:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.discard()

    def attach(self) -> Pause:
        check_target(self.pid)
        self.folder = _capture_dir(self.pid)
        self.path = self.folder / "capture.bin"
        # --no-compress: the target would compress the file itself at detach, a longer pause.
        args = ["attach", "--no-compress", "-o", str(self.path)]
        if self.small_objects:
            args.append("--trace-python-allocators")
        self._attached = True  # from here on, discard() detaches: gdb may have got far
        try:
            self.attach_pause, _output = _memray(args, self.pid, "attach")
        except MemrayError:
            self._attached = False
            raise
        return self.attach_pause

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, watching the target: TargetExited as soon as it is gone."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not alive(self.pid):
                self._attached = False
                raise TargetExited(
                    f"process {self.pid} exited during the capture: the capture is cut "
                    "short and was not kept"
                )
            time.sleep(min(_ALIVE_POLL_S, left))

    def detach(self) -> CaptureFile:
        if self.path is None or self.attach_pause is None:
            raise RuntimeError("detach() before attach()")
        if not alive(self.pid):
            self._attached = False
            raise TargetExited(
                f"process {self.pid} exited during the capture: the capture is cut short "
                "and was not kept"
            )
        pause, _output = _memray(["detach"], self.pid, "detach")
        self._attached = False
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise AttachFailed(f"memray wrote no capture file for process {self.pid}")
        return CaptureFile(self.path, self.pid, self.attach_pause, pause)

    def discard(self) -> None:
        if self._attached and alive(self.pid):
            self._attached = False
            with contextlib.suppress(MemrayError):
                _memray(["detach"], self.pid, "detach")
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
