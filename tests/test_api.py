"""The HTTP API against a real server on uvicorn, on SQLite and on PostgreSQL."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import zstandard

from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import Frame, Profile

NOW = datetime.now(UTC).replace(microsecond=0)


def make_profile(stacks: dict[str, int]) -> Profile:
    return collapsed.loads("".join(f"{s} {n}\n" for s, n in stacks.items()))


def make_window(
    stacks: dict[str, int] | None = None,
    *,
    service: str = "trader",
    start: datetime | None = None,
    seconds: float = 10,
    labels: dict[str, str] | None = None,
    key: str | None = None,
) -> wire.Window:
    start = start or NOW - timedelta(minutes=1)
    return wire.from_profile(
        make_profile(stacks or {"main (t.py:1);risk_check (t.py:10)": 70, "main (t.py:1)": 30}),
        service=service,
        idempotency_key=key or uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=seconds),
        sample_rate_hz=100,
        labels=labels if labels is not None else {"host": "h1", "pid": "42"},
    )


def post(client, window: wire.Window, encoding: str = "zstd"):  # type: ignore[no-untyped-def]
    body = window.model_dump_json().encode()
    if encoding == "zstd":
        body = zstandard.ZstdCompressor().compress(body)
    elif encoding == "gzip":
        body = gzip.compress(body)
    headers = {"Content-Encoding": encoding} if encoding != "identity" else {}
    return client.post("/api/v1/windows", content=body, headers=headers)


def export(client, service: str = "trader", **params):  # type: ignore[no-untyped-def]
    query = {"service": service, "format": "collapsed", "from": "-1h", **params}
    return client.get("/api/v1/profile", params=query)


def stored_samples(client, service: str = "trader") -> int:  # type: ignore[no-untyped-def]
    response = export(client, service)
    return 0 if response.status_code == 404 else collapsed.loads(response.text).total


@pytest.mark.parametrize("encoding", ["zstd", "gzip", "identity"])
def test_window_round_trips_through_the_server(server, encoding: str) -> None:
    window = make_window(
        {"main (t.py:1);risk_check (t.py:10);spin (t.py:3)": 5, "main (t.py:1);route (t.py:20)": 2}
    )
    with server.client() as client:
        response = post(client, window, encoding)
        assert response.status_code == 201, response.text
        assert response.json()["samples"] == 7
        exported = collapsed.loads(export(client).text)
    assert exported.samples == wire.to_profile(window).samples


def test_a_retried_window_is_stored_once(server) -> None:
    window = make_window()
    with server.client() as client:
        first, second = post(client, window), post(client, window)
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json()["duplicate"] is True
        assert stored_samples(client) == 100
        assert client.get("/api/v1/services").json()[0]["samples"] == 100


def test_windows_merge_and_filter_by_time_and_label(server) -> None:
    old = make_window(
        {"main;old_code": 10}, start=NOW - timedelta(hours=3), labels={"version": "1.0"}
    )
    v1 = make_window({"main;a": 10, "main;b": 5}, labels={"version": "1.0", "region": "eu"})
    v2 = make_window(
        {"main;a": 1, "main;c": 4},
        start=NOW - timedelta(minutes=2),
        labels={"version": "2.0", "region": "eu"},
    )
    other = make_window({"main;x": 99}, service="other")
    with server.client() as client:
        for w in (old, v1, v2, other):
            assert post(client, w).status_code == 201
        last_hour = collapsed.loads(export(client).text)
        assert dict(last_hour.samples) == dict(
            make_profile({"main;a": 11, "main;b": 5, "main;c": 4}).samples
        )
        only_v2 = collapsed.loads(export(client, label=["version=2.0", "region=eu"]).text)
        assert only_v2.total == 5
        assert collapsed.loads(export(client, label="region=us").text).total == 0
        whole_day = collapsed.loads(export(client, **{"from": "-24h"}).text)
        assert whole_day.total == 30
        names = {s["name"]: s["samples"] for s in client.get("/api/v1/services").json()}
        assert names == {"trader": 30, "other": 99}


def test_speedscope_export_carries_the_stacks(server) -> None:
    with server.client() as client:
        post(client, make_window({"main (t.py:1);risk_check (t.py:10)": 3}))
        doc = export(client, format="speedscope").json()
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert names == ["main", "risk_check"]
    # A cpu profile exports in time: 3 samples at 100 Hz are 30 ms.
    assert doc["profiles"][0]["samples"] == [[0, 1]]
    assert doc["profiles"][0]["unit"] == "nanoseconds"
    assert doc["profiles"][0]["weights"] == [30_000_000]


def _bad_bodies() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    good = json.loads(make_window().model_dump_json())

    def variant(**changes) -> bytes:  # type: ignore[no-untyped-def]
        return json.dumps({**good, **changes}).encode()

    return [
        ("not json", b"{not json", {}, 422, "invalid window"),
        ("wrong format id", variant(format="other/9"), {}, 422, "format"),
        (
            "stack refers past frames",
            variant(stacks=[[0, 99]], counts=[1]),
            {},
            422,
            "refers to frame 99",
        ),
        ("counts mismatch", variant(counts=[1]), {}, 422, "2 stacks but 1 counts"),
        ("negative count", variant(counts=[-1, 3]), {}, 422, "counts"),
        ("end before start", variant(end="2020-01-01T00:00:00Z"), {}, 422, "end is before start"),
        ("naive time", variant(start="2026-11-23T10:00:00"), {}, 422, "timezone"),
        ("bad service", variant(service="a b/c"), {}, 422, "service"),
        ("bad zstd", b"\x28\xb5\x2f\xfdgarbage", {"Content-Encoding": "zstd"}, 400, "zstd"),
        ("unknown encoding", b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
        (
            "too many frames in a stack",
            variant(frames=[["f", "", 0]], stacks=[[0] * 2000], counts=[1]),
            {},
            413,
            "max_frames_per_stack",
        ),
        (
            "too many labels",
            variant(labels={f"k{i}": "v" for i in range(40)}),
            {},
            413,
            "max_labels",
        ),
        ("body too large", b"x" * (17 * 1024 * 1024), {}, 413, "max_body_bytes"),
        (
            "zip bomb",
            zstandard.ZstdCompressor().compress(b" " * (80 * 1024 * 1024)),
            {"Content-Encoding": "zstd"},
            413,
            "max_decompressed_bytes",
        ),
    ]


def test_bad_windows_get_a_clear_4xx_and_store_nothing(server) -> None:
    with server.client() as client:
        assert post(client, make_window({"main;kept": 3})).status_code == 201
        for name, body, headers, status, words in _bad_bodies():
            response = client.post("/api/v1/windows", content=body, headers=headers)
            assert response.status_code == status, (name, response.text)
            assert words in response.json()["detail"], (name, response.text)
        assert stored_samples(client) == 3
        assert [s["samples"] for s in client.get("/api/v1/services").json()] == [3]


def test_pyroscope_ingest_stores_folded_stacks_with_labels(server) -> None:
    until = int(time.time())
    params = {
        "name": "legacy.cpu{env=prod,region=eu}",
        "from": until - 10,
        "until": until,
        "format": "folded",
        "sampleRate": 100,
        "spyName": "pyspy",
    }
    body = b"main;handle;parse 7\nmain;handle 3\n"
    with server.client() as client:
        assert client.post("/ingest", params=params, content=body).status_code == 200
        again = client.post("/ingest", params=params, content=body)  # a client retry
        assert again.json()["duplicate"] is True
        got = collapsed.loads(export(client, "legacy.cpu", label="env=prod").text)
        assert dict(got.samples) == dict(
            make_profile({"main;handle;parse": 7, "main;handle": 3}).samples
        )
        bad = client.post("/ingest", params=params, content=b"main;handle seven\n")
        assert bad.status_code == 422 and "line 1" in bad.json()["detail"]
        jfr = client.post("/ingest", params={**params, "format": "jfr"}, content=b"x")
        assert jfr.status_code == 415 and "folded" in jfr.json()["detail"]
        not_pprof = client.post("/ingest", params={**params, "format": "pprof"}, content=b"x")
        assert not_pprof.status_code == 422 and "pprof" in not_pprof.json()["detail"]


def test_export_errors_are_clear(sqlite_server) -> None:
    with sqlite_server.client() as client:
        missing = export(client, "nope")
        assert missing.status_code == 404 and "unknown service 'nope'" in missing.json()["detail"]
        post(client, make_window())
        bad_time = export(client, **{"from": "yesterday-ish"})
        assert bad_time.status_code == 422 and "-15m" in bad_time.json()["detail"]
        empty = export(client, **{"from": "-1m", "until": "-2m"})
        assert empty.status_code == 422 and "empty" in empty.json()["detail"]


def test_health_and_openapi(sqlite_server) -> None:
    with sqlite_server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/windows", "/api/v1/profile", "/api/v1/services", "/ingest"} <= set(paths)


def test_frames_survive_with_files_and_lines(server) -> None:
    window = make_window({"<module> (/srv/app dir/x.py:1);f (/srv/app dir/x.py:4)": 2})
    with server.client() as client:
        post(client, window)
        got = collapsed.loads(export(client).text)
    assert list(got.samples) == [
        (Frame("<module>", "/srv/app dir/x.py", 1), Frame("f", "/srv/app dir/x.py", 4))
    ]
