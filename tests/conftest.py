"""Shared fixtures: real databases (SQLite, PostgreSQL), a real server on uvicorn, real targets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "HOTPATH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """An admin URL for PostgreSQL; skipped when absent unless CI requires it."""
    reason = _postgres_available()
    if reason:
        if os.environ.get("HOTPATH_REQUIRE_POSTGRES"):
            pytest.fail(f"HOTPATH_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    yield PG_ADMIN_URL


def _fresh_postgres_database(admin_url: str) -> tuple[str, str]:
    name = f"hotpath_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hotpath.db'}"
        return
    admin_url = request.getfixturevalue("postgres_server")
    url, name = _fresh_postgres_database(admin_url)
    try:
        yield url
    finally:
        _drop_postgres_database(admin_url, name)


class RunningServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def start_server(db: str, data_dir: Path) -> RunningServer:
    port = free_port()
    log = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--port",
            str(port),
            "--db",
            db,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return RunningServer(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    """`hotpath serve` on uvicorn, on a free port, on a fresh database of each backend."""
    running = start_server(db_url, tmp_path / "server")
    try:
        yield running
    finally:
        stop_process(running.process)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[RunningServer]:
    """The server on SQLite only, for tests whose subject is not the storage backend."""
    running = start_server(f"sqlite:///{tmp_path / 'hotpath.db'}", tmp_path / "server")
    try:
        yield running
    finally:
        stop_process(running.process)
