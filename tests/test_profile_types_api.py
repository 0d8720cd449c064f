"""Profile types over HTTP and on the pages: every read is of one type (cpu by default), two
types are never merged or compared, and the service page switches between them.

A real server on SQLite (the storage contract suite covers both backends)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import PROFILE_TYPES, WALL

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(minutes=2)
CPU_STACKS = {"main (t.py:1);compute (t.py:5)": 98, "main (t.py:1);sleep (t.py:9)": 2}
WALL_STACKS = {"main (t.py:1);compute (t.py:5)": 50, "main (t.py:1);sleep (t.py:9)": 50}


def window_body(stacks: dict[str, int], *, type: str | None, labels: dict[str, str]) -> bytes:
    profile = collapsed.loads("".join(f"{s} {n}\n" for s, n in stacks.items()))
    window = wire.from_profile(
        profile,
        service="trader",
        idempotency_key=uuid.uuid4().hex,
        start=START,
        end=START + timedelta(seconds=10),
        sample_rate_hz=100,
        labels=labels,
    )
    body = json.loads(window.model_dump_json())
    if type is None:
        del body["type"]  # an agent from before profile types
    else:
        body["type"] = type
    return json.dumps(body).encode()


def post(client: httpx.Client, body: bytes) -> None:
    response = client.post(
        "/api/v1/windows", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


def shares(client: httpx.Client, **params: str) -> dict[str, float]:
    query = {"service": "trader", "format": "collapsed", "from": "-1h", **params}
    response = client.get("/api/v1/profile", params=query)
    assert response.status_code == 200, response.text
    profile = collapsed.loads(response.text)
    return {stack[-1].name: n / profile.total for stack, n in profile.samples.items()}


def test_types_are_read_apart_and_never_compared(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    with sqlite_server.client() as client:
        post(client, window_body(CPU_STACKS, type="cpu", labels={"pid": "7"}))
        post(client, window_body(WALL_STACKS, type="wall", labels={"pid": "7"}))
        # Default and explicit cpu: the sleeping function gets its ~0% of CPU...
        assert shares(client) == shares(client, type="cpu") == {"compute": 0.98, "sleep": 0.02}
        # ...and its true share of wall-clock time in the wall profile.
        assert shares(client, type="wall") == {"compute": 0.5, "sleep": 0.5}

        unknown = client.get("/api/v1/profile", params={"service": "trader", "type": "heap"})
        assert unknown.status_code == 422
        assert all(t in unknown.json()["detail"] for t in PROFILE_TYPES)

        diff = client.get(
            "/api/v1/diff", params={"service": "trader", "base_type": "cpu", "head_type": "wall"}
        )
        assert diff.status_code == 422
        assert diff.json()["detail"] == "cannot compare a cpu profile with a wall profile"
        tree = client.get("/api/v1/diff/tree", params={"service": "trader", "head_type": "wall"})
        assert tree.status_code == 422
        same = client.get("/api/v1/diff", params={"service": "trader", "type": "wall"})
        assert same.status_code == 200 and same.json()["type"] == "wall"

        (service,) = client.get("/api/v1/services").json()
        assert service["types"] == ["cpu", "wall"]
        assert service["totals"] == {"cpu": 100, "wall": 100}
        assert service["samples"] == 100  # the CPU samples, not cpu + wall

        for kind, expected in (("cpu", 100), ("wall", 100)):
            timeline = client.get(
                "/api/v1/timeline", params={"service": "trader", "type": kind, "from": "-1h"}
            ).json()
            assert timeline["type"] == kind
            assert sum(n for line in timeline["lines"] for _, n in line["points"]) == expected


def test_legacy_windows_labelled_sampling_wall_are_wall(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    with sqlite_server.client() as client:
        post(client, window_body(WALL_STACKS, type=None, labels={"sampling": "wall"}))
        post(client, window_body(CPU_STACKS, type=None, labels={}))
        assert shares(client, type="wall") == {"compute": 0.5, "sleep": 0.5}
        assert shares(client) == {"compute": 0.98, "sleep": 0.02}
        # A window that says its type is taken at its word, whatever its labels.
        post(client, window_body({"main;x": 5}, type="cpu", labels={"sampling": "wall"}))
        assert "x" in shares(client, type="cpu")


def test_the_service_page_shows_its_types_and_switches(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    with sqlite_server.client() as client:
        post(client, window_body(CPU_STACKS, type="cpu", labels={}))
        post(client, window_body(WALL_STACKS, type="wall", labels={"pid": "1"}))
        page = client.get("/services/trader", params={"from": "-1h"}).text
        types = re.findall(r'data-type="(\w+)"', page.split('id="timeline"')[0])
        assert types == ["cpu", "wall"]
        assert re.search(r'class="active" data-type="cpu"', page)
        assert "type%3Dcpu" in page  # the flame graph's profile URL carries the type

        wall = client.get("/services/trader", params={"from": "-1h", "type": "wall"}).text
        assert re.search(r'class="active" data-type="wall"', wall)
        assert 'data-type="wall"' in wall.split('id="timeline"')[1]
        assert "type%3Dwall" in wall and "type%3Dcpu" not in wall
        assert '<option value="pid">' in wall  # label keys of the wall series

        home = client.get("/").text
        assert "?type=cpu" in home and "?type=wall" in home
        bad = client.get("/services/trader", params={"type": "nope"})
        assert bad.status_code == 422


def test_a_service_with_only_wall_profiles_opens_on_them(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    with sqlite_server.client() as client:
        post(client, window_body(WALL_STACKS, type=WALL.id, labels={}))
        page = client.get("/services/trader", params={"from": "-1h"}).text
        assert re.search(r'class="active" data-type="wall"', page)
        assert "100 samples" in page
        # The API's default stays cpu, of which there is none.
        assert (
            client.get(
                "/api/v1/profile", params={"service": "trader", "format": "collapsed"}
            ).text.strip()
            == ""
        )
