"""`hotpath gate` run as a real subprocess: exit codes, corpus pairs, reports, and runs of a
real pytest-benchmark toy suite (synthetic, full `data`) with and without a planted slowdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[1]
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")

TOY_CONFTEST = '''
import pytest


@pytest.fixture(autouse=True)
def _benchmark_nodeid(request):
    """pytest-benchmark 5.2 reads node._nodeid, gone in pytest 9.2 (pytest-benchmark#321)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
'''
TOY_SUITE = """
import os
import time


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


SLOW = float(os.environ.get("TOY_SLOWDOWN", "0"))


def test_steady(benchmark):
    benchmark.pedantic(spin, args=(0.0004,), rounds=30, iterations=1)


def test_changed(benchmark):
    benchmark.pedantic(spin, args=(0.0004 * (1 + SLOW),), rounds=30, iterations=1)
"""


def gate(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotpath", "gate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def corpus(prefix: str) -> Path:
    return next(CORPUS.glob(prefix + "*"))


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real pytest-benchmark runs of a toy suite: two plain, two 60% slower."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "conftest.py").write_text(TOY_CONFTEST)
    (folder / "test_toy.py").write_text(TOY_SUITE)
    runs = {"folder": folder}
    for name, slowdown in (("base1", "0"), ("base2", "0"), ("slow", "0.6"), ("slow2", "0.6")):
        out = folder / f"{name}.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--benchmark-json={out}", "test_toy.py"],
            cwd=folder, capture_output=True, text=True, timeout=120,
            env={**os.environ, "TOY_SLOWDOWN": slowdown},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        runs[name] = out
    return runs


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert gate(tmp_path / "x.json").returncode == 2
    result = gate(tmp_path / "x.json", "--server", "http://127.0.0.1:9")
    assert result.returncode == 2 and "--project and --branch" in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty file"), (b'{"benchmarks": [', "truncated"), (b"[]", "got a list")],
)
def test_bad_input_exit_2_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    good = corpus("karlicoss__cachew__0008") if CORPUS.is_dir() else bad
    result = gate(bad, "--baseline", good)
    assert result.returncode == 2
    assert str(bad) in result.stderr and problem in result.stderr


def test_planted_slowdown_fails_with_reports(toy_runs: dict[str, Path], tmp_path: Path) -> None:
    md, js = tmp_path / "gate.md", tmp_path / "gate.json"
    result = gate(
        toy_runs["slow"], "--baseline", toy_runs["base1"], "--baseline", toy_runs["base2"],
        "--report-md", md, "--report-json", js,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    report = {row["fullname"]: row for row in json.loads(js.read_text())}
    changed = report["test_toy.py::test_changed"]
    assert changed["verdict"] == "regressed"
    assert changed["ci_low"] < changed["change"] < changed["ci_high"]
    assert changed["change"] > 0.3
    assert changed["mann_whitney_p"] is not None and changed["mann_whitney_p"] < 0.001
    assert report["test_toy.py::test_steady"]["verdict"] == "unchanged"
    # the toy's benchmarks have rounds enough: judged on their minimum, and the report says so
    assert changed["statistic"] == "minimum" and changed["slow_episode"] is False
    assert changed["evidence"].split("; ")[1].startswith("minimum ")
    for row in report.values():
        assert {"fullname", "verdict", "change", "ci_low", "ci_high", "p_value", "baseline_runs",
                "evidence", "quirks", "profile"} <= set(row)  # fmt: skip
    text = md.read_text()
    assert "regression" in text and "test_toy.py::test_changed" in text
    assert "low confidence" in text  # two baseline runs only


def test_unchanged_run_passes(toy_runs: dict[str, Path]) -> None:
    result = gate(toy_runs["base2"], "--baseline", toy_runs["base1"], "--min-effect", "40%")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_corpus
def test_dynamo_a_a_pair_does_not_fail() -> None:
    result = gate(
        corpus("guilhermeleobas__dynamo-bench__0003"), "--baseline",
        corpus("guilhermeleobas__dynamo-bench__0002"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "max_time 1.0 -> 0.01" in result.stdout


@needs_corpus
def test_machine_mismatch_is_called_out(tmp_path: Path) -> None:
    js = tmp_path / "r.json"
    result = gate(
        corpus("benchmark-action__github-action-benchmark__pytest_several"), "--baseline",
        corpus("benchmark-action__github-action-benchmark__pytest_output"), "--report-json", js,
    )  # fmt: skip
    assert result.returncode == 0
    assert "machine differs" in result.stdout
    verdicts = {row["fullname"]: row["verdict"] for row in json.loads(js.read_text())}
    assert verdicts["bench.py::test_fib_10"] == "unknown"


@needs_corpus
def test_disjoint_runs_are_all_new_or_missing(tmp_path: Path) -> None:
    js = tmp_path / "r.json"
    result = gate(
        corpus("pdfminer__pdfminer.six__0002"), "--baseline",
        corpus("pdfminer__pdfminer.six__0001"), "--report-json", js,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = [row["verdict"] for row in json.loads(js.read_text())]
    assert verdicts and set(verdicts) == {"new", "missing"}


def test_several_head_runs_are_pooled(toy_runs: dict[str, Path], tmp_path: Path) -> None:
    js = tmp_path / "gate.json"
    result = gate(
        toy_runs["slow"], toy_runs["slow2"], "--baseline", toy_runs["base1"], "--baseline",
        toy_runs["base2"], "--report-json", js,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    report = {row["fullname"]: row for row in json.loads(js.read_text())}
    assert {row["head_runs"] for row in report.values()} == {2}
    assert report["test_toy.py::test_changed"]["verdict"] == "regressed"
    assert "2 head runs" in result.stdout
    again = gate(toy_runs["slow"], toy_runs["slow"], "--baseline", toy_runs["base1"])
    assert again.returncode == 2 and "given twice" in again.stderr


@pytest.mark.parametrize(
    ("rerun_slowdown", "confirm", "code", "confirmation", "rounds"),
    [("0.6", "6", 1, "confirmed", 2), ("0", "3", 0, "not confirmed", 3)],
)
def test_confirm_reruns_the_suspects_with_pytest_until_settled(
    toy_runs: dict[str, Path],
    tmp_path: Path,
    rerun_slowdown: str,
    confirm: str,
    code: int,
    confirmation: str,
    rounds: int,
) -> None:
    """The head run is 60% slower; the re-runs really run the toy suite. Still slow: the
    regression is confirmed beyond doubt by the second re-run and no more are run (with two
    runs of history, the prior share of contended runs keeps one fast re-run from proving
    that the slowdown is not a busy machine's). Back to
    normal: with two baseline runs a 5% change cannot be ruled out, so it is re-run up to N
    times and the single run's verdict is cleared."""
    js = tmp_path / "gate.json"
    result = gate(
        toy_runs["slow"], "--baseline", toy_runs["base1"], "--baseline", toy_runs["base2"],
        "--confirm", confirm, "--report-json", js,
        cwd=toy_runs["folder"], env={"TOY_SLOWDOWN": rerun_slowdown},
    )  # fmt: skip
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.count("confirm: re-run ") == rounds  # pytest processes
    assert f"re-run {rounds} of up to {confirm}:" in result.stderr
    changed = next(
        row for row in json.loads(js.read_text()) if row["fullname"].endswith("test_changed")
    )
    assert changed["confirmation"] == confirmation and changed["head_runs"] == 1 + rounds
    assert changed["evidence"].startswith(f"{confirmation} by {rounds} re-run")
    assert f"re-run in {rounds} round(s)" in result.stdout.replace("\n", " ")


TIMES = ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")


def _scaled(run: Path, out: Path, factor: float) -> Path:
    """A copy of a pytest-benchmark run with every time `factor` times as long."""
    doc = json.loads(run.read_text())
    for bench in doc["benchmarks"]:
        stats = bench["stats"]
        for key in TIMES:
            if isinstance(stats.get(key), float | int):
                stats[key] *= factor
        stats["ops"] = 1 / stats["mean"]
        if stats.get("data"):
            stats["data"] = [x * factor for x in stats["data"]]
    out.write_text(json.dumps(doc))
    return out


def test_confirm_with_enough_history_judges_the_reruns_by_the_precedence_test(
    toy_runs: dict[str, Path], tmp_path: Path
) -> None:
    """Eight runs of history (the two plain runs, each time a little slower or faster) and up
    to 6 re-runs: enough for the precedence test, which judges the re-runs on their fastest
    against the baseline runs as they are, with no noise model. The 60% slowdown is
    confirmed beyond doubt once 4 re-runs are all slower than all 8 baseline runs (p =
    1/C(12, 4) = 0.002), and the report says so in those words."""
    history = [
        _scaled(toy_runs[f"base{1 + k % 2}"], tmp_path / f"b{k}.json", 1 + 0.01 * (k - 4))
        for k in range(8)
    ]
    js = tmp_path / "gate.json"
    result = gate(
        toy_runs["slow"], *(a for h in history for a in ("--baseline", h)),
        "--confirm", "6", "--report-json", js,
        cwd=toy_runs["folder"], env={"TOY_SLOWDOWN": "0.6"},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    changed = next(
        row for row in json.loads(js.read_text()) if row["fullname"].endswith("test_changed")
    )
    assert changed["verdict"] == "regressed" and changed["confirmation"] == "confirmed"
    assert changed["evidence"].startswith(
        "confirmed by 4 re-runs, the fastest of 4 re-runs slower than 8 of 8 baseline runs, p=0.002"
    ), changed["evidence"]
    assert result.stderr.count("confirm: re-run ") == 4


def test_a_failing_rerun_exits_2_with_the_reason(toy_runs: dict[str, Path]) -> None:
    result = gate(
        toy_runs["slow"], "--baseline", toy_runs["base1"], "--baseline", toy_runs["base2"],
        "--confirm", "1", "--pytest-args", "--no-such-pytest-option",
        cwd=toy_runs["folder"],
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "re-run 1 of up to 1 failed: pytest exited 4" in result.stderr
    assert "--no-such-pytest-option" in result.stderr
