"""`hot_path` in real processes: what it records, across threads, tasks and fork, as the agent
reads it from another process through `profiler.hotpath.reader`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hotpath.profiler.hotpath import HotPathLimitError, hot_path, layout, reader
from hotpath.profiler.hotpath.histogram import Histogram

REPO = Path(__file__).resolve().parents[1]
MS = 1_000_000


def busy(ns: int) -> None:
    """Burn exactly `ns` of wall time (sleep would add the scheduler's slack)."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def own(name: str) -> reader.HotPathSnapshot:
    return reader.read(os.getpid())[name]


class Child:
    """A Python process running `code`; it reports with `say(...)` (one JSON line each) and
    waits for a byte on stdin (`go_on`) where the code calls `wait()`."""

    PRELUDE = textwrap.dedent(
        """
        import json, os, sys, threading, time
        from hotpath import hot_path
        from hotpath.profiler.hotpath import layout, recorder

        def say(**fields):
            print(json.dumps(fields), flush=True)

        def wait():
            os.read(0, 1)  # one byte, unbuffered: a forked child shares this pipe

        def busy(ns):
            end = time.perf_counter_ns() + ns
            while time.perf_counter_ns() < end:
                pass
        """
    )

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.PRELUDE + textwrap.dedent(code), *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        # Lines go through a queue so that a silent child fails the test in seconds.
        self.lines: queue.Queue[str] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def hear(self, timeout_s: float = 20) -> dict:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"child silent for {timeout_s} s: {self.errors()}") from None
        if not line:
            raise AssertionError(f"child ended: {self.errors()}")
        return json.loads(line)

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.go_on()
        self.proc.wait(timeout=20)
        assert self.proc.returncode == 0, self.errors()
        self.kill()

    def errors(self) -> str:
        """What the child wrote to stderr; kills it first if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        stderr = self.proc.stderr
        return "" if stderr is None or stderr.closed else stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.pump.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()
        (layout.histogram_dir() / layout.histogram_file_name(child.pid)).unlink(missing_ok=True)


def spawn(children: list[Child], code: str, *args: str) -> Child:
    child = Child(code, *args)
    children.append(child)
    return child


# In this process: what gets recorded.


def assert_holds(h: Histogram, inner: list[int]) -> None:
    """`h` holds the durations measured inside the timed code, each plus the API's own ~1 µs.

    Comparing with what the code measured itself, not with what it asked for, keeps the bounds
    tight on a loaded machine, where a busy-wait may be preempted and run long.
    """
    exact = np.array(inner)
    assert h.count == len(exact)
    assert exact.sum() <= h.sum <= exact.sum() + len(exact) * 100_000
    assert exact.max() <= h.max
    for q in (0.1, 0.5, 0.9):
        at_rank = float(np.quantile(exact, q, method="inverted_cdf"))
        assert at_rank * (1 - 1 / 128) <= h.quantile(q) <= at_rank * (1 + 1 / 128) + 50_000, q


def stopwatch(inner: list[int], ns: int) -> None:
    start = time.perf_counter_ns()
    busy(ns)
    inner.append(time.perf_counter_ns() - start)


def test_decorator_records_each_call_with_its_duration() -> None:
    inner: list[int] = []

    @hot_path("api.sync", budget_ms=2.5)
    def work(ns: int) -> int:
        stopwatch(inner, ns)
        return ns

    assert work(MS) == MS  # the result passes through
    for ns in np.linspace(MS, 3 * MS, 30).astype(int).tolist():
        work(ns)
    snap = own("api.sync")
    assert snap.budget_ns == 2_500_000
    assert_holds(snap.histogram, inner)
    over = sum(ns > 2_500_000 * (1 + 1 / 128) for ns in inner)
    assert 7 <= over <= snap.over_budget == snap.histogram.over(2_500_000)
    assert work.__name__ == "work"


def test_async_decorator_times_the_whole_coroutine() -> None:
    inner: list[int] = []

    @hot_path("api.async", budget_ms=100)
    async def work(ns: int) -> str:
        start = time.perf_counter_ns()
        busy(ns // 2)
        await asyncio.sleep(0)
        busy(ns // 2)
        inner.append(time.perf_counter_ns() - start)
        return "done"

    async def main() -> list[str]:
        return [await work(MS * (1 + i % 3)) for i in range(20)]

    assert asyncio.run(main()) == ["done"] * 20
    assert_holds(own("api.async").histogram, inner)


def test_context_manager_sync_nested_and_recursive() -> None:
    inner: list[int] = []

    def descend(depth: int) -> None:
        with hot_path("api.with", budget_ms=100):
            start = time.perf_counter_ns()
            busy(MS)
            if depth > 1:
                descend(depth - 1)
            inner.append(time.perf_counter_ns() - start)

    for _ in range(10):
        descend(3)  # blocks of ~3, 2 and 1 ms, one inside the other
    assert_holds(own("api.with").histogram, inner)


def test_async_with_keeps_interleaved_tasks_apart() -> None:
    block = hot_path("api.async_with")

    async def task(delay_s: float, inside_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with block:
            await asyncio.sleep(inside_s)

    async def main() -> None:
        # A: 0-100 ms, B: 50-150 ms. A per-thread stack of starts would give A B's start
        # (50 ms) and B A's (150 ms).
        await asyncio.gather(task(0, 0.1), task(0.05, 0.1))

    asyncio.run(main())
    h = own("api.async_with").histogram
    assert h.count == 2
    assert 100 * MS <= h.quantile(0.0) <= h.max < 1_000 * MS


class Desk:
    @hot_path("api.fn.method")
    def route(self) -> None:
        pass


def test_the_file_names_the_code_each_hot_path_times() -> None:
    def handle() -> None:
        with hot_path("api.fn.with"):
            pass

    async def handle_async() -> None:
        async with hot_path("api.fn.async_with"):
            pass

    Desk().route()
    handle()
    asyncio.run(handle_async())
    here = Path(__file__).resolve()
    expected = {
        "api.fn.method": "Desk.route",
        "api.fn.with": "test_the_file_names_the_code_each_hot_path_times.<locals>.handle",
        "api.fn.async_with": (
            "test_the_file_names_the_code_each_hot_path_times.<locals>.handle_async"
        ),
    }
    for name, qualname in expected.items():
        function = own(name).function
        assert function is not None and function[0] == qualname
        assert here.as_posix().endswith(function[1]) and function[1].endswith("test_hotpath_api.py")


def test_long_function_paths_keep_their_end() -> None:
    encoded = layout.encode_function("Engine.execute", "/very/long/" * 40 + "engine.py")
    assert len(encoded) <= layout.FUNCTION_BYTES
    name, path = layout.decode_function(encoded) or ("", "")
    assert name == "Engine.execute" and path.endswith("/very/long/engine.py")


def test_exceptions_are_recorded_and_reraised() -> None:
    @hot_path("api.raises")
    def fails() -> None:
        busy(MS)
        raise KeyError("boom")

    @hot_path("api.raises")
    async def fails_async() -> None:
        raise KeyError("async boom")

    with pytest.raises(KeyError, match="boom"):
        fails()
    with pytest.raises(KeyError, match="async boom"):
        asyncio.run(fails_async())
    with pytest.raises(ZeroDivisionError), hot_path("api.raises"):
        1 / 0  # noqa: B018
    h = own("api.raises").histogram
    assert h.count == 3
    assert h.max >= MS


def test_file_counts_match_a_histogram_of_the_same_durations() -> None:
    # The recorder and Histogram share bucket_index: the same durations give the same buckets,
    # including below 1 µs and from 100 s on.
    durations = [0, 1, 999, 1_000, 1_007, 1_008, 123_456_789, 99_999_999_999, 10**11, 10**13]
    hp = hot_path("api.same_buckets")
    expected = Histogram()
    for ns in durations:
        hp.record(ns)
        expected.record(ns)
    assert own("api.same_buckets").histogram == expected


def test_a_name_is_one_hot_path_and_budgets_must_agree() -> None:
    first = hot_path("api.once", budget_ms=10)
    assert hot_path("api.once") is first
    assert hot_path("api.once", budget_ms=10) is first
    with pytest.raises(ValueError, match="budget"):
        hot_path("api.once", budget_ms=20)
    late = hot_path("api.budget_later")
    assert hot_path("api.budget_later", budget_ms=7) is late
    assert own("api.budget_later").budget_ns == 7 * MS
    with pytest.raises(ValueError):
        hot_path("")
    with pytest.raises(ValueError):
        hot_path("x" * 200)


def test_generators_are_refused() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        hot_path("api.generator")(numbers)


# Other processes: the file, as the agent reads it.


def per_slot_counts(data: bytes, path_index: int) -> list[int]:
    """Calls per thread slot of one path, straight from the layout in recorder's docstring."""
    assert data[:8] == b"HOTPATH\x00"
    max_paths, _max_slots, num_buckets = struct.unpack_from("<3I", data, 12)
    data_offset, stride, _paths_used, slots_used = struct.unpack_from("<4I", data, 64)
    counts = []
    for slot in range(slots_used):
        at = data_offset + (slot * max_paths + path_index) * stride
        counts.append(int(np.frombuffer(data, "<i8", num_buckets, at + 16).sum()))
    return counts


def test_threads_lose_no_call_read_from_another_process(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        hp = hot_path("threads", budget_ms=100)

        @hot_path("threads.decorated")
        def step():
            pass

        start = threading.Barrier(8)

        def run():
            start.wait()
            for _ in range(10_000):
                with hp:
                    pass
                step()
            start.wait()  # alive until all have counted: no thread reuses another's slot

        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        say(file=str(recorder.current_file()))
        wait()
        """,
    )
    file = Path(child.hear()["file"])
    assert file.exists()
    assert reader.find_histogram_file(child.pid) is not None
    snaps = reader.read(child.pid)
    assert snaps["threads"].histogram.count == 80_000
    assert snaps["threads.decorated"].histogram.count == 80_000
    assert snaps["threads"].budget_ns == 100 * MS
    # By the documented layout: each thread counted in a slot of its own.
    assert per_slot_counts(file.read_bytes(), path_index=0) == [10_000] * 8
    child.finish()
    assert not file.exists()  # removed at exit


def slots_used(pid: int) -> int:
    file = reader.find_histogram_file(pid)
    assert file is not None
    return struct.unpack_from("<I", file.read_bytes(), 76)[0]


def test_thread_slots_are_reused_and_shared_beyond_the_limit(children: list[Child]) -> None:
    crowd = layout.MAX_SLOTS + 8
    child = spawn(
        children,
        f"""
        hp = hot_path("crowd")
        for _ in range(50):  # short-lived threads one after another: each frees its slot
            t = threading.Thread(target=hp.record, args=(5_000,))
            t.start()
            t.join()
        say(phase="sequential")
        wait()

        start = threading.Barrier({crowd})

        def run():
            start.wait()
            for _ in range(2_000):
                hp.record(5_000)
            start.wait()  # all alive at once: no slot is given back before all have counted

        threads = [threading.Thread(target=run) for _ in range({crowd})]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        say(phase="crowd")
        wait()
        """,
    )
    assert child.hear() == {"phase": "sequential"}
    assert reader.read(child.pid)["crowd"].histogram.count == 50
    assert slots_used(child.pid) == 1
    child.go_on()
    assert child.hear() == {"phase": "crowd"}
    assert reader.read(child.pid)["crowd"].histogram.count == 50 + crowd * 2_000
    assert slots_used(child.pid) == layout.MAX_SLOTS - 1  # the rest shared the last slot
    child.finish()


def test_fork_child_gets_its_own_empty_file(children: list[Child]) -> None:
    parent = spawn(
        children,
        """
        import multiprocessing.util  # its exit hook and finalizers are inherited by the child
        hp = hot_path("forked", budget_ms=50)
        for _ in range(5):
            hp.record(10_000)
        pid = os.fork()
        if pid == 0:
            for _ in range(7):
                hp.record(20_000)
            say(child=os.getpid(), file=str(recorder.current_file()))
            wait()
            sys.exit(0)  # a normal exit, atexit handlers and all
        say(parent=os.getpid(), file=str(recorder.current_file()))
        wait()
        os.waitpid(pid, 0)
        say(parent_file_after_child_exit=recorder.current_file().exists())
        wait()
        """,
    )
    told = [parent.hear(), parent.hear()]
    mine = next(t for t in told if "parent" in t)
    forked = next(t for t in told if "child" in t)
    child_pid = forked["child"]
    try:
        assert mine["parent"] == parent.pid and mine["file"] != forked["file"]
        in_parent = reader.read(parent.pid)
        in_child = reader.read(child_pid)
        assert in_parent["forked"].histogram.count == 5
        assert in_parent["forked"].histogram.max == 10_000
        assert in_child["forked"].histogram.count == 7  # empty at fork, then its own 7
        assert in_child["forked"].budget_ns == 50 * MS
        parent.go_on()  # one line: the child (sharing stdin) or the parent takes it ...
        parent.go_on()  # ... and the other one this
        assert parent.hear() == {"parent_file_after_child_exit": True}
        assert reader.read(parent.pid)["forked"].histogram.count == 5
        assert not Path(forked["file"]).exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)
        Path(forked["file"]).unlink(missing_ok=True)
    parent.finish()
    assert not Path(mine["file"]).exists()


def test_a_process_without_hot_paths_has_no_file(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        say(file=str(recorder.current_file()))
        wait()
        """,
    )
    assert child.hear() == {"file": "None"}
    assert reader.find_histogram_file(child.pid) is None
    assert reader.read(child.pid) == {}
    assert not (layout.histogram_dir() / layout.histogram_file_name(child.pid)).exists()
    child.finish()
    assert reader.read(child.pid) == {}  # gone


def test_a_stale_file_of_a_dead_process_is_not_read_for_another(children: list[Child]) -> None:
    crashed = spawn(
        children,
        """
        hot_path("stale").record(10_000)
        say(file=str(recorder.current_file()))
        wait()
        """,
    )
    stale = Path(crashed.hear()["file"])
    crashed.proc.send_signal(signal.SIGKILL)  # a crash: no atexit
    crashed.kill()
    assert stale.exists()
    assert reader.read(crashed.pid) == {}

    # A live process without hot paths whose pid the leftover is renamed to: by path alone
    # it would look like its file.
    alive = spawn(children, "say(ok=True)\nwait()")
    alive.hear()
    leftover = layout.histogram_dir() / layout.histogram_file_name(alive.pid)
    stale.rename(leftover)
    assert reader.read(alive.pid) == {}

    # Even mapped by that process under its own name, the header (pid, start time) gives
    # the leftover away.
    mapper = spawn(
        children,
        """
        import mmap, shutil
        own = layout.histogram_dir() / layout.histogram_file_name(os.getpid())
        shutil.copyfile(sys.argv[1], own)
        with open(own, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
        say(file=str(own))
        wait()
        """,
        str(leftover),
    )
    mapped = Path(mapper.hear()["file"])
    # And with the pid in the header rewritten to match, the start time still differs (the
    # case of a pid reused by a later process).
    impostor = spawn(
        children,
        """
        import mmap, shutil, struct
        own = layout.histogram_dir() / layout.histogram_file_name(os.getpid())
        shutil.copyfile(sys.argv[1], own)
        with open(own, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
        struct.pack_into("<q", m, 48, os.getpid())
        say(file=str(own))
        wait()
        """,
        str(leftover),
    )
    impostor_file = Path(impostor.hear()["file"])
    try:
        assert reader.find_histogram_file(mapper.pid) is not None
        assert reader.read(mapper.pid) == {}
        assert reader.find_histogram_file(impostor.pid) is not None
        assert reader.read(impostor.pid) == {}
    finally:
        for file in (mapped, impostor_file, leftover):
            file.unlink(missing_ok=True)
    alive.finish()


def test_leftovers_of_killed_processes_are_removed_by_the_next_writer(
    children: list[Child],
) -> None:
    report = "say(file=str(recorder.current_file()))\nwait()"
    alive = spawn(children, 'hot_path("kept").record(1)\n' + report)
    crashed = spawn(children, 'hot_path("gone").record(1)\n' + report)
    kept, stale = Path(alive.hear()["file"]), Path(crashed.hear()["file"])
    crashed.proc.send_signal(signal.SIGKILL)  # no exit hooks: the file stays
    crashed.kill()
    assert stale.exists()
    writer = spawn(children, 'hot_path("next").record(1)\nsay(ok=True)\nwait()')
    writer.hear()
    assert not stale.exists()  # no writer held its lock
    assert kept.exists() and reader.read(alive.pid)["kept"].histogram.count == 1


def test_multiprocessing_children_remove_their_files(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        import multiprocessing

        hp = hot_path("pool")
        hp.record(1_000)

        def work():
            hp.record(2_000)
            say(worker=os.getpid(), file=str(recorder.current_file()))

        worker = multiprocessing.get_context("fork").Process(target=work)
        worker.start()
        worker.join()
        say(exitcode=worker.exitcode)
        wait()
        """,
    )
    told = child.hear()
    worker_file = Path(told["file"])
    try:
        assert told["worker"] != child.pid and worker_file.name == f"hotpath-{told['worker']}.hist"
        assert child.hear() == {"exitcode": 0}
        assert not worker_file.exists()  # multiprocessing ends its children with os._exit
        assert reader.read(child.pid)["pool"].histogram.count == 1
    finally:
        worker_file.unlink(missing_ok=True)
    child.finish()


def test_a_leftover_with_our_own_pid_is_replaced(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        own = layout.histogram_dir() / layout.histogram_file_name(os.getpid())
        own.write_bytes(b"HOTPATH\\x00" + b"\\xff" * 4096)  # a dead namesake's garbage
        hot_path("fresh").record(5_000)
        say(file=str(recorder.current_file()))
        wait()
        """,
    )
    assert child.hear()["file"] != "None"
    assert reader.read(child.pid)["fresh"].histogram.count == 1
    child.finish()


def test_hot_path_limit_is_a_clear_error(children: list[Child]) -> None:
    child = spawn(
        children,
        f"""
        from hotpath.profiler.hotpath import HotPathLimitError
        for i in range({layout.MAX_PATHS}):
            hot_path(f"path{{i}}").record(1_000 * (i + 1))
        try:
            hot_path("one too many")
        except HotPathLimitError as exc:
            error = str(exc)
        hot_path("path0").record(5_000)  # the known ones go on
        say(error=error)
        wait()
        """,
    )
    assert "limit is 64" in child.hear()["error"]
    snaps = reader.read(child.pid)
    assert len(snaps) == layout.MAX_PATHS and "one too many" not in snaps
    assert snaps["path0"].histogram.count == 2
    assert snaps[f"path{layout.MAX_PATHS - 1}"].histogram.max == 64_000
    child.finish()
    assert issubclass(HotPathLimitError, RuntimeError)


def test_without_a_shared_file_hot_paths_still_run(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        import warnings
        from pathlib import Path
        from hotpath.profiler.hotpath import shared_file
        shared_file.histogram_dir = lambda: Path("/nonexistent/hotpath")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")

            @hot_path("no_file")
            def f(x):
                return x * 2

            results = [f(i) for i in range(100)]
        say(ok=results == [i * 2 for i in range(100)],
            warned=[str(w.message) for w in caught], file=str(recorder.current_file()))
        wait()
        """,
    )
    told = child.hear()
    assert told["ok"] and told["file"] == "None"
    assert any("no shared histogram file" in w for w in told["warned"])
    assert reader.read(child.pid) == {}
    child.finish()


def test_reading_many_windows_gives_deltas_that_add_up(children: list[Child]) -> None:
    child = spawn(
        children,
        """
        hp = hot_path("windows")
        for window in range(3):
            for i in range(1_000 * (window + 1)):
                hp.record(10_000 * (window + 1))
            say(window=window)
            wait()
        """,
    )
    before = Histogram()
    windows = []
    for _ in range(3):
        child.hear()
        now = reader.read(child.pid)["windows"].histogram
        windows.append(now.delta(before))
        before = now
        child.go_on()
    assert [w.count for w in windows] == [1_000, 2_000, 3_000]
    assert [w.max for w in windows] == [10_000, 20_000, 30_000]
    assert sum(w.sum for w in windows) == before.sum
    assert np.array_equal(sum(w.counts for w in windows), before.counts)
    child.finish()
