"""The pytest-benchmark loader: every real corpus file loads, quirks are recorded, and each
kind of bad input raises BenchResultsError naming the file."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from hotpath.profiler.formats.pytest_benchmark import (
    BenchResultsError,
    load_baselines,
    load_path,
    load_run,
)
from tests.corpus import CORPUS

CORPUS_FILES = sorted(CORPUS.glob("*.json"))


def _corpus(prefix: str) -> Path:
    return next(CORPUS.glob(prefix + "*"))


@pytest.mark.skipif(not CORPUS_FILES, reason="corpus not present")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:60])
def test_every_corpus_file_loads(path: Path) -> None:
    run = load_path(path)
    raw = json.loads(path.read_bytes())
    assert len(run.benchmarks) == len(raw["benchmarks"])
    assert run.datetime is not None and run.datetime.tzinfo is not None
    for bench in run.benchmarks:
        assert 0 <= bench.min <= bench.median <= bench.max
        assert bench.rounds >= 1


def test_trimmed_data_array_is_a_quirk_not_a_crash() -> None:
    run = load_path(_corpus("benchmark-action__github-action-benchmark__pytest_output"))
    bench = run.benchmarks[0]
    assert bench.data is not None and all(isinstance(x, float) for x in bench.data)
    assert "data truncated: 1 non-number dropped" in bench.quirks
    assert any(q.startswith("data holds 4 of") for q in bench.quirks)


def test_naive_datetime_is_read_as_utc_and_reported() -> None:
    run = load_path(_corpus("ionelmc__pytest-benchmark__0002"))
    assert run.datetime is not None and run.datetime.tzinfo == UTC
    assert "datetime has no timezone: read as UTC" in run.quirks
    assert "no ops (old format)" in run.benchmarks[0].quirks
    assert run.benchmarks[0].data is None


def test_one_round_is_reported() -> None:
    run = load_path(_corpus("guilhermeleobas__dynamo-bench__0003"))
    assert any("1 round only" in q for b in run.benchmarks for q in b.quirks)


def test_machine_key_tells_laptops_apart_but_not_ci_host_names() -> None:
    one = load_path(_corpus("benchmark-action__github-action-benchmark__pytest_output"))
    two = load_path(_corpus("benchmark-action__github-action-benchmark__pytest_several"))
    assert one.machine_key() != two.machine_key()
    cachew = [load_path(_corpus(f"karlicoss__cachew__000{i}")) for i in (7, 8)]
    assert cachew[0].machine_key() == cachew[1].machine_key()  # kernel release differs


def test_load_baselines_searches_a_folder_oldest_first(tmp_path: Path) -> None:
    nested = tmp_path / ".benchmarks" / "Linux-CPython-3.13-64bit"
    nested.mkdir(parents=True)
    for name in ("0003", "0001", "0002"):
        src = _corpus(f"guilhermeleobas__dynamo-bench__{name}")
        (nested / src.name).write_bytes(src.read_bytes())
    runs = load_baselines(tmp_path / ".benchmarks")
    stamps = [r.datetime for r in runs]
    assert len(runs) == 3 and stamps == sorted(stamps)  # type: ignore[type-var]


GOOD = {
    "version": "5.2.3",
    "datetime": "2026-01-01T00:00:00+00:00",
    "machine_info": {},
    "commit_info": {},
    "benchmarks": [
        {
            "fullname": "t.py::test_a",
            "name": "test_a",
            "group": None,
            "options": {},
            "stats": {"min": 1.0, "max": 3.0, "mean": 2.0, "median": 2.0, "stddev": 0.5,
                      "rounds": 5, "iterations": 1},
        }
    ],
}  # fmt: skip


def _with_stat(key: str, value: object) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    doc["benchmarks"][0]["stats"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b"<html>nope</html>", "not valid JSON"),
        (json.dumps(GOOD).encode()[:-40], "truncated"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'{"version": "5.2.3"}', "no 'benchmarks' key"),
        (b'{"benchmarks": {}}', "benchmarks: expected a list"),
        (_with_stat("mean", "fast"), "benchmarks[0] (t.py::test_a).stats.mean: expected a number"),
        (_with_stat("min", -1.0), "stats.min: expected a finite time >= 0"),
        (_with_stat("rounds", 2.5), "stats.rounds: expected a whole number"),
        (_with_stat("median", None), "stats.median: expected a number of seconds, got null"),
        (_with_stat("data", [1.0, -2.0]), "negative timings"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(payload: bytes, expected: str) -> None:
    with pytest.raises(BenchResultsError) as caught:
        load_run(payload, "uploads/run-42.json")
    message = str(caught.value)
    assert message.startswith("uploads/run-42.json: ")
    assert expected in message


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BenchResultsError, match="cannot read"):
        load_path(tmp_path / "absent.json")
    with pytest.raises(BenchResultsError, match="no pytest-benchmark"):
        load_baselines(tmp_path)
