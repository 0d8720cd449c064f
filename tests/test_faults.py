"""Faults with real processes, real HTTP and real databases: the server must not lose or double.

- PostgreSQL goes away (a TCP proxy between server and database is cut, idle or in the middle
  of a transaction): clear 503s, the server stays up, and recovers by itself once it is back.
- Two server processes ingest into one PostgreSQL at once, with retries crossing between them:
  every window is stored exactly once, every stack interned once, rollups add up exactly.
- The server is SIGKILLed and restarted while the real agent shipper is sending: the stored
  profile is exactly the sum of what was submitted, on SQLite and on PostgreSQL.
- A database call that waits (SQLite's write lock held elsewhere) must not freeze the server:
  health checks and queries are still answered meanwhile.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import zstandard
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from hotpath.agent.shipper import Shipper
from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import Frame, Profile, Stack
from hotpath.server.storage.sql.tables import frames as frames_table
from hotpath.server.storage.sql.tables import stacks as stacks_table
from hotpath.server.storage.sql.tables import windows as windows_table
from tests.servers import RunningServer, free_port, start_server, stop_process
from tests.tcp_proxy import TcpProxy

NOW = datetime.now(UTC).replace(microsecond=0)

only_postgres = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


# -- building, sending and reading windows ------------------------------------------------------


def make_window(
    stacks: dict[Stack, int],
    *,
    service: str = "trader",
    start: datetime | None = None,
    labels: dict[str, str] | None = None,
) -> wire.Window:
    profile = Profile()
    for stack, count in stacks.items():
        profile.add(stack, count)
    start = start or NOW - timedelta(minutes=10)
    return wire.from_profile(
        profile,
        service=service,
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=5),
        sample_rate_hz=100,
        labels=labels if labels is not None else {"host": "h1", "pid": "42"},
    )


def stack(*names: str) -> Stack:
    return tuple(Frame(name, "app.py", 1 + sum(map(ord, name)) % 500) for name in names)


def post(client: httpx.Client, window: wire.Window) -> httpx.Response:
    body = zstandard.ZstdCompressor().compress(window.model_dump_json().encode())
    return client.post("/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"})


def export(
    client: httpx.Client, service: str = "trader", labels: Iterable[str] = ()
) -> httpx.Response:
    params = {"service": service, "format": "collapsed", "from": "-1h", "label": list(labels)}
    return client.get("/api/v1/profile", params=params)


def stored(client: httpx.Client, service: str = "trader", labels: Iterable[str] = ()) -> Counter:
    response = export(client, service, labels)
    assert response.status_code == 200, response.text
    return Counter(collapsed.loads(response.text).samples)


def summed(windows: Iterable[wire.Window]) -> Counter:
    total: Counter[Stack] = Counter()
    for window in windows:
        total.update(wire.to_profile(window).samples)
    return total


def direct_engine(db_url: str) -> Engine:
    """The test's own connection to the database, beside (not through) the server."""
    return create_engine(db_url)


def wait_until_rolled_up(engine: Engine, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            left = conn.execute(
                select(func.count()).where(windows_table.c.rolled_up.is_(False))
            ).scalar_one()
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} windows still not rolled up"
        time.sleep(0.2)


# -- 1. PostgreSQL goes away --------------------------------------------------------------------


@pytest.fixture
def proxied(db_url: str, tmp_path: Path) -> Iterator[tuple[TcpProxy, RunningServer]]:
    """The server on PostgreSQL through a TCP proxy that the test can cut and restore."""
    real = make_url(db_url)
    proxy = TcpProxy(free_port(), (real.host or "127.0.0.1", real.port or 5432))
    proxy.restore()
    server = None
    try:
        through_proxy = real.set(port=proxy.listen_port).render_as_string(hide_password=False)
        server = start_server(through_proxy, tmp_path / "server")
        yield proxy, server
    finally:
        if server is not None:
            stop_process(server.process)
        proxy.cut()


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert "database" in response.json()["detail"].lower(), response.text


def retry_until_stored(client: httpx.Client, window: wire.Window, within_s: float) -> float:
    """Re-send `window` (same key) until it is stored; returns how long that took."""
    began = time.monotonic()
    while True:
        response = post(client, window)
        if response.status_code == 201:
            return time.monotonic() - began
        assert response.status_code == 503, response.text
        assert time.monotonic() - began < within_s, f"still 503 after {within_s} s: {response.text}"
        time.sleep(0.1)


@only_postgres
def test_postgres_outage_gives_503_with_a_message_and_recovers_without_a_restart(
    proxied: tuple[TcpProxy, RunningServer], db_url: str
) -> None:
    proxy, server = proxied
    before = make_window({stack("main", "quote"): 7, stack("main", "risk"): 3})
    during = make_window({stack("main", "route"): 5}, start=NOW - timedelta(minutes=9))
    after = make_window({stack("main", "quote"): 11}, start=NOW - timedelta(minutes=8))
    with server.client() as client:
        assert post(client, before).status_code == 201
        assert stored(client) == summed([before])

        proxy.cut()
        refused = post(client, during)
        assert_database_unavailable(refused)
        assert refused.headers.get("retry-after"), "a 503 should say when to retry"
        assert_database_unavailable(export(client))
        assert_database_unavailable(client.get("/api/v1/services"))
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert server.process.poll() is None, "the server died when the database went away"

        proxy.restore()
        assert retry_until_stored(client, during, within_s=5) < 5
        assert client.get("/healthz").status_code == 200
        again = post(client, during)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert post(client, after).status_code == 201
        assert stored(client) == summed([before, during, after])
        assert [s["samples"] for s in client.get("/api/v1/services").json()] == [26]

    engine = direct_engine(db_url)
    try:
        with engine.connect() as conn:
            keys = conn.execute(select(windows_table.c.idempotency_key)).scalars().all()
    finally:
        engine.dispose()
    assert sorted(keys) == sorted(w.idempotency_key for w in (before, during, after))
    assert "Traceback" not in server.log.read_text()


@only_postgres
def test_connection_lost_mid_transaction_stores_nothing_and_the_retry_stores_it_once(
    proxied: tuple[TcpProxy, RunningServer], db_url: str
) -> None:
    """The proxy dies just as the window row is being inserted, after its new frames and
    stacks were: PostgreSQL rolls all of it back, and the server must not keep (cache) the
    ids of those rolled-back stacks either, or the retried window would point at nothing."""
    proxy, server = proxied
    first = make_window({stack("main", "quote"): 4})
    cut_short = make_window(
        {stack("main", "quote"): 1, stack("main", "hedge", "price"): 6, stack("fresh"): 2},
        start=NOW - timedelta(minutes=9),
    )
    engine = direct_engine(db_url)
    try:
        with server.client() as client:
            assert post(client, first).status_code == 201

            proxy.cut_when(b"INSERT INTO windows")
            assert_database_unavailable(post(client, cut_short))
            assert proxy.triggered.is_set(), "the connection was not cut mid-transaction"
            assert server.process.poll() is None
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(windows_table)).scalar() == 1
                assert conn.execute(select(func.count()).select_from(stacks_table)).scalar() == 1
                assert conn.execute(select(func.count()).select_from(frames_table)).scalar() == 2
                assert conn.execute(text("SELECT sum(samples) FROM series")).scalar() == 4

            proxy.restore()
            retry_until_stored(client, cut_short, within_s=5)
            assert post(client, cut_short).status_code == 200
            assert stored(client) == summed([first, cut_short])
            assert client.get("/api/v1/services").json()[0]["samples"] == 13
    finally:
        engine.dispose()
    assert "Traceback" not in server.log.read_text()


# -- 2. Two servers, one PostgreSQL -------------------------------------------------------------


def many_windows(count: int, rng: random.Random) -> list[wire.Window]:
    """Windows over a few services and label sets whose stacks overlap heavily: each new
    stack first shows up in several windows that are in flight at the same moment."""
    functions = [f"fn_{i}" for i in range(60)]
    pool = [
        tuple(
            Frame(name, f"mod_{ord(name[-1]) % 7}.py", 10 + i % 40)
            for i, name in enumerate(rng.sample(functions, rng.randint(2, 14)))
        )
        for _ in range(count + 40)
    ]
    services = ["orders", "quotes", "risk"]
    label_sets = [{"host": "a", "pid": "1"}, {"host": "b", "pid": "2", "version": "2.0"}]
    windows = []
    for i in range(count):
        chosen = set(pool[:4]) | set(rng.sample(pool[i : i + 24], 10))
        windows.append(
            make_window(
                {s: rng.randint(1, 50) for s in chosen},
                service=services[i % len(services)],
                start=NOW - timedelta(minutes=40) + timedelta(seconds=5 * i),
                labels=label_sets[(i // len(services)) % len(label_sets)],
            )
        )
    return windows


@only_postgres
def test_two_servers_on_one_postgres_store_each_window_and_stack_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    windows = many_windows(300, random.Random(7))
    # Every window goes to one server; every third is also "retried" on the other one.
    sends = []
    for i, window in enumerate(windows):
        sends.append((window, i % 2))
        if i % 3 == 0:
            sends.append((window, 1 - i % 2))

    running: list[RunningServer] = []
    engine = direct_engine(db_url)
    try:
        # Both start at once too: their migrations must not trip over each other.
        with ThreadPoolExecutor(2) as pool:
            starting = [pool.submit(start_server, db_url, tmp_path / f"s{i}") for i in (0, 1)]
        running.extend(f.result() for f in starting if f.exception() is None)
        for future in starting:
            future.result()  # raises if that server did not start
        clients = [s.client() for s in running]

        def send(job: tuple[wire.Window, int]) -> tuple[str, int, str]:
            window, target = job
            try:
                response = post(clients[target], window)
            except httpx.TransportError as exc:  # e.g. the server crashed mid-request
                return window.idempotency_key, -1, repr(exc)
            return window.idempotency_key, response.status_code, response.text[:300]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, sends))

        assert {status for _, status, _ in results} <= {200, 201}, [
            r for r in results if r[1] not in (200, 201)
        ][:3]
        created = Counter(key for key, status, _ in results if status == 201)
        assert len(created) == len(windows) and set(created.values()) == {1}

        def check_profiles(client: httpx.Client) -> None:
            for service in ("orders", "quotes", "risk"):
                mine = [w for w in windows if w.service == service]
                assert stored(client, service) == summed(mine), service
                v2 = [w for w in mine if w.labels.get("version") == "2.0"]
                assert stored(client, service, ["version=2.0"]) == summed(v2), service
            totals = {s["name"]: s["samples"] for s in client.get("/api/v1/services").json()}
            assert totals == {
                service: sum(sum(w.counts) for w in windows if w.service == service)
                for service in ("orders", "quotes", "risk")
            }

        for client in clients:
            check_profiles(client)

        sent_stacks = {s for w in windows for s in wire.to_profile(w).samples}
        sent_frames = {f for s in sent_stacks for f in s}
        with engine.connect() as conn:
            n_stacks, n_digests = conn.execute(
                select(func.count(), func.count(stacks_table.c.digest.distinct()))
            ).one()
            n_frames = conn.execute(select(func.count()).select_from(frames_table)).scalar()
            n_windows, n_keys = conn.execute(
                select(func.count(), func.count(windows_table.c.idempotency_key.distinct()))
            ).one()
        assert (n_stacks, n_digests) == (len(sent_stacks), len(sent_stacks))
        assert n_frames == len(sent_frames)
        assert (n_windows, n_keys) == (len(windows), len(windows))

        # Both servers roll up every second; afterwards queries are answered from rollups.
        wait_until_rolled_up(engine)
        for client in clients:
            check_profiles(client)
        for client in clients:
            client.close()
    finally:
        engine.dispose()
        for server in running:
            stop_process(server.process)


# -- 3. The server is killed during ingest ------------------------------------------------------


def test_server_killed_and_restarted_during_ingest_loses_and_doubles_no_window(
    db_url: str, tmp_path: Path
) -> None:
    """The real shipper sends through a TCP proxy into the server. Two SIGKILLs: one at a
    moment chosen at random while windows stream in, and one right after the server stored a
    window but before its 201 reached the agent (the proxy swallows the reply), so the agent
    must re-send a window the server already has."""
    rng = random.Random(11)
    hot = [stack("main", "loop", f"step_{i}") for i in range(12)]
    windows = [
        make_window(
            {s: rng.randint(1, 99) for s in rng.sample(hot, 5)},
            start=NOW - timedelta(minutes=30) + timedelta(seconds=i * 5),
            labels={"host": "h1", "pid": str(100 + i % 3)},
        )
        for i in range(240)
    ]
    port = free_port()
    data_dir = tmp_path / "server"
    server = start_server(db_url, data_dir, port)
    proxy = TcpProxy(free_port(), ("127.0.0.1", port))
    proxy.restore()
    shipper = Shipper(
        f"http://127.0.0.1:{proxy.listen_port}", tmp_path / "spool", backoff_s=0.1, timeout_s=5
    )
    closed = False
    submitted, abandon = threading.Event(), threading.Event()
    restarted = {100: threading.Event(), 180: threading.Event()}

    def submit_all() -> None:
        # Like a sampling agent, windows keep coming while the server is down; each one wakes
        # the shipper. Some windows wait for a restart, so that windows still come after it.
        for i, window in enumerate(windows):
            if i in restarted:
                restarted[i].wait(60)
            if abandon.is_set():
                return
            shipper.submit(window)
            time.sleep(0.01)
        submitted.set()

    def wait_shipped(count: int) -> None:
        deadline = time.monotonic() + 30
        while shipper.shipped < count:
            assert time.monotonic() < deadline, f"only {shipper.shipped} windows shipped"
            time.sleep(0.002)

    def kill_and_restart() -> RunningServer:
        server.process.kill()  # SIGKILL: no shutdown; whatever is in flight is cut
        server.process.wait()
        return start_server(db_url, data_dir, port)

    submitter = threading.Thread(target=submit_all, daemon=True)
    try:
        submitter.start()
        wait_shipped(40)
        time.sleep(random.uniform(0, 0.02))
        server = kill_and_restart()
        restarted[100].set()

        wait_shipped(130)
        proxy.cut_when(b"HTTP/1.1 201", in_replies=True)
        assert proxy.triggered.wait(30), "no window was stored after the restart"
        server = kill_and_restart()
        proxy.restore()
        restarted[180].set()

        assert submitted.wait(30)
        left, closed = shipper.close(timeout_s=30), True
        assert left == 0, "windows left in the spool"

        expected = summed(windows)
        with server.client() as client:
            assert stored(client) == expected
            engine = direct_engine(db_url)
            try:
                with engine.connect() as conn:
                    n_windows, samples = conn.execute(
                        select(func.count(), func.sum(windows_table.c.sample_count))
                    ).one()
                assert (n_windows, samples) == (len(windows), expected.total())
                wait_until_rolled_up(engine)
            finally:
                engine.dispose()
            assert stored(client) == expected, "wrong once rolled up"
        assert (shipper.shipped, shipper.rejected) == (len(windows), 0)
        assert shipper.deferred > 0, "the kills did not interrupt shipping"
    finally:
        abandon.set()
        for event in restarted.values():
            event.set()
        submitter.join(10)
        try:
            if not closed:
                shipper.close(timeout_s=0)
        finally:
            stop_process(server.process)
            proxy.cut()


# -- 4. A database that is slow to answer -------------------------------------------------------


def test_a_window_waiting_for_a_locked_sqlite_database_does_not_stall_other_requests(
    tmp_path: Path,
) -> None:
    """Another writer holds SQLite's write lock, so an ingest waits for it (up to the busy
    timeout). Meanwhile the health check and a flame-graph query (WAL lets reads go on) must
    still be answered: one slow database call must not freeze the whole server."""
    db = tmp_path / "hotpath.db"
    server = start_server(f"sqlite:///{db}", tmp_path / "server")
    kept = make_window({stack("main", "quote"): 3})
    blocked = make_window({stack("main", "risk"): 2}, start=NOW - timedelta(minutes=9))
    answers: dict[str, float | None] = {}
    locker = None
    try:
        locker = sqlite3.connect(db, isolation_level=None, timeout=5)
        with server.client() as client, server.client() as other, ThreadPoolExecutor(1) as pool:
            assert post(client, kept).status_code == 201
            locker.execute("BEGIN IMMEDIATE")
            try:
                waiting = pool.submit(post, other, blocked)
                time.sleep(0.5)  # the ingest is now waiting for the write lock
                for path in ("/healthz", "/api/v1/services"):
                    began = time.monotonic()
                    try:
                        ok = httpx.get(server.url + path, timeout=3).status_code == 200
                    except httpx.TimeoutException:
                        ok = False
                    answers[path] = round(time.monotonic() - began, 2) if ok else None
            finally:
                locker.execute("ROLLBACK")
            assert waiting.result().status_code == 201
            assert stored(client) == summed([kept, blocked])
    finally:
        if locker is not None:
            locker.close()
        stop_process(server.process)
    assert None not in answers.values(), f"seconds to answer (None: not within 3 s): {answers}"
