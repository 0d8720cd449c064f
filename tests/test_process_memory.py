"""The agent's /proc memory reader (agent/process_memory.py) on real processes and real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hotpath.agent import process_memory
from hotpath.agent.process_memory import MemoryReader, from_smaps_rollup, from_statm

ROLLUP = """5654b4a19000-7fffb1b39000 ---p 00000000 00:00 0                          [rollup]
Rss:                1612 kB
Pss:                 224 kB
Pss_Dirty:           112 kB
Shared_Clean:       1456 kB
Shared_Dirty:          0 kB
Private_Clean:        44 kB
Private_Dirty:       112 kB
Swap:                  0 kB
"""


def test_smaps_rollup_gives_rss_pss_and_uss_as_private_pages() -> None:
    got = from_smaps_rollup(7, ROLLUP)
    assert (got.rss_bytes, got.pss_bytes, got.uss_bytes) == (1612 * 1024, 224 * 1024, 156 * 1024)
    with pytest.raises(ValueError, match="Rss"):
        from_smaps_rollup(7, "Pss: 1 kB\n")


def test_statm_gives_rss_in_pages() -> None:
    got = from_statm(7, "2000 300 100 1 0 500 0\n")
    assert got.rss_bytes == 300 * process_memory.PAGE_SIZE and got.pss_bytes is None


@pytest.fixture
def holder() -> subprocess.Popen[str]:
    """A real process holding 40 MB of written memory."""
    code = (
        "import time; b = bytearray(b'x') * 40_000_000; print('ready', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    process.kill()
    process.wait()


def test_the_reader_reads_pss_and_uss_within_its_budget_and_rss_every_time(holder) -> None:
    clock = [100.0]
    reader = MemoryReader(holder.pid, budget=0.001, clock=lambda: clock[0])
    first = reader.read()
    assert first is not None and first.rss_bytes > 40_000_000
    assert first.uss_bytes is not None and 40_000_000 < first.uss_bytes <= first.rss_bytes
    assert first.pss_bytes is not None and first.uss_bytes <= first.pss_bytes <= first.rss_bytes
    # The fake clock did not move, so the walk "cost" 0 s: due again at once.
    assert reader.read().uss_bytes is not None  # type: ignore[union-attr]
    reader._next_full = clock[0] + 60  # as after a 60 ms walk
    second = reader.read()
    assert second is not None and second.uss_bytes is None and second.rss_bytes > 40_000_000
    clock[0] += 61
    assert reader.read().uss_bytes is not None  # type: ignore[union-attr]
    assert reader.full_reads == 3


def test_a_gone_process_reads_none_and_an_unreadable_rollup_leaves_rss(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert MemoryReader(gone.pid).read() is None
    assert process_memory.read(gone.pid) is None
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "statm").write_text("2000 300 100 1 0 500 0\n")
    (tmp_path / "42" / "smaps_rollup").write_text("garbage\n")
    got = MemoryReader(42, proc=str(tmp_path)).read()
    assert got is not None and got.rss_bytes == 300 * process_memory.PAGE_SIZE
    assert got.uss_bytes is None
