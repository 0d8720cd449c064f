"""Every client command with a token (`--token` or `HOTPATH_TOKEN`) against a real server that
requires one, and a clear refusal without: upload, export, diff, paths and gate (the agent's
token is tested with the agent, tests/test_spool_limits.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, RunningServer, make_token, start_server, stop_process
from tests.test_gate_server import write_run


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    data = tmp_path_factory.mktemp("clients")
    db = f"sqlite:///{data / 'hotpath.db'}"
    running = start_server(db, data / "server", auth="required")
    try:
        yield running, db
    finally:
        stop_process(running.process)


def hotpath(*argv: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HOTPATH_TOKEN"}
    if token:
        env["HOTPATH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "hotpath", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_profile_clients_send_their_token(
    secured: tuple[RunningServer, str], tmp_path: Path
) -> None:
    running, db = secured
    ci = make_token(db, "ingest,read")
    reader = make_token(db, "read")
    profile = tmp_path / "p.txt"
    profile.write_text("main;handle;parse 70\nmain;handle 30\n")
    server = ("--server", running.url)

    refused = hotpath("upload", str(profile), "--service", "svc", *server)
    assert refused.returncode == 2 and "401" in refused.stderr and "token" in refused.stderr
    no_scope = hotpath("upload", str(profile), "--service", "svc", *server, "--token", reader)
    assert no_scope.returncode == 2 and "ingest scope" in no_scope.stderr
    for version in ("1", "2"):
        stored = hotpath("upload", str(profile), "--service", "svc", *server, "--token", ci,
                         "--label", f"version={version}")  # fmt: skip
        assert stored.returncode == 0, stored.stderr

    out = tmp_path / "out.txt"
    read = ("--service", "svc", *server)
    assert hotpath("export", *read, "--format", "collapsed", "-o", str(out)).returncode != 0
    exported = hotpath("export", *read, "--format", "collapsed", "-o", str(out), token=reader)
    assert exported.returncode == 0, exported.stderr
    assert "main;handle;parse 140" in out.read_text()  # both uploads
    paths = hotpath("paths", *read, token=reader)
    assert paths.returncode == 0, paths.stderr
    sides = ("--base", "version=1", "--head", "version=2")
    diff = hotpath("diff", *read, *sides, "--token", reader)
    assert diff.returncode == 0, diff.stderr
    unauthorised = hotpath("diff", *read, *sides)
    assert unauthorised.returncode == 2 and "401" in unauthorised.stderr


def test_gate_writes_the_base_history_only_with_publish(
    secured: tuple[RunningServer, str], tmp_path: Path
) -> None:
    running, db = secured
    ci = make_token(db, "ingest,read")
    publisher = make_token(db, "ingest,read,publish")
    server = ("--server", running.url, "--project", "pdf", "--base-branch", "main")
    for i in range(4):
        on_main = hotpath("gate", str(write_run(tmp_path, i, 0.010)), *server, "--branch", "main",
                          token=publisher)  # fmt: skip
        assert on_main.returncode == 0, on_main.stdout + on_main.stderr
    forged = hotpath("gate", str(write_run(tmp_path, 9, 0.001)), *server, "--branch", "main",
                     token=ci)  # fmt: skip
    assert forged.returncode == 2 and "protected" in forged.stderr
    pull = hotpath("gate", str(write_run(tmp_path, 10, 0.0101)), *server, "--branch", "pr-1",
                   "--token", ci)  # fmt: skip
    assert pull.returncode == 0, pull.stdout + pull.stderr
    anonymous = hotpath("gate", str(write_run(tmp_path, 11, 0.0101)), *server, "--branch", "pr-2")
    assert anonymous.returncode == 2 and "401" in anonymous.stderr
