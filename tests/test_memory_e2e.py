"""End to end: `hotpath agent memory` twice on a real process with a planted leak, through a
real server; `hotpath leaks --json` ranks the leak first and flags nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.memray_targets import start_planted, stop
from tests.servers import REPO, RunningServer


def test_two_captures_shipped_then_the_leak_is_ranked_first(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    process, _trigger = start_planted(tmp_path)
    try:
        for _ in range(2):
            argv = [sys.executable, "-m", "hotpath", "agent", "memory", "--pid", str(process.pid)]
            argv += ["--service", "planted", "--duration", "2", "--yes"]
            argv += ["--server", sqlite_server.url, "--label", "env=test"]
            done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
            assert done.returncode == 0, done.stderr
            assert "shipped:" in done.stderr and "leaky_handler" in done.stdout
    finally:
        stop(process)
    with sqlite_server.client() as client:
        stored = client.get("/api/v1/memory/captures", params={"service": "planted"}).json()
    assert len(stored) == 2
    assert all(c["pause_attach_ms"] > 0 and c["pause_detach_ms"] > 0 for c in stored)
    argv = [sys.executable, "-m", "hotpath", "leaks", "--service", "planted", "--json"]
    done = subprocess.run(
        [*argv, "--server", sqlite_server.url], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode in (0, 1), done.stderr  # its exit code is `hotpath leaks`'s own
    ranks = json.loads(done.stdout)
    assert ranks[0]["function"] == "leaky_handler" and ranks[0]["flagged"]
    assert ranks[0]["captures"] == 2
    assert [r["function"] for r in ranks if r["flagged"]] == ["leaky_handler"]
