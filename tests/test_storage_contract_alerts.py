"""The alert, benchmark-run and upkeep contracts (server/storage/{alerts,bench,upkeep}.py),
run on every backend (SQLite and PostgreSQL): rules, firing and resolving with their
notifications in one transaction, the outbox, the evaluation lock, benchmark runs, tenants
kept apart, and the migration that gave these rows their tenant."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, Table, insert

from hotpath.profiler.formats.pytest_benchmark import load_run
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.server.storage import Storage, open_storage
from hotpath.server.storage.alerts import NewAlert, StoredRule, StreakState
from hotpath.server.storage.errors import StorageUnavailable, UnknownRun
from hotpath.server.storage.profiles import Piece
from hotpath.server.storage.sql.database import MIGRATIONS, make_engine
from tests.test_alerts import window as alerts_window
from tests.test_bench_api import PDFMINER, synthetic_run

US = 1_000_000
MS = 1_000_000
T0 = 1_800_000_000 * US


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    opened = open_storage(db_url)
    yield opened
    opened.close()


def new_alert(tenant: str = "default", service: str = "trader", value_ms: int = 150) -> NewAlert:
    return NewAlert(
        tenant=tenant,
        fingerprint="0123456789abcdef",
        service=service,
        hot_path="order",
        severity="page",
        quantile=0.99,
        budget_ns=100 * MS,
        fire_after=3,
        interval_s=10.0,
        value_ns=value_ms * MS,
        starts_us=T0,
    )


# -- rules ----------------------------------------------------------------------------------


def test_rules_are_created_replaced_and_deleted_per_tenant(storage: Storage) -> None:
    alerts = storage.alerts
    rule = StoredRule("a", "trader", "order", quantile=0.5, budget_ns=2 * MS)
    assert alerts.put_rule(rule, now_us=1) == rule
    assert alerts.rules("a") == [rule]
    assert alerts.rules("b") == []
    replaced = StoredRule("a", "trader", "order", fire_after=5, enabled=False)
    assert alerts.put_rule(replaced, now_us=2) == replaced  # None fields really are None now
    other = StoredRule("b", "trader", "order", severity="ticket")
    alerts.put_rule(other, now_us=3)
    assert alerts.rules("a") == [replaced] and alerts.rules("b") == [other]
    assert alerts.delete_rule("a", "trader", "order")
    assert not alerts.delete_rule("a", "trader", "order")
    assert alerts.rules("a") == [] and alerts.rules("b") == [other]


# -- evaluation: firing and resolving with notifications, one transaction ---------------------


def test_firing_and_resolving_keep_their_notifications_and_tenants(storage: Storage) -> None:
    alerts = storage.alerts
    assert alerts.evaluated_until() is None
    alerts.start_evaluation(T0)
    alerts.start_evaluation(T0 + 99)  # started already: no change
    assert alerts.evaluated_until() == T0
    urls = ["http://r/a", "http://r/b"]
    with alerts.evaluation() as round_:
        assert round_ is not None and round_.evaluated_until_us == T0
        fired = round_.fire(new_alert("a"))
        assert fired.state == "firing" and fired.peak_ns == 150 * MS and fired.ends_us is None
        round_.notify(fired.id, "firing", '{"status":"firing"}', urls, T0)
        round_.raise_peak(fired.id, 180 * MS)
        round_.raise_peak(fired.id, 170 * MS)  # lower: the peak stays
        round_.put_state(StreakState("a", "trader", "order", 3, 0, T0, fired.id))
        round_.advance(T0 + 30 * US)
    assert alerts.evaluated_until() == T0 + 30 * US
    (listed,) = alerts.alerts("a")
    assert listed.id == fired.id and listed.peak_ns == 180 * MS
    assert listed.notifications_pending == 2
    assert alerts.alerts("b") == [] and [a.id for a in alerts.firing()] == [fired.id]
    with alerts.evaluation() as round_:
        assert round_ is not None
        assert round_.states() == [StreakState("a", "trader", "order", 3, 0, T0, fired.id)]
        resolved = round_.resolve(fired.id, T0 + 60 * US)
        assert resolved.state == "resolved" and resolved.peak_ns == 180 * MS
        round_.notify(resolved.id, "resolved", '{"status":"resolved"}', urls, T0 + 60 * US)
        round_.drop_state(("a", "trader", "order"))
    assert alerts.firing() == []
    assert [a.state for a in alerts.alerts("a", state="resolved")] == ["resolved"]
    assert alerts.alerts("a", state="firing") == []
    assert alerts.alerts("a", service="quoter") == []
    assert alerts.notifications_pending() == 4
    with alerts.evaluation() as round_:
        assert round_ is not None and round_.states() == []


def test_a_round_that_fails_leaves_nothing_behind(storage: Storage) -> None:
    alerts = storage.alerts
    alerts.start_evaluation(T0)
    with pytest.raises(RuntimeError), alerts.evaluation() as round_:
        assert round_ is not None
        fired = round_.fire(new_alert())
        round_.notify(fired.id, "firing", "{}", ["http://r/a"], T0)
        round_.put_state(StreakState("default", "trader", "order", 3, 0, T0, fired.id))
        round_.advance(T0 + 10 * US)
        raise RuntimeError("the evaluator broke half-way")
    assert alerts.alerts("default") == [] and alerts.notifications_pending() == 0
    assert alerts.evaluated_until() == T0
    with alerts.evaluation() as round_:
        assert round_ is not None and round_.states() == []


def test_the_evaluation_lock_is_held_by_one_caller_at_a_time(storage: Storage) -> None:
    alerts = storage.alerts
    alerts.start_evaluation(T0)
    inside, release = threading.Event(), threading.Event()
    second: dict[str, object] = {}

    def first_caller() -> None:
        with alerts.evaluation() as round_:
            assert round_ is not None
            round_.advance(T0 + 10 * US)
            inside.set()
            release.wait(10)

    def second_caller() -> None:
        with alerts.evaluation() as round_:
            second["entered_while_held"] = not release.is_set()
            second["saw"] = round_.evaluated_until_us if round_ is not None else None

    holder = threading.Thread(target=first_caller)
    holder.start()
    assert inside.wait(10)
    contender = threading.Thread(target=second_caller)
    contender.start()
    contender.join(0.5)  # PostgreSQL answers None at once; SQLite waits for the write lock
    time.sleep(0.2)
    release.set()
    holder.join(10)
    contender.join(10)
    if second["saw"] is None:
        assert storage.alerts.engine.dialect.name == "postgresql"  # type: ignore[attr-defined]
    else:  # it got in only after the first committed, and saw its progress
        assert second["entered_while_held"] is False and second["saw"] == T0 + 10 * US


def window(service: str, start_us: int, calls_ms: list[float], budget_ms: float = 100):  # type: ignore[no-untyped-def]
    calls = Histogram()
    for ms in calls_ms:
        calls.record(int(ms * MS))
    return alerts_window(service, start_us, calls, budget_ms)


def test_hot_path_calls_are_merged_per_interval_and_kept_apart_per_tenant(
    storage: Storage,
) -> None:
    put = storage.profiles.put
    put(Piece.from_window(window("trader", T0, [5] * 3, budget_ms=100), "a"))
    labelled = window("trader", T0 + 4 * US, [300] * 2, budget_ms=50)
    labelled.labels = {"host": "two"}  # another series of the same service
    put(Piece.from_window(labelled, "a"))
    put(Piece.from_window(window("trader", T0 + 12 * US, [7]), "a"))
    put(Piece.from_window(window("trader", T0, [9] * 4), "b"))
    alerts = storage.alerts
    alerts.start_evaluation(T0)
    with alerts.evaluation() as round_:
        assert round_ is not None
        calls = round_.hot_path_calls(T0, T0 + 20 * US, 10 * US)
    assert set(calls) == {T0, T0 + 10 * US}
    a, b = ("a", "trader", "order"), ("b", "trader", "order")
    budget, merged = calls[T0][a]
    assert merged.count == 5 and budget == 50 * MS  # the budget shipped last wins
    assert calls[T0][b][1].count == 4
    assert set(calls[T0 + 10 * US]) == {a} and calls[T0 + 10 * US][a][1].count == 1


# -- the outbox ---------------------------------------------------------------------------------


def test_the_outbox_hands_out_in_order_one_claim_at_a_time(storage: Storage) -> None:
    alerts = storage.alerts
    alerts.start_evaluation(T0)
    with alerts.evaluation() as round_:
        assert round_ is not None
        first = round_.fire(new_alert())
        round_.notify(first.id, "firing", '{"n":1}', ["http://r/a", "http://r/b"], T0)
        round_.notify(first.id, "resolved", '{"n":2}', ["http://r/a"], T0)
    assert sorted(alerts.pending_urls()) == ["http://r/a", "http://r/b"]
    claim = 5 * US
    row = alerts.claim_next("http://r/a", T0, claim)
    assert row is not None and json.loads(row.body) == {"n": 1} and row.attempts == 0
    assert alerts.claim_next("http://r/a", T0 + 1, claim) is None  # claimed: later rows wait
    alerts.failed(row.id, 1, "HTTP 500", retry_at_us=T0 + 60 * US)
    assert alerts.claim_next("http://r/a", T0 + 30 * US, claim) is None  # not due yet
    again = alerts.claim_next("http://r/a", T0 + 60 * US, claim)
    assert again is not None and again.id == row.id and again.attempts == 1
    alerts.delivered(again.id, 2, T0 + 61 * US)
    nxt = alerts.claim_next("http://r/a", T0 + 61 * US, claim)
    assert nxt is not None and json.loads(nxt.body) == {"n": 2}
    alerts.given_up(nxt.id, 1, "timeout", T0 + 62 * US)
    assert alerts.pending_urls() == ["http://r/b"] and alerts.notifications_pending() == 1
    expired = alerts.claim_next("http://r/b", T0, claim)
    assert expired is not None  # claimed, never answered: free again once the claim expires
    assert alerts.claim_next("http://r/b", T0 + claim - 1, claim) is None
    assert alerts.claim_next("http://r/b", T0 + claim + 1, claim) is not None


# -- benchmark runs -----------------------------------------------------------------------------


def bench_run(i: int, median: float) -> tuple[bytes, object]:
    template = json.loads(PDFMINER.read_bytes())
    data = synthetic_run(
        template, datetime(2026, 4, 1, tzinfo=UTC) + timedelta(hours=i), f"c{i}", median
    )
    return data, load_run(data, "test")


@pytest.mark.skipif(not PDFMINER.exists(), reason=f"corpus file {PDFMINER} missing")
def test_bench_runs_are_stored_once_listed_oldest_first_and_kept_per_tenant(
    storage: Storage,
) -> None:
    bench = storage.bench
    runs = [bench_run(i, 0.010 + i * 0.001) for i in range(3)]
    stored = [bench.add_run("a", "pdf", "main", None, data, run) for data, run in reversed(runs)]
    assert all(s.created for s in stored)
    data0, run0 = runs[0]
    again = bench.add_run("a", "pdf", "main", None, data0, run0)
    assert not again.created and again.meta.id == stored[-1].meta.id
    assert [m.commit for m in bench.runs("a", "pdf", "main")] == ["c0", "c1", "c2"]
    assert [m.commit for m in bench.runs("a", "pdf", "main", limit=2)] == ["c1", "c2"]
    fullname = run0.benchmarks[0].fullname  # type: ignore[attr-defined]
    history = bench.history("a", "pdf", "main", fullname)
    assert [p.median for p in history] == pytest.approx([0.010, 0.011, 0.012])
    assert bench.raw("a", again.meta.id) == data0
    (project,) = bench.projects("a")
    assert project.name == "pdf" and project.runs == 3 and project.branches == ["main"]
    assert bench.branches("a", "pdf") == ["main"]
    # Tenant b sees none of it, and the same bytes are a run of its own there.
    assert bench.projects("b") == [] and bench.runs("b", "pdf", "main") == []
    assert bench.history("b", "pdf", "main", fullname) == []
    with pytest.raises(UnknownRun):
        bench.run("b", again.meta.id)
    with pytest.raises(UnknownRun):
        bench.raw("b", again.meta.id)
    theirs = bench.add_run("b", "pdf", "main", "override", data0, run0)
    assert theirs.created and theirs.meta.commit == "override"
    assert theirs.meta.id != again.meta.id


def test_bench_profiles_are_the_series_of_the_tenants_service(storage: Storage) -> None:
    w = window("bench-pdf", T0, [1])
    w.labels = {"benchmark": "test_x", "pair": "p1", "role": "base"}
    storage.profiles.put(Piece.from_window(w, "a"))
    (found,) = storage.bench.profiles("a", "bench-pdf", "test_x")
    assert found.labels["role"] == "base"
    assert storage.bench.profiles("a", "bench-pdf", "test_y") == []
    assert storage.bench.profiles("b", "bench-pdf") == []


# -- upkeep -------------------------------------------------------------------------------------


def test_upkeep_rolls_up_enforces_retention_and_reports_its_lag(storage: Storage) -> None:
    upkeep = storage.upkeep
    upkeep.ping()
    assert upkeep.figures().oldest_unrolled_end_us is None
    storage.profiles.put(Piece.from_window(window("trader", T0, [1]), "a"))
    assert upkeep.figures().oldest_unrolled_end_us == T0
    while upkeep.roll_up():
        pass
    assert upkeep.figures().oldest_unrolled_end_us is None
    storage.alerts.start_evaluation(T0)
    assert upkeep.figures().alerts_evaluated_until_us == T0
    # T0 is in 2027: a clock ten years on has everything expired, once rolled up.
    assert upkeep.enforce_retention(datetime(2037, 1, 1, tzinfo=UTC)) > 0


def test_an_unreachable_database_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailable) as caught:
        open_storage("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    assert "127.0.0.1" in caught.value.reason or "refused" in caught.value.reason.lower()


# -- the migration that gave these rows a tenant ------------------------------------------------


def _old(conn: Connection, name: str) -> Table:
    """A table as the database has it now (before the migration under test)."""
    return Table(name, MetaData(), autoload_with=conn)


def test_migration_0008_puts_existing_alerts_and_runs_in_the_default_tenant(db_url: str) -> None:
    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0007")
        alert = {**vars(new_alert()), "state": "firing", "peak_ns": 1, "ends_us": None}
        del alert["tenant"]
        alert_id = conn.execute(insert(_old(conn, "alerts")), alert).inserted_primary_key[0]
        conn.execute(
            insert(_old(conn, "alert_notifications")),
            {"alert_id": alert_id, "status": "firing", "url": "http://r", "body": "{}",
             "created_us": 0, "attempts": 0, "next_attempt_us": 0, "claimed_until_us": 0},
        )  # fmt: skip
        conn.execute(
            insert(_old(conn, "alert_states")),
            {"service": "trader", "hot_path": "order", "breach_streak": 0, "ok_streak": 1,
             "streak_start_us": None, "alert_id": alert_id},
        )  # fmt: skip
        conn.execute(
            insert(_old(conn, "alert_rules")),
            {"service": "trader", "hot_path": "order", "enabled": True, "updated_us": 0},
        )
        conn.execute(
            insert(_old(conn, "bench_runs")),
            {"project": "pdf", "branch": "main", "run_us": 0, "uploaded_us": 0,
             "digest": b"\1" * 32, "source": "x", "benchmarks": 0, "raw_size": 0,
             "raw_zstd": b""},
        )  # fmt: skip
    engine.dispose()
    storage = open_storage(db_url)  # migrates to the newest revision
    try:
        (listed,) = storage.alerts.alerts("default")
        assert listed.id == alert_id and listed.notifications_pending == 1
        assert [r.service for r in storage.alerts.rules("default")] == ["trader"]
        assert storage.bench.projects("default")[0].name == "pdf"
        storage.alerts.start_evaluation(T0)
        with storage.alerts.evaluation() as round_:
            assert round_ is not None
            assert round_.states() == [
                StreakState("default", "trader", "order", 0, 1, None, alert_id)
            ]
        # The new keys hold: the same rule in another tenant is another row.
        storage.alerts.put_rule(StoredRule("other", "trader", "order"), now_us=1)
        assert len(storage.alerts.rules("default")) == len(storage.alerts.rules("other")) == 1
    finally:
        storage.close()
