"""schemathesis (a kept property-based API tester) against our OpenAPI schema, on a real
server (uvicorn, `--auth required`) on SQLite and on PostgreSQL: no 5xx, every status code
and body as the schema documents them. Two passes: free fuzzing of every operation, then
the same with the names of seeded data (a service with a hot path, a benchmark project), so
the cases reach the code behind the 404s too.

Excluded: revoking tokens by id (the run would revoke its own token, found through GET
/api/v1/tokens, and test nothing after)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.servers import RunningServer, start_server, stop_process
from tests.test_bench_api import PDFMINER
from tests.test_tenant_isolation import HOT_PATH, PROJECT, SERVICE, order_window, post_window

pytest.importorskip("schemathesis")
EXAMPLES = 30
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)
SEEDED = f"""
[parameters]
service = "{SERVICE}"
name = "{HOT_PATH}"
project = "{PROJECT}"
branch = "main"
"""


@pytest.fixture
def seeded(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(
        db_url,
        tmp_path / "server",
        auth="required",
        env={"HOTPATH_RATE_LIMIT_PER_S": "100000", "HOTPATH_RATE_LIMIT_BURST": "100000"},
    )
    try:
        with running.client() as client:
            now = datetime.now(UTC).replace(microsecond=0)
            for minutes in (50, 20, 5):
                window = order_window(uuid.uuid4().hex, now - timedelta(minutes=minutes))
                assert post_window(client, window).status_code == 201
            run = client.post(
                "/api/v1/bench/runs",
                params={"project": PROJECT, "branch": "main"},
                content=PDFMINER.read_bytes(),
            )
            assert run.status_code == 201, run.text
        yield running
    finally:
        stop_process(running.process)


def schemathesis(
    running: RunningServer, config: Path | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli"]
    if config is not None:
        command += ["--config-file", str(config)]
    command += [
        "run",
        f"{running.url}/openapi.json",
        "-H",
        f"Authorization: Bearer {running.token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261129",
        "--exclude-path-regex",
        r"^/api/v1/tokens/\{token_id\}$",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_ANALYTICS": "false", "NO_COLOR": "1"}
    # cwd: schemathesis keeps a cache folder there
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_no_server_errors_and_the_schema_holds(seeded: RunningServer, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SEEDED)
    for pass_config in (None, config):
        done = schemathesis(seeded, pass_config, tmp_path)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:]
        cases = re.search(r"(\d+) generated, (\d+) passed", out)
        assert cases, out[-3000:]
        generated, passed = map(int, cases.groups())
        assert generated == passed and generated >= 300, out[-3000:]
        print(f"schemathesis ({'seeded' if pass_config else 'free'}): {generated} cases passed")
    assert "Internal Server Error" not in seeded.log.read_text()
