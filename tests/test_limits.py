"""Limits that name themselves: series and hot-path names per service, and the size of
/metrics, on SQLite and PostgreSQL, through the storage contract and through a real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, MetaData, Table, column, event, insert

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU, PROFILE_TYPES
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.errors import HotPathLimitExceeded, SeriesLimitExceeded
from hotpath.server.storage.profiles import DEFAULT_TENANT, HotPathCalls, Limits
from hotpath.server.storage.sql import tables
from hotpath.server.storage.sql.database import MIGRATIONS, make_engine
from hotpath.server.storage.sql.hotpath_rollups import encode as encode_histogram
from hotpath.server.storage.sql.series import series_digest
from hotpath.server.storage.sql.timeplan import to_us
from tests.servers import RunningServer, start_server, stop_process
from tests.test_storage_contract import piece, select

MS = 1_000_000
SECOND = timedelta(seconds=1)


@pytest.fixture
def small(db_url: str) -> Iterator[Storage]:
    """Storage with 5 series and 3 hot-path names per service."""
    opened = open_storage(db_url, limits=Limits(series_per_service=5, hot_paths_per_service=3))
    yield opened
    opened.close()


def calls(*names: str) -> list[HotPathCalls]:
    histogram = Histogram()
    histogram.record(2 * MS)
    return [HotPathCalls(name, histogram, budget_ns=10 * MS) for name in names]


def series_of(storage: Storage, service: str = "svc") -> int:
    return next(s.series for s in storage.profiles.services(DEFAULT_TENANT) if s.name == service)


# -- series per service ---------------------------------------------------------------------


def test_a_new_series_past_the_limit_is_refused_naming_the_label(small: Storage) -> None:
    store = small.profiles
    for n in range(5):
        store.put(piece("main;work 10", labels={"host": "a", "req_id": str(n)}))
    with pytest.raises(SeriesLimitExceeded) as refused:
        store.put(piece("main;work 7", labels={"host": "a", "req_id": "5"}))
    message = str(refused.value)
    assert "service 'svc' has 5 active series" in message
    assert "max_series_per_service is 5" in message
    assert "label 'req_id' has 5 values: drop it or raise the limit" in message
    assert (refused.value.label, refused.value.label_values) == ("req_id", 5)
    # Nothing of the refused piece was stored; existing series keep taking windows.
    assert store.sample_count(select()) == 50
    assert not store.put(piece("main;work 3", labels={"host": "a", "req_id": "2"})).duplicate
    assert store.sample_count(select()) == 53
    assert series_of(small) == 5
    # Another service has its own room.
    store.put(piece("main 1", service="other", labels={"req_id": "x"}))


def test_series_gone_quiet_for_the_active_window_make_room(db_url: str) -> None:
    """The agent labels each process with its pid: restarts must not use the limit up."""
    opened = open_storage(db_url, limits=Limits(series_per_service=5, active_window=SECOND))
    store = opened.profiles
    try:
        for pid in range(5):
            store.put(piece("main 1", labels={"pid": str(pid)}))
        time.sleep(1.2)
        for pid in range(5, 10):
            store.put(piece("main 1", labels={"pid": str(pid)}))
        with pytest.raises(SeriesLimitExceeded, match="label 'pid' has 5 values"):
            store.put(piece("main 1", labels={"pid": "10"}))
        # A quiet series comes back: existing series are always accepted.
        store.put(piece("main 1", labels={"pid": "0"}))
        assert series_of(opened) == 10
    finally:
        opened.close()


def test_old_data_times_do_not_dodge_the_series_limit(small: Storage) -> None:
    """Activity is the server's clock: a sender cannot make its new series look quiet."""
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    for n in range(5):
        small.profiles.put(piece("main 1", labels={"req_id": str(n)}, start=two_hours_ago))
    with pytest.raises(SeriesLimitExceeded):
        small.profiles.put(piece("main 1", labels={"req_id": "5"}, start=two_hours_ago))


def test_series_that_differ_by_type_blame_no_label(small: Storage) -> None:
    store = small.profiles
    for kind in PROFILE_TYPES.values():
        store.put(piece("main 1", type=kind))
    with pytest.raises(SeriesLimitExceeded, match=r"\(max_series_per_service is 5\); raise"):
        store.put(piece("main 1", labels={"host": "a"}))


# -- hot-path names per service -------------------------------------------------------------


def test_a_window_with_hot_path_names_past_the_limit_is_refused_whole(small: Storage) -> None:
    store = small.profiles
    with pytest.raises(HotPathLimitExceeded) as refused:
        store.put(piece("main 10", hot_paths=calls("a", "b", "c", "d", "e")))
    assert refused.value.refused == ["d", "e"]
    assert str(refused.value) == (
        "service 'svc' has 3 active hot-path names (max_hot_paths_per_service is 3); the "
        "window brings 2 new ones that do not fit: 'd', 'e'. Nothing was stored: send it "
        "without them, or raise the limit"
    )
    assert store.services(DEFAULT_TENANT) == []  # nothing half-written, not even the service
    # The same window without them (what the agent sends next) is stored whole.
    result = store.put(piece("main 10", hot_paths=calls("a", "b", "c")))
    assert result.window_id is not None and store.sample_count(select()) == 10
    # Known names keep coming in, on any series of the service; a new one is still refused.
    store.put(piece("main 5", labels={"host": "b"}, hot_paths=calls("c", "a")))
    with pytest.raises(HotPathLimitExceeded):
        store.put(piece("main 5", labels={"host": "b"}, hot_paths=calls("c", "a", "f")))
    histograms = store.hot_path_histograms(select())
    assert sorted(histograms) == ["a", "b", "c"] and histograms["a"][1].count == 2
    # Another service has its own room.
    assert store.put(piece("main 1", service="other", hot_paths=calls("d"))).window_id


def test_hot_path_names_gone_quiet_make_room(db_url: str) -> None:
    opened = open_storage(db_url, limits=Limits(hot_paths_per_service=3, active_window=SECOND))
    store = opened.profiles
    try:
        store.put(piece("main 1", hot_paths=calls("old1", "old2", "old3")))
        with pytest.raises(HotPathLimitExceeded):
            store.put(piece("main 1", hot_paths=calls("new0")))
        time.sleep(1.2)
        with pytest.raises(HotPathLimitExceeded) as refused:
            store.put(piece("main 1", hot_paths=calls("new1", "new2", "new3", "new4")))
        assert refused.value.refused == ["new4"]
        store.put(piece("main 1", hot_paths=calls("new1", "new2", "new3")))
        # The old names are still the service's: they come back without a check.
        assert store.put(piece("main 1", hot_paths=calls("old1"))).window_id
    finally:
        opened.close()


def test_a_sender_that_keeps_sending_refused_things_is_refused_from_memory(
    small: Storage,
) -> None:
    """Every window of a refused series or name must not take the service's lock and count
    again (the SQL backend remembers a refusal for a twelfth of the active window)."""
    store = small.profiles
    for n in range(5):
        names = calls(f"p{n}") if n < 3 else []
        store.put(piece("main 1", labels={"req_id": str(n)}, hot_paths=names))
    with pytest.raises(HotPathLimitExceeded):
        store.put(piece("main 1", labels={"req_id": "0"}, hot_paths=calls("p5", "p6")))
    with pytest.raises(SeriesLimitExceeded):
        store.put(piece("main 1", labels={"req_id": "5"}))
    statements: list[str] = []
    engine = store.engine  # type: ignore[attr-defined]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with pytest.raises(SeriesLimitExceeded, match="label 'req_id' has 5 values"):
            store.put(piece("main 1", labels={"req_id": "5"}))
        with pytest.raises(HotPathLimitExceeded, match="3 active hot-path names") as refused:
            store.put(piece("main 1", labels={"req_id": "1"}, hot_paths=calls("p6", "p1")))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert refused.value.refused == ["p6"]
    assert not [s for s in statements if "count(" in s.lower() or "FOR NO KEY" in s]


# -- several servers on one database ----------------------------------------------------------


def test_concurrent_servers_on_one_database_keep_both_limits_exactly(db_url: str) -> None:
    """Two storages (two servers' engines and caches) and 8 writers, 64 windows each time:
    the service ends with exactly the limit of series, and another with exactly the limit of
    hot-path names, whoever won the races."""
    limits = Limits(series_per_service=20, hot_paths_per_service=30)
    servers = [open_storage(db_url, limits=limits) for _ in range(2)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(k: int, new_series: bool) -> None:
        store = servers[k % 2].profiles
        for n in range(8):
            made = (
                piece("main;work 2", labels={"req_id": f"{k}-{n}"})
                if new_series
                else piece("main;work 2", service="named", hot_paths=calls(f"w{k}-n{n}"))
            )
            try:
                store.put(made)
                with lock:
                    outcomes.append("stored")
            except (SeriesLimitExceeded, HotPathLimitExceeded):
                with lock:
                    outcomes.append("refused")

    def race(new_series: bool) -> None:
        outcomes.clear()
        threads = [threading.Thread(target=writer, args=(k, new_series)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        race(new_series=True)
        assert outcomes.count("stored") == 20 and outcomes.count("refused") == 44
        assert series_of(servers[0]) == 20
        race(new_series=False)
        assert outcomes.count("stored") == 30 and outcomes.count("refused") == 34
        named = select(service="named")
        assert len(servers[1].profiles.hot_path_histograms(named)) == 30
    finally:
        for opened in servers:
            opened.close()


# -- through a real server ------------------------------------------------------------------


def window(service: str, labels: dict[str, str] | None = None, hot_paths: list[str] = ()) -> bytes:
    histogram = Histogram()
    histogram.record(3 * MS)
    now = datetime.now(UTC)
    return (
        wire.Window(
            service=service,
            idempotency_key=uuid.uuid4().hex,
            start=now - timedelta(seconds=1),
            end=now,
            sample_rate_hz=100,
            labels=labels or {},
            frames=[("work", "app.py", 3), ("main", "app.py", 1)],
            stacks=[[1, 0]],
            counts=[10],
            hot_paths=[
                wire.HotPathWindow(name=name, budget_ns=5 * MS, histogram=histogram.to_wire())
                for name in hot_paths
            ],
        )
        .model_dump_json()
        .encode()
    )


@pytest.fixture
def limited_server(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    env = {key: str(value) for key, value in request.param.items()}
    running = start_server(db_url, tmp_path / "server", env=env)
    try:
        yield running
    finally:
        stop_process(running.process)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# The families whose label sets come from what clients send: bounded by max_metrics_series.
CLIENT_DRIVEN = (
    "hotpath_ingest_windows",
    "hotpath_ingest_samples",
    "hotpath_ingest_bytes",
    "hotpath_ingest_hot_paths_refused",
    "hotpath_hot_path_",
)


def client_driven_series(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> int:
    firing = [k for k in samples if k[0] == "hotpath_alerts_firing"]
    return len([k for k in samples if k[0].startswith(CLIENT_DRIVEN)]) + len(firing)


@pytest.mark.parametrize(
    "limited_server",
    [{"HOTPATH_MAX_SERIES_PER_SERVICE": 3, "HOTPATH_MAX_HOT_PATHS_PER_SERVICE": 10}],
    indirect=True,
)
def test_ingest_names_the_limit_it_hits(limited_server: RunningServer) -> None:
    with limited_server.client() as client:
        for n in range(3):
            sent = client.post("/api/v1/windows", content=window("trader", {"req_id": str(n)}))
            assert sent.status_code == 201, sent.text
        refused = client.post("/api/v1/windows", content=window("trader", {"req_id": "3"}))
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "service 'trader' has 3 active series (max_series_per_service is 3); "
            "label 'req_id' has 3 values: drop it or raise the limit",
            "limit": "max_series_per_service",
        }
        names = [f"path_{i}" for i in range(64)]
        whole = client.post("/api/v1/windows", content=window("trader", {"req_id": "0"}, names))
        assert whole.status_code == 422, whole.text
        answer = whole.json()
        assert answer["limit"] == "max_hot_paths_per_service"
        assert answer["refused_hot_paths"] == names[10:]
        assert answer["detail"].startswith(
            "service 'trader' has 10 active hot-path names (max_hot_paths_per_service is 10); "
            "the window brings 54 new ones that do not fit: 'path_10', 'path_11'"
        )
        fits = client.post("/api/v1/windows", content=window("trader", {"req_id": "0"}, names[:10]))
        assert fits.status_code == 201, fits.text
        paths = client.get("/api/v1/hotpaths", params={"service": "trader", "from": "-1h"})
        m = metric_samples(client.get("/metrics").text)
    assert paths.status_code == 200, paths.text
    assert len(paths.json()) == 10
    assert m[("hotpath_ingest_hot_paths_refused_total", (("service", "trader"),))] == 54
    exported = {dict(k[1])["hot_path"] for k in m if k[0] == "hotpath_hot_path_budget_seconds"}
    assert exported == set(names[:10])


@pytest.mark.parametrize(
    "limited_server",
    [{"HOTPATH_MAX_METRICS_SERIES": 2_000, "HOTPATH_MAX_HOT_PATHS_PER_SERVICE": 100_000}],
    indirect=True,
)
def test_metrics_stay_under_the_bound_with_64_new_hot_paths_per_window(
    limited_server: RunningServer,
) -> None:
    """The issue's probe: 64 new hot-path names per window, window after window (the
    storage limit raised out of the way, so only /metrics' own bound holds)."""
    with limited_server.client() as client:
        for n in range(40):
            names = [f"w{n}_path_{i}" for i in range(64)]
            sent = client.post("/api/v1/windows", content=window(f"svc{n % 4}", None, names))
            assert sent.status_code == 201, sent.text
        body = client.get("/metrics").text
    m = metric_samples(body)
    assert client_driven_series(m) <= 2_000
    assert m[("hotpath_metrics_series_max", ())] == 2_000
    assert 1_900 < m[("hotpath_metrics_series_used", ())] <= 2_000
    assert m[("hotpath_metrics_series_dropped_total", (("family", "hot_path"),))] > 2_000
    # First come, first kept: svc0 and its names filled the bound before svc2 and svc3 came.
    assert m[("hotpath_ingest_windows_total", (("outcome", "stored"), ("service", "svc0")))] == 10
    assert not [k for k in m if ("service", "svc3") in k[1]]
    # Each refused service's ten windows were counted as dropped updates.
    admitted = {dict(k[1])["service"] for k in m if k[0] == "hotpath_ingest_windows_total"}
    assert "svc0" in admitted and "svc3" not in admitted
    refused = 4 - len(admitted)
    assert m[("hotpath_metrics_series_dropped_total", (("family", "service"),))] == 10 * refused
    assert len(body) < 600_000


@pytest.mark.parametrize("limited_server", [{}], indirect=True)
def test_metrics_with_the_default_limits(limited_server: RunningServer) -> None:
    """Defaults: the storage keeps 200 names of the service, /metrics shows just those."""
    with limited_server.client() as client:
        for n in range(50):
            names = [f"w{n}_path_{i}" for i in range(64)]
            sent = client.post("/api/v1/windows", content=window("svc", None, names))
            if sent.status_code == 422:  # as the agent does: again, without the refused names
                refused = set(sent.json()["refused_hot_paths"])
                names = [name for name in names if name not in refused]
                sent = client.post("/api/v1/windows", content=window("svc", None, names))
            assert sent.is_success, sent.text
        body = client.get("/metrics").text
    m = metric_samples(body)
    assert client_driven_series(m) <= 10_000
    assert m[("hotpath_ingest_hot_paths_refused_total", (("service", "svc"),))] == 50 * 64 - 200
    assert len({dict(k[1])["hot_path"] for k in m if k[0].startswith("hotpath_hot_path_")}) == 200
    assert ("hotpath_metrics_series_dropped_total", (("family", "hot_path"),)) not in m


# -- the upgrade ------------------------------------------------------------------------------


def test_the_upgrade_keeps_the_names_and_series_a_service_has(db_url: str) -> None:
    """Migration 0010 fills the names from stored hot paths (hours and raw calls) and the
    series' arrival from their data's time: what a service had stays accepted."""
    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0009")
    recent_us = to_us(datetime.now(UTC) - timedelta(minutes=10))
    blob = encode_histogram(calls("x")[0].calls)
    rows = {"count": 1, "sum_ns": 2 * MS, "max_ns": 2 * MS, "buckets": blob}
    with engine.begin() as conn:
        service_id = conn.execute(
            insert(tables.services).returning(tables.services.c.id),
            {"tenant": DEFAULT_TENANT, "name": "svc"},
        ).scalar_one()
        series_id = conn.execute(
            insert(table_of(conn, "series")).returning(column("id")),
            {
                "service_id": service_id,
                "digest": series_digest(CPU.id, {}),
                "labels": "{}",
                "profile_type": CPU.id,
                "sample_rate_hz": 100.0,
                "first_seen_us": recent_us,
                "last_seen_us": recent_us,
                "samples": 1,
            },
        ).scalar_one()
        owner = {"service_id": service_id, "series_id": series_id}
        for name in ("a", "b"):
            conn.execute(
                insert(table_of(conn, "hot_path_hours")),
                {**owner, **rows, "name": name, "hour_us": recent_us},
            )
        window_id = conn.execute(
            insert(tables.windows).returning(tables.windows.c.id),
            {
                **owner,
                "profile_type": CPU.id,
                "idempotency_key": "old-window",
                "start_us": recent_us,
                "end_us": recent_us,
                "sample_count": 1,
                "rolled_up": False,
                "pairs": b"",
            },
        ).scalar_one()
        for name in ("b", "c"):
            conn.execute(
                insert(table_of(conn, "hot_path_calls")),
                {**owner, **rows, "name": name, "start_us": recent_us, "window_id": window_id},
            )
    engine.dispose()
    opened = open_storage(db_url, limits=Limits(series_per_service=1, hot_paths_per_service=2))
    try:
        with pytest.raises(HotPathLimitExceeded) as refused:
            opened.profiles.put(piece("main 1", hot_paths=calls("a", "b", "c", "d")))
        assert refused.value.refused == ["d"]  # a, b, c: the service's already
        assert opened.profiles.put(piece("main 1", hot_paths=calls("a", "b", "c"))).window_id
        with pytest.raises(SeriesLimitExceeded, match="has 1 active series"):
            opened.profiles.put(piece("main 1", labels={"host": "new"}))
    finally:
        opened.close()


def table_of(conn: Connection, name: str) -> Table:
    """A table as the database has it now (the code's tables are the newest schema's)."""
    return Table(name, MetaData(), autoload_with=conn)
