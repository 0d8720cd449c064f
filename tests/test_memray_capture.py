"""memray attached to real processes: a planted leak is ranked first and flagged; churn, a
structure built at start and a cache filled once are not; without the leak nothing is."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hotpath.profiler.adapters.memray import MemrayCapture
from hotpath.profiler.analysis.leaks import FLOOR_BYTES_PER_S, rank_leaks
from hotpath.profiler.formats import memray as memray_file
from hotpath.profiler.formats.memory_capture import MAX_POINTS
from tests.memray_targets import start_planted, stop

CAPTURE_S = 2.0


def _capture(pid: int, during: threading.Timer | None = None) -> memray_file.MemrayProfiles:
    with MemrayCapture(pid) as session:
        session.attach()
        if during is not None:
            during.start()
        session.wait(CAPTURE_S)
        finished = session.detach()
        assert finished.attach.span_ms >= finished.attach.longest_ms > 0
        assert finished.detach.span_ms >= finished.detach.longest_ms > 0
        return memray_file.read(finished.path)


@pytest.fixture(scope="module")
def leaking(tmp_path_factory: pytest.TempPathFactory) -> list[memray_file.MemrayProfiles]:
    folder = tmp_path_factory.mktemp("leaking")
    process, trigger = start_planted(folder)
    try:
        # The cache is filled half-way through the first capture, never again.
        first = _capture(process.pid, threading.Timer(CAPTURE_S / 2, trigger.touch))
        return [first, _capture(process.pid)]
    finally:
        stop(process)


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> list[memray_file.MemrayProfiles]:
    folder = tmp_path_factory.mktemp("steady")
    process, trigger = start_planted(folder, leak=False)
    try:
        first = _capture(process.pid, threading.Timer(CAPTURE_S / 2, trigger.touch))
        return [first, _capture(process.pid)]
    finally:
        stop(process)


def test_a_capture_holds_the_three_profiles_and_held_series(
    leaking: list[memray_file.MemrayProfiles],
) -> None:
    first = leaking[0]
    assert first.duration_s >= CAPTURE_S
    # churn allocates ~100 KB per loop (~150 loops/s): far more than is held
    assert first.alloc_bytes.total > 10 * first.held_bytes.total > 0
    assert first.alloc_count.total > 1000
    leak = next(s for s in first.functions if s.function == "leaky_handler")
    assert 2 <= len(leak.points) <= MAX_POINTS
    assert leak.points[-1][0] == pytest.approx(first.duration_s, abs=0.02)
    assert leak.held_bytes == leak.points[-1][1] > 4096 * 100
    # the held-bytes profile's stack ends in the leaking function, root first
    stacks = [s for s in first.held_bytes.samples if s[-1].name == "leaky_handler"]
    assert stacks and stacks[0][0].name == "<module>"
    # memray's own attach code is not the target's
    assert not any("memray" in f.file for s in first.alloc_bytes.samples for f in s)


def test_two_captures_rank_the_planted_leak_first_and_flag_nothing_else(
    leaking: list[memray_file.MemrayProfiles],
) -> None:
    ranks = rank_leaks(leaking)
    assert ranks[0].function == "leaky_handler"
    assert ranks[0].flagged and ranks[0].captures == 2
    assert ranks[0].low_bytes_per_s > FLOOR_BYTES_PER_S
    assert [r.function for r in ranks if r.flagged] == ["leaky_handler"]
    json = ranks[0].to_json()
    assert {"function", "growth_bytes_per_s", "held_bytes", "captures", "flagged"} <= set(json)


def test_the_cache_filled_once_is_seen_but_not_flagged(
    leaking: list[memray_file.MemrayProfiles],
) -> None:
    cache = next(s for s in leaking[0].functions if s.function == "fill_cache")
    assert cache.held_bytes >= 2_000_000  # really filled during the first capture
    assert not any(s.function == "fill_cache" for s in leaking[1].functions)
    rank = next(r for r in rank_leaks(leaking) if r.function == "fill_cache")
    assert not rank.flagged


def test_without_the_leak_nothing_is_flagged(steady: list[memray_file.MemrayProfiles]) -> None:
    ranks = rank_leaks(steady)
    assert {r.function for r in ranks} >= {"fill_cache"}  # it held bytes, in one capture
    assert not [r for r in ranks if r.flagged]


def test_the_reader_refuses_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "capture.bin"
    bogus.write_bytes(b"not memray at all")
    with pytest.raises(memray_file.MemrayFileError, match="not a readable memray capture"):
        memray_file.read(bogus)


SMALL_OBJECTS = """
import time
kept = []


def small_leak():
    kept.append([str(i) * 3 for i in range(40)])  # 40 small strings and a list: ~2.5 KB


print("ready", flush=True)
while True:
    small_leak()
    time.sleep(0.005)
"""


def test_small_objects_leak_is_ranked_with_every_object_traced(tmp_path: Path) -> None:
    # Objects of 512 B or less come from pymalloc's pools; with --small-objects every one is
    # traced, so the held bytes are the leak's own (~2.5 KB per call, ~150 calls/s).
    script = tmp_path / "small_objects.py"
    script.write_text(SMALL_OBJECTS)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        with MemrayCapture(process.pid, small_objects=True) as session:
            session.attach()
            session.wait(CAPTURE_S)
            profiles = memray_file.read(session.detach().path)
    finally:
        stop(process)
    (top, *_rest) = rank_leaks([profiles])
    assert top.function == "small_leak" and top.flagged
    # thousands of small allocations held, not a few 256 KiB arenas
    leak = next(s for s in profiles.functions if s.function == "small_leak")
    assert leak.allocations_held > 1000
