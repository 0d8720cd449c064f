"""The benchmark API against a real server on uvicorn, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import zstandard

from tests.corpus import CORPUS

BIDICT = CORPUS / "jab__bidict__baseline.json"
OLD_FORMAT = next(CORPUS.glob("ionelmc__pytest-benchmark__0002_*.json"))
PDFMINER = CORPUS / "pdfminer__pdfminer.six__0001_baseline.json"


def upload(client, data: bytes, project: str = "bidict", branch: str = "main", **params):  # type: ignore[no-untyped-def]
    query = {"project": project, "branch": branch, **params}
    return client.post("/api/v1/bench/runs", params=query, content=data)


def synthetic_run(template: dict, when: datetime, commit: str, median: float) -> bytes:
    """A copy of a real run with one benchmark's times moved to `median` (seconds)."""
    doc = json.loads(json.dumps(template))
    doc["datetime"] = when.isoformat()
    doc["commit_info"] = {**doc.get("commit_info", {}), "id": commit}
    doc["benchmarks"] = doc["benchmarks"][:1]
    stats = doc["benchmarks"][0]["stats"]
    stats.update(min=median * 0.95, max=median * 1.2, mean=median * 1.01, median=median)
    stats.pop("data", None)
    return json.dumps(doc).encode()


def test_upload_stores_the_run_once_and_returns_the_bytes(server) -> None:  # type: ignore[no-untyped-def]
    data = BIDICT.read_bytes()
    with server.client() as client:
        first = upload(client, data, commit="abc123")
        assert first.status_code == 201, first.text
        run = first.json()["run"]
        assert first.json()["created"] is True
        assert run["benchmarks"] == len(json.loads(data)["benchmarks"])
        assert run["commit"] == "abc123"
        assert run["url"].startswith("/benchmarks/bidict?")

        again = upload(client, data, commit="abc123")
        assert again.status_code == 200
        assert again.json()["run"]["id"] == run["id"]
        assert again.json()["created"] is False

        # The same bytes on another branch are another run; zstd-encoded bodies are accepted.
        other = client.post(
            "/api/v1/bench/runs",
            params={"project": "bidict", "branch": "feature/x"},
            content=zstandard.ZstdCompressor().compress(data),
            headers={"Content-Encoding": "zstd"},
        )
        assert other.status_code == 201, other.text
        assert other.json()["run"]["id"] != run["id"]
        assert other.json()["run"]["commit"] == json.loads(data)["commit_info"]["id"]

        runs = client.get("/api/v1/bench/runs", params={"project": "bidict", "branch": "main"})
        assert [r["id"] for r in runs.json()] == [run["id"]]
        raw = client.get(f"/api/v1/bench/runs/{run['id']}/raw")
        assert raw.status_code == 200
        assert raw.content == data
        projects = client.get("/api/v1/bench/projects").json()
        assert [(p["name"], p["branches"], p["runs"]) for p in projects] == [
            ("bidict", ["feature/x", "main"], 2)
        ]
        fullname = json.loads(data)["benchmarks"][0]["fullname"]
        history = client.get(
            "/api/v1/bench/history",
            params={"project": "bidict", "branch": "main", "fullname": fullname},
        ).json()
        assert len(history["points"]) == 1
        stats = json.loads(data)["benchmarks"][0]["stats"]
        assert history["points"][0]["value"] == stats["median"]
        assert history["points"][0]["rounds"] == stats["rounds"]
        assert client.get("/api/v1/bench/runs/999999/raw").status_code == 404


def test_bad_uploads_get_a_4xx_with_a_message_and_nothing_is_stored(server) -> None:  # type: ignore[no-untyped-def]
    good = PDFMINER.read_bytes()
    wrong_type = json.loads(good)
    wrong_type["benchmarks"][0]["stats"]["mean"] = "fast"
    bad_bodies = {
        "empty": (b"", "empty"),
        "not json": (b"<html>hello</html>", "not valid JSON"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "a list": (b"[1, 2, 3]", "not pytest-benchmark JSON"),
        "other json": (b'{"traceEvents": []}', "no 'benchmarks' key"),
        "no benchmarks": (b'{"benchmarks": []}', "no benchmarks"),
        "wrong type": (json.dumps(wrong_type).encode(), "stats.mean"),
        "not utf-8": (b"\xff\xfe\x00{", "not UTF-8"),
    }
    with server.client() as client:
        for what, (body, message) in bad_bodies.items():
            response = upload(client, body, project="pdfminer")
            assert response.status_code == 422, (what, response.text)
            assert message in response.json()["detail"], (what, response.text)
        for params in ({"project": "bad name!"}, {"project": "ok", "commit": "a b"}):
            response = client.post(
                "/api/v1/bench/runs", params={"branch": "main", **params}, content=good
            )
            assert response.status_code == 422, response.text
        assert client.get("/api/v1/bench/projects").json() == []
        runs = client.get("/api/v1/bench/runs", params={"project": "pdfminer", "branch": "main"})
        assert runs.json() == []
        # Still working after all that: the good file is stored.
        assert upload(client, good, project="pdfminer").status_code == 201


def test_old_format_files_are_accepted(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as client:
        response = upload(client, OLD_FORMAT.read_bytes(), project="pytest-benchmark")
        assert response.status_code == 201, response.text
        assert response.json()["quirks"]


def test_history_marks_a_change_point_at_the_commit_that_made_it_slower(server) -> None:  # type: ignore[no-untyped-def]
    template = json.loads(PDFMINER.read_bytes())
    fullname = template["benchmarks"][0]["fullname"]
    rng = np.random.default_rng(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    medians = np.r_[rng.normal(0.010, 0.0002, 20), rng.normal(0.0115, 0.0002, 12)]
    with server.client() as client:
        # Uploaded out of order: the history follows the runs' own datetimes.
        for i in reversed(range(len(medians))):
            body = synthetic_run(template, start + timedelta(hours=i), f"c{i:03d}", medians[i])
            assert upload(client, body, project="pdf").status_code == 201
        history = client.get(
            "/api/v1/bench/history",
            params={"project": "pdf", "branch": "main", "fullname": fullname},
        ).json()
        assert [p["commit"] for p in history["points"]] == [f"c{i:03d}" for i in range(32)]
        assert [p["value"] for p in history["points"]] == list(medians)
        [change] = history["change_points"]
        assert change["index"] == 20
        assert change["commit"] == "c020"
        assert change["p_value"] < 0.01
        assert 0.12 < change["change"] < 0.18

        limited = client.get(
            "/api/v1/bench/runs", params={"project": "pdf", "branch": "main", "limit": 5}
        ).json()
        assert [r["commit"] for r in limited] == ["c027", "c028", "c029", "c030", "c031"]
        missing = client.get(
            "/api/v1/bench/history",
            params={"project": "pdf", "branch": "main", "fullname": "nope"},
        )
        assert missing.status_code == 404
