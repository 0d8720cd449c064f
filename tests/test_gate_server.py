"""`hotpath gate --server`: the exchange with a real server, and the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hotpath.gate.exchange import GateServerError, exchange
from tests.servers import REPO, free_port
from tests.test_bench_api import PDFMINER, synthetic_run

TEMPLATE = json.loads(PDFMINER.read_bytes())
FULLNAME = TEMPLATE["benchmarks"][0]["fullname"]
START = datetime(2026, 4, 1, tzinfo=UTC)


def write_run(folder: Path, i: int, median: float) -> Path:
    path = folder / f"run{i:02d}.json"
    path.write_bytes(synthetic_run(TEMPLATE, START + timedelta(hours=i), f"c{i:03d}", median))
    return path


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotpath", "gate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exchange_uploads_and_returns_the_base_history_oldest_first(
    sqlite_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    paths = [write_run(tmp_path, i, 0.010 + i * 1e-5) for i in range(4)]
    # Runs of main, uploaded out of order; each sees the others but never itself.
    for path in reversed(paths):
        history = exchange(sqlite_server.url, "pdf", "main", None, "main", path)
        assert path.read_bytes() not in [data for _, data in history.runs]
    pr = write_run(tmp_path, 10, 0.012)
    history = exchange(sqlite_server.url, "pdf", "pr-7", "abc123", "main", pr)
    assert [data for _, data in history.runs] == [p.read_bytes() for p in paths]
    assert all("main" in name for name, _ in history.runs)
    assert history.run_url.startswith(sqlite_server.url + "/benchmarks/pdf?")
    with sqlite_server.client() as client:
        page = client.get(history.run_url)
        assert page.status_code == 200
        assert "abc123" in page.text
    # Again (a re-run CI job): the same run, not a second one.
    again = exchange(sqlite_server.url, "pdf", "pr-7", "abc123", "main", pr)
    assert again.run_url == history.run_url


def test_exchange_turns_refusals_and_absence_into_messages(sqlite_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [{"name": "x"')
    with pytest.raises(GateServerError, match="truncated"):
        exchange(sqlite_server.url, "pdf", "main", None, "main", bad)
    good = write_run(tmp_path, 0, 0.01)
    with pytest.raises(GateServerError, match="project"):
        exchange(sqlite_server.url, "bad project!", "main", None, "main", good)
    with pytest.raises(GateServerError, match="cannot reach the server"):
        exchange(f"http://127.0.0.1:{free_port()}", "pdf", "main", None, "main", good)
    with pytest.raises(GateServerError, match="cannot read"):
        exchange(sqlite_server.url, "pdf", "main", None, "main", tmp_path / "missing.json")


def test_gate_command_with_a_server_fails_a_regression_and_passes_noise(
    sqlite_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    server = ["--server", sqlite_server.url, "--project", "pdf", "--base-branch", "main"]
    for i, median in enumerate(rng.normal(0.010, 0.0001, 8)):
        exchange(sqlite_server.url, "pdf", "main", None, "main", write_run(tmp_path, i, median))

    slower = write_run(tmp_path, 20, 0.0125)
    report = tmp_path / "report.json"
    failed = gate(str(slower), *server, "--branch", "pr-1", "--report-json", str(report))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "/benchmarks/pdf?" in failed.stdout + failed.stderr
    assert FULLNAME in report.read_text()

    same = write_run(tmp_path, 21, 0.01002)
    passed = gate(str(same), *server, "--branch", "pr-2")
    assert passed.returncode == 0, passed.stdout + passed.stderr

    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    refused = gate(str(broken), *server, "--branch", "pr-3")
    assert refused.returncode == 2
    assert "not pytest-benchmark JSON" in refused.stderr
    nowhere = gate(
        str(same), "--server", f"http://127.0.0.1:{free_port()}", "--project", "pdf",
        "--branch", "pr-4",
    )  # fmt: skip
    assert nowhere.returncode == 2
    assert "cannot reach the server" in nowhere.stderr
