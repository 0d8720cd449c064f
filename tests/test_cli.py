"""The `hotpath` command line against a real server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import zstandard

from hotpath.profiler.formats import collapsed, speedscope
from hotpath.profiler.formats import window as wire
from tests.servers import REPO

STACKS = "main (t.py:1);risk_check (t.py:10) 7\nmain (t.py:1);route (t.py:20) 3\n"


def hotpath(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotpath", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def ingest(url: str, labels: dict[str, str]) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    window = wire.from_profile(
        collapsed.loads(STACKS),
        service="trader",
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels=labels,
    )
    body = zstandard.ZstdCompressor().compress(window.model_dump_json().encode())
    response = httpx.post(
        url + "/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"}
    )
    assert response.status_code == 201, response.text


def test_export_writes_collapsed_and_speedscope(sqlite_server, tmp_path) -> None:
    ingest(sqlite_server.url, {"version": "1"})
    ingest(sqlite_server.url, {"version": "2"})
    out = tmp_path / "p.txt"
    result = hotpath(
        "export",
        "--server",
        sqlite_server.url,
        "--service",
        "trader",
        "--from",
        "-15m",
        "--label",
        "version=2",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert collapsed.loads(out.read_text()).samples == collapsed.loads(STACKS).samples
    to_stdout = hotpath(
        "export", "--server", sqlite_server.url, "--service", "trader", "--format", "speedscope"
    )
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert speedscope.loads(to_stdout.stdout).total == 20  # both versions, the last hour


def test_export_of_an_unknown_service_fails_clearly(sqlite_server) -> None:
    result = hotpath("export", "--server", sqlite_server.url, "--service", "nope")
    assert result.returncode == 1
    assert "unknown service 'nope'" in result.stderr and result.stdout == ""


def test_export_with_a_bad_time_or_no_server(sqlite_server) -> None:
    bad_time = hotpath(
        "export", "--server", sqlite_server.url, "--service", "x", "--from", "last week"
    )
    assert bad_time.returncode == 2 and "relative time" in bad_time.stderr
    port = sqlite_server.url.rsplit(":", 1)[1]
    away = hotpath("export", "--server", f"http://127.0.0.1:{int(port) + 1}", "--service", "x")
    assert away.returncode == 1 and "cannot reach the server" in away.stderr


def test_serve_refuses_a_database_it_cannot_open(tmp_path) -> None:
    result = hotpath("serve", "--port", "1", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert result.returncode == 1 and "cannot open the database" in result.stderr
