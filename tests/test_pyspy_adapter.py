"""profiler.adapters.pyspy against the real py-spy binary and real target processes."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import psutil
import pytest

from hotpath.profiler.adapters.pyspy import (
    NotAPythonProcess,
    PySpyError,
    PySpyMissing,
    SampledWindow,
    TargetNotFound,
    WindowedSampler,
    check_target,
    py_spy_path,
)

CPU_TARGET = """\
import sys, time

def hotpath_inner(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def hotpath_outer():
    return hotpath_inner(20000)

end = time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while time.monotonic() < end:
    hotpath_outer()
"""
INNER_DEF_LINE = 3  # --function reports a function by its first line, whatever line is running

# One long sleep: a loop of short sleeps runs a little code at each wake-up, which py-spy
# then (rightly) samples now and then.
IDLE_TARGET = """\
import sys, time
print("ready", flush=True)
time.sleep(float(sys.argv[1]))
"""

# Runs inside sec_SS -> ms_MMM (wall clock seconds mod 100, milliseconds): each sample carries
# the time it was taken, to the millisecond.
STAMPED_TARGET = """\
import sys, time
source = [f"def sec_{s:02d}(ms):\\n    return MS[ms]()\\n" for s in range(100)]
body = "    x = 0\\n    for i in range(300):\\n        x += i\\n    return x\\n"
source += [f"def ms_{m:03d}():\\n" + body for m in range(1000)]
ns = {}
exec("".join(source), ns)
SEC = [ns[f"sec_{s:02d}"] for s in range(100)]
ns["MS"] = [ns[f"ms_{m:03d}"] for m in range(1000)]
end = time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while time.monotonic() < end:
    ms = int(time.time() * 1000)
    SEC[(ms // 1000) % 100](ms % 1000)
"""
STAMP = re.compile(r"\bsec_(\d\d) \(.*\bms_(\d\d\d) \(")

RATE = 100
# Consecutive windows share the boundary timestamp exactly; allow a few ms regardless.
CONTIGUITY = timedelta(milliseconds=5)

Spawn = Callable[..., subprocess.Popen[bytes]]


def sample_count(collapsed: str) -> int:
    return sum(int(line.rpartition(" ")[2]) for line in collapsed.splitlines())


def py_spy_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "py-spy" in child.name():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(autouse=True)
def no_py_spy_left_behind() -> Iterator[None]:
    """Every test must end with no py-spy process, running or zombie, under this process."""
    yield
    leftovers = py_spy_children()
    for process in leftovers:  # don't let one failure leak into the next tests
        process.kill()
    assert not leftovers, f"py-spy processes left behind: {leftovers}"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start a target ("cpu", "idle", "stamped" or an argv); each is killed and reaped after."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(kind: str | list[str], seconds: float = 60.0) -> subprocess.Popen[bytes]:
        if isinstance(kind, list):
            process = subprocess.Popen(kind)
            processes.append(process)
            return process
        script = tmp_path / "target.py"
        script.write_text({"cpu": CPU_TARGET, "idle": IDLE_TARGET, "stamped": STAMPED_TARGET}[kind])
        process = subprocess.Popen(
            [sys.executable, str(script), str(seconds)], stdout=subprocess.PIPE
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"  # interpreter up: py-spy can attach
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def assert_consecutive(windows: list[SampledWindow]) -> None:
    for window in windows:
        assert window.start.tzinfo is not None
        assert window.start.utcoffset() == timedelta(0)
        assert window.end >= window.start
    for previous, current in itertools.pairwise(windows):
        assert abs(current.start - previous.end) <= CONTIGUITY, (previous, current)


def test_windows_are_consecutive_and_carry_the_functions(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=1.0)
    windows: list[SampledWindow] = []
    for window in sampler.windows():
        windows.append(window)
        if len(windows) == 3:
            sampler.stop()

    assert len(windows) == 4
    assert [w.final for w in windows] == [False, False, False, True]
    assert_consecutive(windows)
    for window in windows[:3]:
        assert 0.8 <= (window.end - window.start).total_seconds() <= 1.3
        # ~100 samples expected (Poisson, so not exactly); far fewer would mean lost time.
        assert sample_count(window.collapsed) >= 50, window.collapsed
        assert "hotpath_outer" in window.collapsed
        for line in window.collapsed.splitlines():
            assert re.fullmatch(r".+ \d+", line), line  # "frame;frame count", no empty stacks
    # --function: hotpath_inner is one frame at its def line, not one per executing line.
    inner_lines = set(re.findall(r"hotpath_inner \(target\.py:(\d+)\)", windows[0].collapsed))
    assert inner_lines == {str(INNER_DEF_LINE)}
    # Over the whole run, samples match rate x time: no window lost its start or end.
    span = (windows[-1].end - windows[0].start).total_seconds()
    total = sum(sample_count(w.collapsed) for w in windows)
    assert 0.8 <= total / (RATE * span) <= 1.2, (total, span)


def stamps(window: SampledWindow) -> list[float]:
    """Wall-clock times of the window's samples, from the stamped target's frames."""
    middle = (window.start.timestamp() + window.end.timestamp()) / 2
    times = []
    for line in window.collapsed.splitlines():
        match = STAMP.search(line)
        if match:
            stamp = int(match[1]) + int(match[2]) / 1000 + 0.0005
            times.append(stamp + 100 * round((middle - stamp) / 100))
    # --nonblocking can tear a stack (sec_ and ms_ from different calls): drop wild stamps.
    return [t for t in times if window.start.timestamp() - 0.25 < t < window.end.timestamp() + 0.25]


def test_boundaries_have_no_gap_and_no_overlap(spawn: Spawn) -> None:
    # At 1000 Hz consecutive samples are ~1 ms apart (exponentially distributed), so the last
    # sample before a boundary and the first after it are ~2 ms apart when nothing is lost. A
    # recorder stopped before its successor samples leaves 10-40 ms (py-spy's start-up) empty;
    # one stopped too late shares samples with its successor.
    slack = 0.025  # a 30 ms late hand-over (a real bug) still fails
    target = spawn("stamped")
    sampler = WindowedSampler(target.pid, rate_hz=1000, window_s=0.5)
    windows: list[SampledWindow] = []
    for window in sampler.windows():
        windows.append(window)
        if len(windows) == 6:
            sampler.stop()
    assert len(windows) == 7
    times = [stamps(w) for w in windows]
    assert all(len(t) > 50 for t in times[:6]), [len(t) for t in times]  # ~450 when idle box
    spans = []
    for k in range(6):
        boundary = windows[k].end.timestamp()
        # No overlap: nothing in window k after its end, nothing in k+1 before its start.
        # Idle box: under 2 ms. The slack is for an overloaded one, where py-spy's SIGINT
        # thread waits for a CPU and a descheduled target's stamps fall behind the clock.
        assert max(times[k]) <= boundary + slack, (k, max(times[k]) - boundary)
        if times[k + 1]:
            assert min(times[k + 1]) >= boundary - slack, (k, boundary - min(times[k + 1]))
            spans.append(min(times[k + 1]) - max(times[k]))
    # No gap: about 2 ms expected between the last sample before and the first after.
    assert spans and sum(spans) / len(spans) < slack, spans
    assert max(spans) < 0.040, spans


def test_stop_from_another_thread_ends_the_window_now(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=30.0)
    timer = threading.Timer(1.5, sampler.stop)
    began = time.monotonic()
    timer.start()
    try:
        windows = list(sampler.windows())
    finally:
        timer.cancel()
    elapsed = time.monotonic() - began

    assert elapsed < 3.0  # not the 30 s the window was meant to last
    assert len(windows) == 1
    (window,) = windows
    assert window.final
    assert 1.2 <= (window.end - window.start).total_seconds() <= 1.8
    assert sample_count(window.collapsed) >= 70  # the partial window's samples are kept
    assert "hotpath_inner" in window.collapsed


def test_stop_from_a_signal_handler(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=0.4)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: sampler.stop())
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        windows = list(sampler.windows())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert len(windows) >= 3
    assert [w.final for w in windows] == [False] * (len(windows) - 1) + [True]
    assert_consecutive(windows)
    stop_at = windows[-1].end
    assert all(sample_count(w.collapsed) > 0 for w in windows[:-1])
    assert 1.3 <= (stop_at - windows[0].start).total_seconds() <= 1.7


def test_target_exit_ends_the_iteration_with_a_final_window(spawn: Spawn) -> None:
    # The target stays our unreaped child when it exits: a zombie must count as exited.
    target = spawn("cpu", seconds=2.5)
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=1.0)
    began = time.monotonic()
    windows = list(sampler.windows())

    assert time.monotonic() - began < 4.0
    assert target.poll() is not None
    assert len(windows) == 3
    assert [w.final for w in windows] == [False, False, True]
    assert_consecutive(windows)
    last = windows[-1]
    assert 0.2 <= (last.end - last.start).total_seconds() <= 0.8
    assert sample_count(last.collapsed) >= 10  # what was sampled before the exit is kept
    assert "hotpath_outer" in last.collapsed


def test_idle_target_gives_empty_windows(spawn: Spawn) -> None:
    target = spawn("idle")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=0.5)
    windows: list[SampledWindow] = []
    for window in sampler.windows():
        windows.append(window)
        if len(windows) == 2:
            sampler.stop()
    assert [w.collapsed for w in windows] == ["", "", ""]
    assert windows[-1].final


def test_leaving_the_loop_early_stops_py_spy(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=0.5)
    iterator = sampler.windows()
    first = next(iterator)
    assert not first.final
    assert py_spy_children()  # the next window's recorder is running
    iterator.close()  # what `break` + garbage collection does
    assert not py_spy_children()


def test_exception_in_the_consumer_stops_py_spy(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=0.5)
    with pytest.raises(ZeroDivisionError):
        for _window in sampler.windows():
            1 / 0  # noqa: B018 - the consumer fails
    assert not py_spy_children()


def test_stop_before_iterating_gives_one_empty_final_window(spawn: Spawn) -> None:
    target = spawn("cpu")
    sampler = WindowedSampler(target.pid, rate_hz=RATE, window_s=1.0)
    sampler.stop()
    windows = list(sampler.windows())
    assert len(windows) == 1
    assert windows[0].final and windows[0].collapsed == ""
    assert windows[0].start.tzinfo == UTC


def test_target_not_found_names_the_pid() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: the PID no longer exists
    with pytest.raises(TargetNotFound, match=str(gone.pid)):
        check_target(gone.pid)
    with pytest.raises(TargetNotFound, match=str(gone.pid)):
        next(WindowedSampler(gone.pid, window_s=1.0).windows())


def test_not_a_python_process_names_the_pid(spawn: Spawn) -> None:
    sleeper = spawn(["sleep", "30"])
    time.sleep(0.1)  # let it exec
    began = time.monotonic()
    with pytest.raises(NotAPythonProcess, match=str(sleeper.pid)) as caught:
        check_target(sleeper.pid)
    assert time.monotonic() - began < 2.0
    assert isinstance(caught.value, PySpyError)
    with pytest.raises(NotAPythonProcess, match=str(sleeper.pid)):
        next(WindowedSampler(sleeper.pid, window_s=1.0).windows())


def test_check_target_accepts_a_python_process(spawn: Spawn) -> None:
    target = spawn("idle")
    check_target(target.pid)


def test_py_spy_path_prefers_the_one_beside_the_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        assert py_spy_path() == str(beside)
    assert os.access(py_spy_path(), os.X_OK)

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PySpyMissing, match="py-spy"):
        py_spy_path()


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        WindowedSampler(1, rate_hz=0)
    with pytest.raises(ValueError):
        WindowedSampler(1, window_s=0.0)


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        # what py-spy 0.4 printed in CI when a frame changed under it
        (
            "Error: Failed to get stack traces\nCaused by:\n 0: Failed to call get_stack_trace "
            "for thread 139622303050624\n 1: Failed to copy PyCodeObject\n 2: Bad address "
            "(os error 14)",
            True,
        ),
        ("Error: Permission denied (os error 13)", False),
        ("Error: Failed to find python version from target process", False),
    ],
)
def test_a_racy_read_of_the_target_is_worth_a_new_start(stderr: str, transient: bool) -> None:
    from hotpath.profiler.adapters.pyspy import transient_failure

    assert transient_failure(stderr) is transient
