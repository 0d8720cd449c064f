"""The agent's shipper: spool-first delivery, orphaned spools adopted, nothing sent twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from hotpath.agent.shipper import Shipper
from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from tests.servers import REPO, free_port

START = datetime.now(UTC) - timedelta(minutes=10)


def window(i: int) -> wire.Window:
    return wire.from_profile(
        collapsed.loads(f"main;work_{i % 3} {i + 1}\n"),
        service="svc",
        idempotency_key=uuid.uuid4().hex,
        start=START + timedelta(seconds=10 * i),
        end=START + timedelta(seconds=10 * i + 10),
        sample_rate_hz=100,
        labels={},
    )


def stored_total(url: str) -> int:
    response = httpx.get(
        url + "/api/v1/profile", params={"service": "svc", "format": "collapsed", "from": "-1h"}
    )
    return collapsed.loads(response.text).total if response.status_code == 200 else 0


def test_windows_left_by_a_crashed_agent_are_adopted_and_sent_once(
    sqlite_server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # An agent that found no server, then died without a goodbye (os._exit: no cleanup).
    crashed = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from hotpath.agent.shipper import Shipper
        from tests.test_shipper import window
        shipper = Shipper("http://127.0.0.1:{free_port()}", Path({str(spool)!r}), backoff_s=60)
        for i in range(5):
            shipper.submit(window(i))
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", crashed], check=True, timeout=60)
    assert len(list(spool.glob("agent-*/*.zst"))) == 5

    live = Shipper(sqlite_server.url, spool)
    assert live.adopted == 5
    for i in range(5, 8):
        live.submit(window(i))
    assert live.close(timeout_s=20) == 0
    assert live.shipped == 8
    assert stored_total(sqlite_server.url) == sum(range(1, 9))
    assert not list(spool.glob("agent-*")), "empty agent folders are removed"


def test_two_live_agents_never_take_each_others_windows(sqlite_server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first, second = Shipper(sqlite_server.url, spool), Shipper(sqlite_server.url, spool)
    assert first.adopted == second.adopted == 0
    for i in range(10):
        (first if i % 2 else second).submit(window(i))
    assert first.close() == 0 and second.close() == 0
    assert first.shipped == second.shipped == 5
    assert stored_total(sqlite_server.url) == sum(range(1, 11))
