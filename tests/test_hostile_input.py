"""Hostile and careless input against the real server, on SQLite and on PostgreSQL: times
outside a window around now, overflowing numbers, control characters in names and bodies
that decode to huge models are refused with a 4xx naming the problem, never a 500; names a
code generator made are stored escaped, the same on both backends; and a bad row stored
before these checks cannot break a page that lists it."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard

from hotpath.profiler.formats import window as wire
from hotpath.profiler.formats.pprof_schema import profile_class
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU
from hotpath.profiler.timespec import parse_time
from hotpath.server.ingest_checks import TimeBounds
from hotpath.server.storage import open_storage
from hotpath.server.storage.profiles import HotPathCalls, Piece, SeriesKey
from tests.corpus import CORPUS
from tests.servers import start_server, stop_process

DATA = Path(__file__).resolve().parent / "data" / "formats"
BENCH = CORPUS / "jab__bidict__baseline.json"
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def histogram(ns: int = 5_000, calls: int = 1) -> dict:  # type: ignore[type-arg]
    h = Histogram()
    h.record(ns, calls)
    return h.to_wire()


def window_body(**changes: object) -> dict:  # type: ignore[type-arg]
    """A valid window as the agent sends it, a minute old, with `changes` applied."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    doc: dict = {  # type: ignore[type-arg]
        "service": "svc",
        "idempotency_key": uuid.uuid4().hex,
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=10)).isoformat(),
        "sample_rate_hz": 100,
        "labels": {"host": "h1"},
        "frames": [["main", "app.py", 1], ["work", "app.py", 10]],
        "stacks": [[0, 1], [0]],
        "counts": [5, 2],
        "hot_paths": [{"name": "order", "histogram": histogram()}],
    }
    doc.update(changes)
    return doc


def post_window(client, doc: dict):  # type: ignore[no-untyped-def, type-arg]
    body = zstandard.ZstdCompressor().compress(json.dumps(doc).encode())
    return client.post("/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"})


def bench_run(**changes: object) -> bytes:
    doc = json.loads(BENCH.read_bytes())
    doc["datetime"] = datetime.now(UTC).isoformat()
    doc.update(changes)
    return json.dumps(doc).encode()


def post_bench(client, data: bytes, **params: str):  # type: ignore[no-untyped-def]
    query = {"project": "proj", "branch": "main", **params}
    return client.post("/api/v1/bench/runs", params=query, content=data)


def pprof(line: int = 1, time_nanos: int = 0) -> bytes:
    msg = profile_class()()
    msg.string_table.extend(["", "samples", "count", "cpu", "nanoseconds", "main", "app.py"])
    msg.sample_type.add(type=1, unit=2)
    msg.period_type.type, msg.period_type.unit, msg.period = 3, 4, 10_000_000
    msg.function.add(id=1, name=5, filename=6)
    msg.location.add(id=1).line.add(function_id=1, line=line)
    msg.sample.add(location_id=[1], value=[3])
    msg.time_nanos, msg.duration_nanos = time_nanos, 10**9
    return gzip.compress(msg.SerializeToString())


def refused(response, status: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    detail = json.dumps(response.json()["detail"])
    for word in words:
        assert word in detail, (word, detail)


def test_times_outside_the_accepted_window_are_refused_naming_it(server) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with server.client() as client:
        for start, end in [
            (YEAR_9999 - timedelta(seconds=9), YEAR_9999),
            (now - timedelta(days=30), now - timedelta(days=30) + timedelta(seconds=10)),
            (now + timedelta(hours=1), now + timedelta(hours=1, seconds=10)),
        ]:
            response = post_window(
                client, window_body(start=start.isoformat(), end=end.isoformat())
            )
            refused(response, 422, "outside the accepted range", "retention_raw", "max_future_s")
        for value in ["nan", "inf", "-inf", "1e20", "253402300000"]:
            response = client.post(
                "/ingest", params={"name": "svc", "from": value}, content=b"main;work 3\n"
            )
            refused(response, 422, "from")
        session = json.loads((DATA / "pyinstrument.session.json").read_text())
        session["start_time"] = 253402300000  # year 9999
        response = client.post(
            "/api/v1/profiles", params={"service": "svc"}, content=json.dumps(session).encode()
        )
        refused(response, 422, "the file's time span", "outside the accepted range")
        response = client.post(
            "/api/v1/profiles", params={"service": "svc"}, content=pprof(time_nanos=2**63 - 1)
        )
        refused(response, 422, "outside the accepted range")
        for when in ["9999-12-31T00:00:00+00:00", (now + timedelta(hours=1)).isoformat()]:
            refused(post_bench(client, bench_run(datetime=when)), 422, "max_future_s")

        assert client.get("/api/v1/services").json() == []
        assert client.get("/api/v1/bench/projects").json() == []
        # Inside the window: stored, and the pages that list it still answer.
        assert post_window(client, window_body()).status_code == 201
        assert post_bench(client, bench_run()).status_code == 201
        for page in ["/", "/api/v1/services", "/services/svc", "/benchmarks/proj"]:
            assert client.get(page).status_code == 200, page


def test_times_no_datetime_holds_are_422_on_every_read(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as client:
        assert post_window(client, window_body()).status_code == 201
        for bad in ["-99999999d", "-100000000000000000000000000000w", "100000000000000000000"]:
            for path, params in [
                ("/api/v1/profile", {"service": "svc", "from": bad}),
                ("/api/v1/timeline", {"service": "svc", "from": bad}),
                ("/api/v1/hotpaths", {"service": "svc", "from": bad}),
                ("/api/v1/diff", {"service": "svc", "base_from": bad, "head_from": "-1h"}),
                ("/services/svc", {"from": bad}),
                ("/services/svc/hotpaths/order", {"until": bad}),
            ]:
                refused(client.get(path, params=params), 422, "out of range")
        # The edges of what a datetime holds still read.
        edges = {"service": "svc", "from": "0001-01-01", "until": "9999-12-31T23:59:59"}
        assert client.get("/api/v1/profile", params=edges).status_code == 200


def test_integers_are_bounded_by_the_columns_they_go_to(server) -> None:  # type: ignore[no-untyped-def]
    hot = {"name": "order", "histogram": histogram()}
    with server.client() as client:
        for line in [2**31, 2**63]:  # frames.line is int4 on PostgreSQL
            frames = [["main", "app.py", line], ["work", "app.py", 10]]
            refused(post_window(client, window_body(frames=frames)), 422, "frames.0.2")
        refused(
            post_window(client, window_body(hot_paths=[{**hot, "budget_ns": 2**63}])),
            422,
            "budget_ns",
        )
        big = {**histogram(), "sum": 2**63 - 1, "max": 5_000}
        refused(
            post_window(client, window_body(hot_paths=[{**hot, "histogram": big}])),
            422,
            "histogram sum",
        )
        refused(post_window(client, window_body(counts=[2**63, 1])), 413, "max_samples_per_stack")
        response = client.post(
            "/ingest", params={"name": "svc", "format": "pprof"}, content=pprof(line=2**31)
        )
        refused(response, 422, "line 2147483648")
        for path in [f"/api/v1/bench/runs/{2**63}", f"/api/v1/bench/runs/{2**63}/raw"]:
            refused(client.get(path), 422, "run_id")
        doc = json.loads(bench_run())
        doc["benchmarks"][0]["stats"]["rounds"] = 2**63
        refused(post_bench(client, json.dumps(doc).encode()), 422, "stats.rounds")
        doc["commit_info"] = {"id": "x" * 100}  # commit_id is VARCHAR(64)
        doc["benchmarks"][0]["stats"]["rounds"] = 5
        refused(post_bench(client, json.dumps(doc).encode()), 422, "commit_info.id")
        assert client.get("/api/v1/services").json() == []


def test_control_characters_in_code_names_are_escaped_on_both_backends(server) -> None:  # type: ignore[no-untyped-def]
    frames = [["gen\x00erated\x1b", "<templ\x00ate>", 1], ["work", "app\x7f.py", 10]]
    function = "gen\x00erated\x1b (<templ\x00ate>)"
    hot = {"name": "order", "function": function, "histogram": histogram()}
    speedscope = {
        "shared": {"frames": [{"name": "sp\x00eedscope", "file": "lone\ud800.py"}]},
        "profiles": [
            {"type": "sampled", "unit": "none", "samples": [[0]], "weights": [4], "name": "p"}
        ],
    }
    with server.client() as client:
        response = post_window(client, window_body(frames=frames, hot_paths=[hot]))
        assert response.status_code == 201, response.text
        collapsed = b"main (app.py:1);gen\x00erated (t.py:3) 3\n"
        response = client.post("/ingest", params={"name": "svc"}, content=collapsed)
        assert response.status_code == 200, response.text
        response = client.post(
            "/api/v1/profiles",
            params={"service": "svc", "format": "speedscope"},
            content=json.dumps(speedscope).encode(),  # json escapes the lone surrogate
        )
        assert response.status_code == 201, response.text
        exported = client.get(
            "/api/v1/profile", params={"service": "svc", "format": "collapsed", "from": "-1h"}
        ).text
        assert "gen\\x00erated\\x1b (<templ\\x00ate>:1)" in exported
        assert "app\\x7f.py" in exported
        assert "gen\\x00erated (t.py:3)" in exported
        assert "sp\\x00eedscope (lone\\ud800.py)" in exported
        assert "\x00" not in exported
        # The hot path's function is escaped as its frame is, so attribution still finds it.
        page = client.get("/services/svc/hotpaths/order")
        assert page.status_code == 200

        doc = json.loads(bench_run())
        doc["benchmarks"] = doc["benchmarks"][:1]
        doc["benchmarks"][0]["fullname"] = "tests/t.py::test_x[\x00]"
        assert post_bench(client, json.dumps(doc).encode()).status_code == 201
        history = client.get(
            "/api/v1/bench/history",
            params={"project": "proj", "branch": "main", "fullname": "tests/t.py::test_x[\\x00]"},
        )
        assert history.status_code == 200, history.text


def test_control_characters_in_typed_names_are_refused_naming_the_field(server) -> None:  # type: ignore[no-untyped-def]
    hot = {"name": "or\x00der", "histogram": histogram()}
    with server.client() as client:
        refused(post_window(client, window_body(labels={"host": "h\x001"})), 422, "labels.host")
        refused(post_window(client, window_body(hot_paths=[hot])), 422, "hot_paths.0.name")
        refused(post_window(client, window_body(service="s\x00vc")), 422, "service")
        body = b"main;work 3\n"
        refused(
            client.post("/ingest", params={"name": "svc{env=a\x00b}"}, content=body), 422, "name"
        )
        response = client.post(
            "/api/v1/profiles", params={"service": "svc", "label": "env=a\x00b"}, content=body
        )
        refused(response, 422, "label")
        for path, params in [
            ("/api/v1/profile", {"service": "s\x00vc"}),
            ("/services/s%00vc", {}),
            ("/services/svc/hotpaths/or%00der", {}),
            ("/api/v1/bench/history", {"project": "p", "branch": "main", "fullname": "a\x00"}),
            ("/api/v1/bench/runs", {"project": "p", "branch": "ma\x00in"}),
        ]:
            response = client.get(path, params=params)
            assert response.status_code == 422, (path, response.text)
        assert client.get("/api/v1/services").json() == []


def test_a_stored_out_of_range_row_cannot_break_the_pages(db_url: str, tmp_path: Path) -> None:
    """Rows stored before ingest bounded times (year 9999's last microsecond reads back as
    year 10000) and histogram sums: roll-ups go on and every page that lists them answers."""
    storage = open_storage(db_url)
    calls = Histogram()
    calls.record(5_000)
    calls.sum = 2**62  # two in one hour pass BIGINT: the hour row saturates
    frames = [("main", "app.py", 1)]
    now = datetime.now(UTC)
    for start, end, key in [
        (YEAR_9999 - timedelta(seconds=10), YEAR_9999, "far"),
        (now - timedelta(seconds=20), now - timedelta(seconds=10), "now"),
        (now - timedelta(seconds=10), now, "now2"),
    ]:
        storage.profiles.put(
            Piece(
                SeriesKey("default", "svc", CPU, {"host": "h1"}),
                start,
                end,
                100.0,
                frames,
                [[0]],
                [3],
                f"{key}-window-key",
                [HotPathCalls("order", calls, 1_000_000, "main (app.py)")],
            )
        )
    while storage.upkeep.roll_up():  # the hot-path hours too; an overflow would raise here
        pass
    storage.close()
    running = start_server(db_url, tmp_path / "server")
    try:
        with running.client() as client:
            for path in [
                "/",
                "/api/v1/services",
                "/services/svc",
                "/services/svc/hotpaths/order",
                "/api/v1/hotpaths?service=svc&until=9999-12-31T23:59:59",
                "/api/v1/timeline?service=svc&from=-1h",
                "/metrics",
            ]:
                response = client.get(path)
                assert response.status_code == 200, (path, response.text[:300])
            [service] = client.get("/api/v1/services").json()
            assert service["last_seen"].startswith("9999-12-31T23:59:59")
    finally:
        stop_process(running.process)


def test_a_window_is_bounded_before_it_is_parsed() -> None:
    """pydantic builds the whole JSON tree before validating; the counts come first."""
    limits = wire.WindowLimits()
    zeros = json.dumps(window_body(stacks=[[0] * 1_000] * 1_100, counts=[1] * 1_100)).encode()
    with pytest.raises(wire.LimitExceeded, match="max_values"):
        wire.parse(zeros, limits)
    extras = json.dumps(window_body(**{f"x{i}": 0 for i in range(100_001)})).encode()
    with pytest.raises(wire.LimitExceeded, match="max_members"):
        wire.parse(extras, limits)
    # Within the counts, a body of bad items is one error, not one per item (~450 B each).
    for bad in [
        window_body(counts=[0] * 200_000, stacks=[[0]] * 200_000),
        window_body(**{f"x{i}": 0 for i in range(50_000)}),
        window_body(labels={f"-{i}": "" for i in range(50_000)}),
    ]:
        with pytest.raises(ValueError) as caught:
            wire.parse(json.dumps(bad).encode(), limits)
        assert caught.value.error_count() == 1  # type: ignore[attr-defined]
    # A busy real window is far inside both.
    real = json.dumps(window_body()).encode()
    assert wire.parse(real, limits).service == "svc"


def test_the_decoded_size_is_bounded_while_decompressing(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    """The issue's bomb: 6 KiB of zstd decoding to 58 MiB of valid window JSON."""
    head = json.dumps(window_body(frames=[["f", "", 1]], counts=[1] * 28_000))[:-1].encode()
    stacks = b",".join([b"[" + b"0," * 1_023 + b"0]"] * 28_000)
    body = zstandard.ZstdCompressor().compress(head + b', "stacks": [' + stacks + b"]}")
    assert len(body) < 16 * 1024
    started = time.monotonic()
    with sqlite_server.client() as client:
        response = client.post(
            "/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"}
        )
    refused(response, 413, "max_decompressed_bytes")
    assert time.monotonic() - started < 5


def test_names_times_and_bounds_explain_themselves() -> None:
    assert wire.clean_name("a\x00b\x1b\x85\ud800c") == "a\\x00b\\x1b\\x85\\ud800c"
    assert wire.clean_name("plain <lambda> ü") == "plain <lambda> ü"
    with pytest.raises(ValueError, match="holds a control character"):
        wire.printable("a\tb")
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    bounds = TimeBounds.around_now(timedelta(days=7), 300, now)
    bounds.check("ok", now - timedelta(days=6), now + timedelta(seconds=299))
    with pytest.raises(ValueError, match=r"2026-11-16T12:00:00\+00:00 \(now - retention_raw"):
        bounds.check("the window", now - timedelta(days=8), now)
    with pytest.raises(ValueError, match=r"now \+ max_future_s \(300 s\)"):
        bounds.check("the window", now, now + timedelta(minutes=6))
    for text in ["-99999999d", "1e400", "253402300800", "9999-12-31T23:59:59-05:00"]:
        with pytest.raises(ValueError):
            parse_time(text, now)
