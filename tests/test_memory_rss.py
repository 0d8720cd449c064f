"""RSS always on: windows carry the process's memory, the server keeps it per pid and its trend
flags a leaking process and not a steady one (issue 15). A real server throughout; the last
test attaches the real agent (real py-spy, /proc) to a real leaking and a real steady process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.servers import RunningServer, attach_agent, start_server, stop_process

MB = 1024 * 1024


@pytest.fixture
def memory_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server that judges a trend over 20 s of readings (the default asks for 3 min) and
    RSS alerts every second (the default: every minute)."""
    running = start_server(
        f"sqlite:///{tmp_path / 'hotpath.db'}",
        tmp_path / "server",
        env={
            "HOTPATH_MEMORY_TREND_MIN_SPAN_S": "20",
            "HOTPATH_MEMORY_TREND_WARMUP_S": "0",
            "HOTPATH_MEMORY_ALERT_EVERY_S": "1",
        },
    )
    try:
        yield running
    finally:
        stop_process(running.process)


def window(end: datetime, process: dict[str, Any] | None, service: str = "mem") -> dict[str, Any]:
    """A window with no samples at all: an idle process, only its memory."""
    body: dict[str, Any] = {
        "service": service,
        "idempotency_key": uuid.uuid4().hex,
        "start": (end - timedelta(seconds=10)).isoformat(),
        "end": end.isoformat(),
        "sample_rate_hz": 100,
        "labels": {"pid": str(process["pid"]) if process else "0"},
        "frames": [],
        "stacks": [],
        "counts": [],
    }
    if process is not None:
        body["process"] = process
    return body


def test_a_window_with_only_memory_is_stored_and_bad_readings_are_refused(
    memory_server: RunningServer,
) -> None:
    now = datetime.now(UTC)
    with memory_server.client() as client:
        reading = {"pid": 4242, "rss_bytes": 90 * MB, "pss_bytes": 80 * MB, "uss_bytes": 70 * MB}
        assert client.post("/api/v1/windows", json=window(now, reading)).status_code == 201
        assert (
            client.post("/api/v1/windows", json=window(now, None)).status_code == 201
        )  # old agent
        for bad, says in [
            ({**reading, "pss_bytes": 91 * MB}, "pss_bytes"),
            ({**reading, "pid": 0}, "pid"),
            ({**reading, "rss_bytes": 2**62}, "rss_bytes"),
            ({**reading, "vms": 1}, "unknown fields 'vms'"),
            ({"pid": 1}, "rss_bytes"),
        ]:
            answer = client.post("/api/v1/windows", json=window(now, bad))
            assert answer.status_code == 422 and says in answer.text, (bad, answer.text)
        got = client.get("/api/v1/memory", params={"service": "mem"}).json()
        (process,) = got["processes"]
        assert process["pid"] == 4242 and process["readings"] == 1
        assert process["latest"]["uss_bytes"] == 70 * MB
        assert not process["trend"]["growing"] and "too few readings" in process["trend"]["summary"]
        for params, status, says in [
            ({"service": "nope"}, 404, "nope"),
            ({"service": "mem", "horizon": "5x"}, 422, "horizon"),
            ({"service": "mem", "horizon": "10s"}, 422, "from 60 s"),
            ({"service": "mem", "horizon": "30d"}, 422, "retention_raw"),
            ({"service": "mem", "pid": "0"}, 422, "pid"),
            ({"service": "mem", "from": "-1h", "until": "-2h"}, 422, "empty"),
        ]:
            answer = client.get("/api/v1/memory", params=params)
            assert answer.status_code == status and says in answer.text, (params, answer.text)


def plant_growth_and_wobble(server: RunningServer, service: str = "mem") -> None:
    """Ten minutes of readings every 10 s up to now: pid 1 grows 3 MB/min under 2 MB of
    noise, pid 2 wobbles by the same noise (a fixed pseudo-random sequence)."""
    now = datetime.now(UTC).replace(microsecond=0)
    wobble = [((i * 7919) % 13 - 6) * MB / 3 for i in range(60)]
    with server.client() as client:
        for i in range(60):
            end = now - timedelta(seconds=10 * (59 - i))
            for pid, slope in ((1, 3_000_000 / 6), (2, 0.0)):
                rss = int(200 * MB + slope * i + wobble[i])
                body = window(end, {"pid": pid, "rss_bytes": rss}, service)
                assert client.post("/api/v1/windows", json=body).status_code == 201


def test_planted_growth_is_flagged_with_its_rate_and_a_steady_process_is_not(
    memory_server: RunningServer,
) -> None:
    plant_growth_and_wobble(memory_server)
    with memory_server.client() as client:
        got = client.get(
            "/api/v1/memory", params={"service": "mem", "horizon": "15m", "until": "now"}
        ).json()
    by_pid = {p["pid"]: p for p in got["processes"]}
    leak, steady = by_pid[1]["trend"], by_pid[2]["trend"]
    assert leak["growing"] and not steady["growing"], (leak, steady)
    assert 2.5e6 < leak["slope_bytes_per_min"] < 3.5e6
    assert leak["summary"].startswith("RSS of pid 1 growing 3.0 MB/min for 10 min"), leak
    assert len(by_pid[1]["points"]) == 60 and by_pid[1]["latest"]["pss_bytes"] is None
    # The alert path: one rss_growth alert for pid 1, listed by the API and on /alerts.
    deadline = time.monotonic() + 15
    with memory_server.client() as client:
        while time.monotonic() < deadline:
            alerts = client.get("/api/v1/alerts", params={"state": "firing"}).json()
            if alerts:
                break
            time.sleep(0.5)
        (alert,) = alerts
        assert alert["kind"] == "rss_growth" and alert["hot_path"] == "pid 1", alert
        # It may fire while the readings arrive, as soon as enough of them grow: the slope is
        # then the estimate of the first minutes (3 MB/min under 2 MB of noise).
        summary = alert["summary"]
        assert re.fullmatch(r"RSS of pid 1 growing \d+\.\d MB/min for \d+ (s|min)", summary)
        assert alert["value_ms"] is None and 1.5e6 < alert["value_bytes_per_min"] < 5e6
        page = client.get("/alerts").text
        assert alert["summary"] in page and "MB/min" in page


LEAKER = textwrap.dedent("""
    import sys, time
    kept = []
    rate, step = float(sys.argv[1]), 0.1  # bytes per second, written (not lazily mapped)
    while True:
        kept.append(b"x" * int(rate * step))
        time.sleep(step)
""")

STEADY = textwrap.dedent("""
    import time
    kept = [b"x" * 200_000 for _ in range(100)]  # 20 MB working set, churned, never grown
    i = 0
    while True:
        kept[i % 100] = b"y" * 200_000
        i += 1
        time.sleep(0.01)
""")


def test_the_agent_ships_rss_and_the_api_flags_the_leaking_process_only(
    memory_server: RunningServer, tmp_path: Path
) -> None:
    scripts = {name: tmp_path / f"{name}.py" for name in ("leak", "steady")}
    scripts["leak"].write_text(LEAKER)
    scripts["steady"].write_text(STEADY)
    leak = subprocess.Popen([sys.executable, str(scripts["leak"]), str(2 * MB)])
    steady = subprocess.Popen([sys.executable, str(scripts["steady"])])
    agents: list[subprocess.Popen[str]] = []
    try:
        time.sleep(1.0)  # past start-up: the steady one has its working set
        agents = [
            attach_agent(p.pid, memory_server.url, "mem", "--window", "1") for p in (leak, steady)
        ]
        time.sleep(35)
        with memory_server.client() as client:
            got = client.get("/api/v1/memory", params={"service": "mem", "horizon": "5m"})
        assert got.status_code == 200, got.text
        by_pid = {p["pid"]: p for p in got.json()["processes"]}
        assert set(by_pid) == {leak.pid, steady.pid}
        leaking, calm = by_pid[leak.pid], by_pid[steady.pid]
        assert leaking["readings"] >= 20 and calm["readings"] >= 20
        # PSS and USS (smaps_rollup, readable as root) within the reader's budget: small
        # processes have them in most windows.
        assert any(p["uss_bytes"] for p in leaking["points"])
        assert leaking["trend"]["growing"], leaking["trend"]
        # 2 MiB/s written is 126 MB/min; RSS follows within the allocator's granularity.
        assert 80e6 < leaking["trend"]["slope_bytes_per_min"] < 170e6, leaking["trend"]
        assert f"RSS of pid {leak.pid} growing" in leaking["trend"]["summary"]
        assert not calm["trend"]["growing"], calm["trend"]
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGINT)
        for agent in agents:
            try:
                agent.communicate(timeout=30)
            finally:
                stop_process(agent)  # type: ignore[arg-type]
        stop_process(leak)
        stop_process(steady)
