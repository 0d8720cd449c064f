"""Memory captures over HTTP against a real server (uvicorn) on SQLite and PostgreSQL: stored
whole with their typed profiles, listed with the target's pauses, never doubled, refused with
a 4xx naming the problem and nothing stored; leaks ranked; auth decisions kept."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hotpath.profiler.formats import window as wire
from hotpath.server.storage.captures import piece_key
from tests.memory_captures import CACHE, CHURN, LEAK, LEAK_RATE, body, capture
from tests.servers import REPO, RunningServer, make_token, start_server, stop_process

CAPTURES = "/api/v1/memory/captures"


def _post(client: httpx.Client, payload: Any, **headers: str) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        CAPTURES, content=content, headers={"Content-Type": "application/json", **headers}
    )


def _nothing_stored(client: httpx.Client) -> None:
    assert client.get("/api/v1/services").json() == []


def test_a_capture_is_stored_listed_and_never_doubled(server: RunningServer) -> None:
    sent = capture("mem-api", seconds=20)
    with server.client() as client:
        first = _post(client, body(sent))
        assert first.status_code == 201, first.text
        assert first.json()["duplicate"] is False
        again = _post(client, body(sent))
        assert again.status_code == 200 and again.json() == {
            "capture_id": first.json()["capture_id"],
            "duplicate": True,
        }
        listed = client.get(CAPTURES, params={"service": "mem-api"})
        assert listed.status_code == 200
        [row] = listed.json()
        assert row["id"] == first.json()["capture_id"] and row["pid"] == 4242
        assert row["pause_attach_ms"] == 412.5 and row["pause_detach_ms"] == 120.25
        assert row["duration_s"] == 20.0 and row["functions"] == 3
        assert row["held_bytes"] == LEAK_RATE * 20 + 2_000_000 + 1_024
        # Its profiles are memory types of the service, never CPU, each once.
        [service] = client.get("/api/v1/services").json()
        assert service["types"] == ["alloc_bytes", "alloc_count", "held_bytes"]
        assert service["samples"] == 0  # no CPU samples
        assert service["totals"]["held_bytes"] == LEAK_RATE * 20 + 2_000_000 + 1_024
        held = client.get(
            "/api/v1/profile",
            params={"service": "mem-api", "type": "held_bytes", "from": "-1h"},
        )
        assert held.status_code == 200
        assert held.json()["profiles"][0]["unit"] == "bytes"
        # The same body compressed, under a new key: stored as a second capture.
        other = body(capture("mem-api", seconds=20))
        zipped = _post(
            client, gzip.compress(json.dumps(other).encode()), **{"Content-Encoding": "gzip"}
        )
        assert zipped.status_code == 201, zipped.text
        assert len(client.get(CAPTURES, params={"service": "mem-api"}).json()) == 2
        assert client.get(CAPTURES, params={"service": "nobody"}).status_code == 404


def _bad_cases() -> list[tuple[str, Any, int, str]]:
    good = body(capture("mem-bad"))
    cases: list[tuple[str, Any, int, str]] = []

    def case(name: str, status: int, message: str, change: Any) -> None:
        data = copy.deepcopy(good)
        change(data)
        cases.append((name, data, status, message))

    def cpu_window(d: dict[str, Any]) -> None:
        d["windows"][2]["type"] = "cpu"
        d["windows"][2]["unit"] = "samples"

    case("wrong window types", 422, "windows must be one each of", cpu_window)
    case(
        "two held windows",
        422,
        "windows must be one each of",
        lambda d: d["windows"].__setitem__(0, d["windows"][2]),
    )
    case(
        "end before start",
        422,
        "end is not after start",
        lambda d: d.update(end=d["start"]) or [w.update(end=d["start"]) for w in d["windows"]],
    )
    case(
        "a window of another span",
        422,
        "span is not the capture's",
        lambda d: d["windows"][1].update(end=d["start"]),
    )
    case(
        "control character in the service", 422, "service", lambda d: d.update(service="mem\x00bad")
    )
    case("control character in the tool", 422, "tool", lambda d: d.update(tool="memray\n1.20"))
    case(
        "control character in a label",
        422,
        "control character",
        lambda d: d["windows"][0]["labels"].update(pid="1\x07"),
    )
    case(
        "points going back in time",
        422,
        "point times must increase",
        lambda d: d["functions"][0]["points"].reverse(),
    )
    case("negative pause", 422, "pause_attach_ms", lambda d: d.update(pause_attach_ms=-1))
    case("unknown field", 422, "unknown fields", lambda d: d.update(extra=1))
    case("no functions key type", 422, "functions", lambda d: d.update(functions="many"))
    case("pid out of range", 422, "pid", lambda d: d.update(pid=2**40))
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    old_end = (datetime.now(UTC) - timedelta(days=30) + timedelta(seconds=20)).isoformat()

    def long_ago(d: dict[str, Any]) -> None:
        d.update(start=old, end=old_end)
        for w in d["windows"]:
            w.update(start=old, end=old_end)

    case("times outside the accepted range", 422, "outside the accepted range", long_ago)

    def too_many_stacks(d: dict[str, Any]) -> None:
        over = wire.WindowLimits().max_stacks + 1
        d["windows"][0].update(frames=[["f", "x.py", 1]], stacks=[[0]] * over, counts=[1] * over)

    case("a window with too many stacks", 413, "max_stacks", too_many_stacks)
    cases.append(("not JSON", b"{not json", 422, "invalid capture"))
    cases.append(("too large a body", b" " * (16 * 1024 * 1024 + 1), 413, "max_body_bytes"))
    return cases


def test_bad_captures_are_refused_naming_the_problem_and_nothing_is_stored(
    server: RunningServer,
) -> None:
    with server.client() as client:
        for name, payload, status, message in _bad_cases():
            answer = _post(client, payload)
            assert answer.status_code == status, (name, answer.text)
            assert message in answer.text, (name, answer.text)
        bomb = gzip.compress(b"[" + b"0," * (17 * 1024 * 1024) + b"0]")
        answer = _post(client, bomb, **{"Content-Encoding": "gzip"})
        assert answer.status_code == 413 and "max_decompressed_bytes" in answer.text
        _nothing_stored(client)


def test_a_capture_failing_part_way_leaves_nothing(server: RunningServer) -> None:
    """Its third profile's key is taken by a window sent before: 409, and neither the
    capture nor its first two profiles are stored."""
    sent = capture("mem-half", key="capture-half-1234")
    squatter = sent.window("held_bytes").model_copy(
        update={"idempotency_key": piece_key("capture-half-1234", "held_bytes")}
    )
    with server.client() as client:
        put = client.post("/api/v1/windows", content=squatter.model_dump_json())
        assert put.status_code == 201, put.text
        answer = _post(client, body(sent))
        assert answer.status_code == 409 and "nothing was stored" in answer.text
        assert client.get(CAPTURES, params={"service": "mem-half"}).json() == []
        [service] = client.get("/api/v1/services").json()
        assert service["types"] == ["held_bytes"]  # the squatter's, alone
        assert service["totals"] == {"held_bytes": sum(squatter.counts)}


def test_leaks_rank_the_growing_function_first_and_flag_nothing_else(
    sqlite_server: RunningServer,
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    with sqlite_server.client() as client:
        for i in range(2):
            sent = capture("mem-leak", start=start + timedelta(minutes=5 * i), seconds=20)
            assert _post(client, body(sent)).status_code == 201
        steady = capture("mem-steady", start=start, seconds=20, leak=False)
        assert _post(client, body(steady)).status_code == 201
        report = client.get("/api/v1/leaks", params={"service": "mem-leak", "from": "-1h"})
        assert report.status_code == 200, report.text
        data = report.json()
        assert data["unit"] == "bytes" and len(data["captures"]) == 2
        assert all(c["pause_attach_ms"] == 412.5 for c in data["captures"])
        top, *rest = data["leaks"]
        assert (top["function"], top["file"]) == (LEAK.name, LEAK.file)
        assert top["flagged"] and top["captures"] == 2
        assert top["low_bytes_per_s"] <= LEAK_RATE <= top["high_bytes_per_s"]
        assert top["stacks"][0]["frames"][-1].startswith(LEAK.name)
        assert {r["function"] for r in rest} <= {CACHE.name, CHURN.name}
        assert not any(r["flagged"] for r in rest)
        quiet = client.get("/api/v1/leaks", params={"service": "mem-steady", "from": "-1h"})
        assert quiet.status_code == 200 and not any(r["flagged"] for r in quiet.json()["leaks"])
        assert "held_bytes" in data["viewer_url"] and data["viewer_url"].startswith("/speedscope/")
    # The command line prints exactly a list of the keys.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotpath",
            "leaks",
            "--service",
            "mem-leak",
            "--from",
            "-1h",
            "--json",
            "--server",
            sqlite_server.url,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert isinstance(printed, list) and printed[0]["function"] == LEAK.name
    for row in printed:
        assert {"function", "growth_bytes_per_s", "held_bytes", "captures", "flagged"} <= set(row)
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotpath",
            "leaks",
            "--service",
            "mem-leak",
            "--from",
            "-1h",
            "--server",
            sqlite_server.url,
            "--fail-on-leak",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert table.returncode == 1, table.stderr
    assert LEAK.name in table.stdout and "412.5 ms" in table.stdout and "LEAK" in table.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    data = tmp_path_factory.mktemp("auth")
    db = f"sqlite:///{data / 'hotpath.db'}"
    running = start_server(db, data / "server", auth="required")
    try:
        yield running, db
    finally:
        stop_process(running.process)


def test_captures_and_leaks_need_their_scopes(
    secured: tuple[RunningServer, str], tmp_path: Path
) -> None:
    running, db = secured
    read, ingest = make_token(db, "read"), make_token(db, "ingest", tenant="beta")
    sent = body(capture("mem-auth"))
    with httpx.Client(base_url=running.url, timeout=30) as anonymous:
        assert _post(anonymous, sent).status_code == 401
        assert anonymous.get("/api/v1/leaks", params={"service": "mem-auth"}).status_code == 401
    with running.client(read) as reader:
        assert _post(reader, sent).status_code == 403
    with running.client(ingest) as agent:
        assert _post(agent, sent).status_code == 201
        assert agent.get(CAPTURES, params={"service": "mem-auth"}).status_code == 403
    with running.client(read) as reader:
        # Stored in the ingest token's tenant (beta): the default tenant has no such service.
        assert reader.get(CAPTURES, params={"service": "mem-auth"}).status_code == 404
        assert reader.get("/api/v1/leaks", params={"service": "mem-auth"}).status_code == 404
    beta_reader = make_token(db, "read", tenant="beta")
    with running.client(beta_reader) as reader:
        assert len(reader.get(CAPTURES, params={"service": "mem-auth"}).json()) == 1
