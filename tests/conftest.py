"""Shared fixtures: real databases (SQLite, PostgreSQL), a real server on uvicorn, real targets."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.servers import RunningServer, start_server, stop_process

PG_ADMIN_URL = os.environ.get(
    "HOTPATH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Real headless Chromium (Playwright), skipped with a reason where it is not installed.

    Per module, not per session: Playwright's sync API keeps an event loop running in this
    thread while it is open, and later tests that call asyncio.run() would fail."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: scripts/setup --browser installs it")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
