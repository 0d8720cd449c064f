"""`hotpath gate --profile` on a real toy pytest-benchmark suite in a real git repository.

Head makes one function three times slower than on main; both are profiled with pyinstrument
(head in place, main in a temporary git worktree), uploaded to a real server, and the
differential flame graph's API names that function as the one that got slower.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from hotpath.gate.profile import profile_flagged
from hotpath.profiler.formats import pyinstrument as session_format
from hotpath.profiler.formats import speedscope

CONFTEST = """
import pytest


@pytest.fixture(autouse=True)
def _benchmark_nodeid(request):
    # pytest-benchmark 5.2 with pytest 9.2 (ionelmc/pytest-benchmark#321): alias the id.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
"""

TOY = """
def parse(n):
    return [str(i) for i in range({parse})]


def risk(n):
    total = 0
    for i in range({risk}):
        total += i * i % 7
    return total


def order():
    return len(parse(0)) + risk(0)
"""

TEST = """
from toy import order


def test_order(benchmark):
    benchmark.pedantic(order, rounds=40, iterations=1)


def test_other(benchmark):
    benchmark(sum, range(100))
"""

OPTIONS = "[pytest]\naddopts = --benchmark-disable-gc\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def toy_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repo: main with the fast `risk`, a feature branch (checked out) with it slower."""
    repo = tmp_path / "toy"
    (repo / "tests").mkdir(parents=True)
    (repo / "conftest.py").write_text(CONFTEST)
    (repo / "pytest.ini").write_text(OPTIONS)
    (repo / "tests" / "test_toy.py").write_text(TEST)
    (repo / "toy.py").write_text(TOY.format(parse=3000, risk=4000))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "toy.py").write_text(TOY.format(parse=3000, risk=12000))
    git(repo, "commit", "-q", "-am", "slower risk")
    return repo, base


def test_the_diff_names_the_function_that_got_slower(sqlite_server, toy_repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo, base_commit = toy_repo
    fullname = "tests/test_toy.py::test_order"
    links = profile_flagged(
        [fullname],
        rootdir=repo,
        server=sqlite_server.url,
        project="toy",
        branch="feature",
        commit=None,
        base_branch="main",
        out_dir=tmp_path / "profiles",
    )
    link = links[fullname]
    assert link.url is not None, link.note
    assert "base" in link.note and "head profiled now" in link.note
    # The worktree is gone again.
    assert git(repo, "worktree", "list").count("\n") == 0

    # Locally: speedscope of the test alone (cut to the test function), risk the heaviest.
    head = speedscope.loads(link.profile_path.read_text())
    roots = {stack[0].name for stack in head.samples}
    assert roots == {"test_order"}
    assert (tmp_path / "profiles").glob("*.base.speedscope.json")

    # On the server: the page exists, and the diff API with the page's selections flags risk.
    url = urlsplit(link.url)
    assert url.path == "/services/bench-toy/diff"
    with sqlite_server.client() as client:
        assert client.get(f"{url.path}?{url.query}").status_code == 200
        diff = client.get(
            "/api/v1/diff", params=[("service", "bench-toy"), *parse_qsl(url.query)]
        ).json()
    head_labels = dict(v.split("=", 1) for k, v in parse_qsl(url.query) if k == "head_label")
    base_labels = dict(v.split("=", 1) for k, v in parse_qsl(url.query) if k == "base_label")
    assert head_labels["commit"] == git(repo, "rev-parse", "HEAD")
    assert base_labels["commit"] == base_commit
    flagged = [f["function"] for f in diff["functions"] if f["flagged"] and f["change_pp"] > 0]
    assert flagged and flagged[0] == "risk", json.dumps(diff["functions"][:5], indent=1)
    assert "parse" not in flagged


def test_without_server_or_git_the_head_profile_is_still_written(toy_repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo, _ = toy_repo
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    links = profile_flagged(
        ["tests/test_toy.py::test_order", "tests/test_toy.py::test_missing"],
        rootdir=repo,
        server=None,
        project=None,
        branch=None,
        commit=None,
        base_branch="main",
        out_dir=tmp_path / "out",
    )
    found = links["tests/test_toy.py::test_order"]
    assert found.url is None and "head only" in found.note
    assert speedscope.loads(found.profile_path.read_text()).total > 0
    missing = links["tests/test_toy.py::test_missing"]
    assert missing.profile_path is None and "could not profile head" in missing.note


def test_pyinstrument_session_records_are_weighted_by_time() -> None:
    thread = "MainThread\x00<thread>\x001"
    session = {
        "start_time": 1_700_000_000.0,
        "duration": 0.5,
        "min_interval": 0.001,
        "frame_records": [
            (
                [thread, "main\x00app.py\x001\x01l5", "f\x00app.py\x0010"],
                0.3,
            ),
            (
                [thread, "main\x00app.py\x001", "g\x00app.py\x0020\x01cK"],
                0.0002,
            ),
        ],
    }
    profile = session_format.from_session(session)
    weights = {tuple(f.name for f in s): w for s, w in profile.samples.items()}
    assert weights == {("main", "f"): 300, ("main", "K.g"): 1}
    assert profile.sample_rate_hz == 1000
    focused = session_format.focus(profile, "g")
    assert {tuple(f.name for f in s) for s in focused.samples} == {("K.g",)}
