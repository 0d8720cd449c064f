"""The agent never stops profiling because of its disk: a capped spool (the oldest windows go
first, counted), and a full or read-only spool disk (real tmpfs mounts) means sending directly
from a bounded in-memory queue, then spooling again once the disk works.

The disk tests mount a tmpfs, so they need root; they are skipped, saying so, without it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hotpath.agent.shipper import Shipper
from hotpath.profiler.formats import collapsed
from tests.servers import attach_agent, free_port, start_server, stop_process
from tests.test_agent import fetch, spawn_target
from tests.test_shipper import stored_total, wait_for, window

OUTAGE_S = float(os.environ.get("HOTPATH_OUTAGE_S", "10"))


def spool_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("agent-*/*.zst"))


def messages(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


def test_a_full_spool_keeps_the_newest_windows_and_counts_the_others(
    sqlite_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No server: 12 windows into a spool of 5 files keep the newest 5. A later agent with a
    cap of 3 adopts them, trims to 3 and sends those."""
    spool = tmp_path / "spool"
    windows = [window(i) for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
        away = Shipper(f"http://127.0.0.1:{free_port()}", spool, backoff_s=60, max_spool_files=5)
        away.submit(windows[0])
        # Past the first attempt: the window being sent is never deleted, and it is the oldest.
        time.sleep(0.5)
        for w in windows[1:]:
            away.submit(w)
        kept = [p.name.split("-")[1].removesuffix(".zst") for p in spool_files(spool)]
        assert kept == [w.idempotency_key for w in windows[7:]]
        assert away.close(timeout_s=0) == 5
    assert away.dropped_full == 7
    assert len(messages(caplog, "is full")) == 1, "logged when it fills, not per window"

    later = Shipper(sqlite_server.url, spool, max_spool_files=3)
    assert later.close(timeout_s=20) == 0
    assert (later.adopted, later.dropped_full, later.shipped) == (5, 2, 3)
    assert stored_total(sqlite_server.url) == sum(range(10, 13))


def test_the_spool_stays_within_its_byte_cap(tmp_path: Path) -> None:
    probe = Shipper(f"http://127.0.0.1:{free_port()}", tmp_path / "probe", backoff_s=60)
    probe.submit(window(0))
    size = spool_files(tmp_path / "probe")[0].stat().st_size
    probe.close(timeout_s=0)

    cap = int(size * 3.5)
    shipper = Shipper(
        f"http://127.0.0.1:{free_port()}", tmp_path / "spool", backoff_s=60, max_spool_bytes=cap
    )
    for i in range(10):
        shipper.submit(window(i))
    files = spool_files(tmp_path / "spool")
    assert sum(p.stat().st_size for p in files) <= cap
    assert len(files) == 3 and shipper.dropped_full == 7
    shipper.close(timeout_s=0)


# -- real disks that fail ---------------------------------------------------------------------


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of our own."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    point = tmp_path / "disk"
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_means_sending_directly_then_spooling_again(
    sqlite_server, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filler = fill(small_disk)
    spool = small_disk / "spool"
    with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
        shipper = Shipper(sqlite_server.url, spool)
        for i in range(5):
            shipper.submit(window(i))
        wait_for(lambda: shipper.shipped == 5, what="5 windows sent from memory")
        assert shipper.sent_direct == 5 and not spool_files(spool)

        filler.unlink()
        for i in range(5, 8):
            shipper.submit(window(i))
        assert shipper.close(timeout_s=20) == 0
    assert (shipper.shipped, shipper.sent_direct, shipper.dropped_memory) == (8, 5, 0)
    assert stored_total(sqlite_server.url) == sum(range(1, 9))
    failed = messages(caplog, "cannot write the spool")
    assert len(failed) == 1 and "No space left on device" in failed[0], failed
    assert len(messages(caplog, "spooled again")) == 1


def test_a_disk_turned_read_only_loses_and_doubles_nothing(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Windows spooled while the server is away; the disk turns read-only (more windows are
    held in memory); the server comes back: all are sent once, though the spooled files
    cannot be deleted; the disk is writable again: the files that were sent go."""
    port = free_port()
    spool = small_disk / "spool"
    server = None
    with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
        shipper = Shipper(f"http://127.0.0.1:{port}", spool, backoff_s=0.05)
        try:
            for i in range(3):
                shipper.submit(window(i))
            assert len(spool_files(spool)) == 3
            mount("-o", "remount,ro", str(small_disk))
            for i in range(3, 6):
                shipper.submit(window(i))
            server = start_server(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "srv", port=port)
            wait_for(lambda: shipper.shipped == 6, what="6 windows shipped")
            assert shipper.sent_direct == 3
            assert len(spool_files(spool)) == 3, "sent, but a read-only disk keeps the files"

            mount("-o", "remount,rw", str(small_disk))
            shipper.submit(window(6))
            assert shipper.close(timeout_s=20) == 0
            assert shipper.shipped == 7, "the files sent while read-only were not sent again"
            assert not spool_files(spool) and not list(spool.glob("agent-*"))
            assert stored_total(server.url) == sum(range(1, 8))
        finally:
            mount("-o", "remount,rw", str(small_disk))
            shipper.close(timeout_s=0)
            if server:
                stop_process(server.process)
    failed = messages(caplog, "cannot write the spool")
    assert len(failed) == 1 and "Read-only file system" in failed[0], failed
    assert len(messages(caplog, "spooled again")) == 1


def test_a_read_only_disk_from_the_start_and_a_full_memory_queue(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not even the agent's folder can be made; with the server away too, the in-memory queue
    keeps the newest 4 windows; they go out when the server comes."""
    mount("-o", "remount,ro", str(small_disk))
    port = free_port()
    server = None
    with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
        shipper = Shipper(
            f"http://127.0.0.1:{port}", small_disk / "spool", backoff_s=0.05, memory_windows=4
        )
        try:
            shipper.submit(window(0))
            time.sleep(0.5)  # past the first attempt: the window being sent is never dropped
            for i in range(1, 10):
                shipper.submit(window(i))
            assert shipper.dropped_memory == 6
            server = start_server(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "srv", port=port)
            wait_for(lambda: shipper.shipped == 4, what="the 4 windows held in memory")
            assert shipper.close(timeout_s=5) == 0
            assert stored_total(server.url) == sum(range(7, 11))
        finally:
            shipper.close(timeout_s=0)
            if server:
                stop_process(server.process)
    assert (shipper.sent_direct, shipper.dropped_memory) == (4, 6)
    assert len(messages(caplog, "cannot write the spool")) == 1
    assert len(messages(caplog, "in-memory queue is full")) == 1


# -- the real agent (py-spy) ------------------------------------------------------------------

SUMMARY = re.compile(
    r"done: (?P<windows>\d+) windows, (?P<samples>\d+) samples, (?P<shipped>\d+) shipped, "
    r"(?P<spooled>\d+) spooled, (?P<refused>\d+) refused \(set aside in .*?\), "
    r"(?P<direct>\d+) sent directly, (?P<full>\d+) dropped \(spool full\), "
    r"(?P<memory>\d+) dropped \(memory queue full\), (?P<left>\d+) left in"
)


def stored_samples(url: str) -> int:
    response = fetch(url)
    return collapsed.loads(response.text).total if response.status_code == 200 else 0


def exit_summary(stderr: str) -> dict[str, int]:
    match = SUMMARY.search(stderr)
    assert match, stderr
    return {k: int(v) for k, v in match.groupdict().items()}


def test_the_real_agent_keeps_profiling_on_a_read_only_spool(
    sqlite_server, small_disk: Path, tmp_path: Path
) -> None:
    mount("-o", "remount,ro", str(small_disk))
    target, _ = spawn_target(tmp_path, seconds=60)
    agent = attach_agent(
        target.pid, sqlite_server.url, "acc", "--window", "1", spool_dir=small_disk
    )
    try:
        wait_for(
            lambda: stored_samples(sqlite_server.url) > 0,
            timeout_s=60,
            what="a window sent without the disk",
        )
        time.sleep(1.5)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
    finally:
        stop_process(target)
        stop_process(agent)
    assert agent.returncode == 0, err
    summary = exit_summary(err)
    assert summary["windows"] >= 2 and summary["direct"] == summary["shipped"] == summary["windows"]
    assert err.count("cannot write the spool") == 1, err
    assert "Traceback" not in err
    assert stored_samples(sqlite_server.url) == summary["samples"] > 0


def test_the_real_agent_caps_its_spool_during_an_outage(tmp_path: Path) -> None:
    """0.5 s windows, a server away for OUTAGE_S seconds (HOTPATH_OUTAGE_S, 10 by default)
    and a spool of 8 files: 8 files wait, the rest are dropped oldest first and counted; once
    the server is back the 8 are sent and every window is accounted for."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    target, _ = spawn_target(tmp_path, seconds=OUTAGE_S + 30)
    agent = attach_agent(
        target.pid, url, "acc", "--window", "0.5", "--spool-max-files", "8", spool_dir=spool
    )
    server = None
    try:
        time.sleep(OUTAGE_S)
        during = len(list((spool / "acc").glob("agent-*/*.zst")))
        server = start_server(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "srv", port=port)
        time.sleep(3)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
        # The drops ride on the first delivery after the outage: the server counts them.
        metrics = httpx.get(url + "/metrics", timeout=10).text
    finally:
        stop_process(target)
        stop_process(agent)
        if server:
            stop_process(server.process)
    summary = exit_summary(err)
    reported = re.search(
        r'hotpath_agent_windows_dropped_total\{reason="spool_full",service="acc"\} (\S+)', metrics
    )
    assert reported and float(reported.group(1)) == summary["full"], (reported, summary)
    print(f"after {OUTAGE_S:g} s of outage: {during} spool files; {summary}")
    assert 7 <= during <= 8, "8, or 7 while the oldest is deleted for a new one"
    assert summary["full"] > 0, summary
    assert summary["windows"] == summary["shipped"] + summary["full"] + summary["left"], summary
    assert summary["left"] == summary["refused"] == 0
    assert agent.returncode == 1 and "were dropped" in err, "windows were lost: exit 1"
    assert err.count("is full") == 1, err
