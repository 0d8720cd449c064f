"""The README's GitHub Actions workflow, its shell steps run for real (offline mode, as Actions
runs them: bash -eo pipefail, `${{ }}` expressions filled in) on a toy project in a git
repository: pushes to main keep their runs, a pull request that makes a benchmark slower fails
with a report and a profile, and the kept runs are pruned to the newest 50."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.servers import RunningServer, make_token, start_server, stop_process
from tests.test_gate_cli import TOY_CONFTEST, TOY_SUITE

ROOT = Path(__file__).resolve().parents[1]
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _workflow() -> dict:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"```yaml\n(# \.github/workflows/benchmarks\.yml\n.*?)```", readme, re.S)
    assert found, "the README's workflow block"
    return yaml.safe_load(found.group(1))


def _steps() -> dict[str, dict]:
    return {step.get("name", ""): step for step in _workflow()["jobs"]["gate"]["steps"]}


def _step(prefix: str) -> dict:
    matches = [step for name, step in _steps().items() if name.startswith(prefix)]
    assert len(matches) == 1, f"one step named {prefix!r}..."
    return matches[0]


def _run_step(prefix: str, project: Path, env: dict[str, str], context: dict[str, str]) -> str:
    """The step's script as Actions runs it; returns what it wrote to $GITHUB_OUTPUT."""

    def fill(match: re.Match[str]) -> str:
        assert match.group(1) in context, f"unknown expression {match.group(1)}"
        return context[match.group(1)]

    script = EXPRESSION.sub(fill, _step(prefix)["run"])
    output = project / ".github-output"
    output.write_text("")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(output),
            **env,
        },
    )
    assert done.returncode == 0, f"step {prefix}: {done.stdout}\n{done.stderr}"
    return output.read_text()


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=project, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _commit_suite(project: Path, slowdown: str, message: str) -> None:
    suite = TOY_SUITE.replace('float(os.environ.get("TOY_SLOWDOWN", "0"))', slowdown)
    (project / "benchmarks" / "test_toy.py").write_text(suite)
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", message)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project with pyproject.toml (pytest's rootdir) and a benchmarks/ suite on main."""
    project = tmp_path / "toy"
    (project / "benchmarks").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "toy"\nversion = "0"\n')
    (project / "benchmarks" / "conftest.py").write_text(TOY_CONFTEST)
    (project / ".gitignore").write_text(".benchmarks/\n*.json\n.github-output\ngate.md\n")
    _git(project, "init", "-q", "-b", "main")
    _commit_suite(project, "0.0", "suite")
    return project


def test_the_readme_workflow_fails_a_slower_pull_request(project: Path) -> None:
    context = {"github.event.repository.name": "toy"}
    offline = {"HOTPATH_SERVER": "", "BRANCH": "main"}
    keep = _step("Keep this run of main")
    assert "refs/heads/main" in keep["if"] and "HOTPATH_SERVER == ''" in keep["if"]
    # pushes to main: the first has nothing to compare with; each keeps its first run
    for push in range(3):
        env = {**offline, "COMMIT": f"{push:040x}"}
        _run_step("Benchmarks", project, env, context)
        assert all((project / f"bench-{i}.json").is_file() for i in (1, 2, 3))
        if push == 0:
            assert _run_step("Gate", project, env, context) == "code=0\n"
            assert "No saved runs of main yet" in (project / "gate.md").read_text()
        _run_step("Keep this run of main", project, env, context)
    assert len(list((project / ".benchmarks" / "main").glob("*.json"))) == 3

    # a pull request that makes test_changed 60% slower in its code
    _git(project, "checkout", "-q", "-b", "feature")
    _commit_suite(project, "0.6", "slower")
    env = {**offline, "BRANCH": "feature", "COMMIT": "f" * 40}
    _run_step("Benchmarks", project, env, context)
    assert _run_step("Gate", project, env, context) == "code=1\n"
    report = (project / "gate.md").read_text()
    assert "test_changed" in report and "3 head runs" in report
    profiles = list(project.glob("hotpath-profiles/*.speedscope.json"))
    assert profiles, "--profile wrote the profiles beside the report"


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    running = start_server(db, tmp_path / "server", auth="required")
    try:
        yield running, db
    finally:
        stop_process(running.process)


def test_the_readme_workflow_with_a_server(
    project: Path, secured_server: tuple[RunningServer, str]
) -> None:
    """The HOTPATH_SERVER branch, on a server that requires tokens: pushes to main upload the
    base history with the publish token, the pull request's run (with a token that cannot
    write main) is compared with it, fails, and links the differential flame graph."""
    sqlite_server, db = secured_server
    publish, pull = make_token(db, "ingest,read,publish"), make_token(db, "ingest,read")
    context = {"github.event.repository.name": "toy"}
    for push in range(3):
        env = {"HOTPATH_SERVER": sqlite_server.url, "BRANCH": "main", "COMMIT": f"{push:040x}",
               "HOTPATH_TOKEN": publish}  # fmt: skip
        _run_step("Benchmarks", project, env, context)
        assert _run_step("Gate", project, env, context) == "code=0\n"
    _git(project, "checkout", "-q", "-b", "feature")
    _commit_suite(project, "0.6", "slower")
    env = {"HOTPATH_SERVER": sqlite_server.url, "BRANCH": "feature", "COMMIT": "f" * 40,
           "HOTPATH_TOKEN": pull}  # fmt: skip
    _run_step("Benchmarks", project, env, context)
    assert _run_step("Gate", project, env, context) == "code=1\n"
    report = (project / "gate.md").read_text()
    assert "test_changed" in report and "against 3 baseline run(s)" in report
    assert f"]({sqlite_server.url}/" in report  # the profile diff's page on the server
    with sqlite_server.client(pull) as client:
        runs = client.get("/api/v1/bench/runs", params={"project": "toy", "branch": "main"})
        assert [r["commit"] for r in runs.json()] == [f"{push:040x}" for push in range(3)]


def test_the_kept_runs_are_the_newest_50(project: Path) -> None:
    kept = project / ".benchmarks" / "main"
    kept.mkdir(parents=True)
    for k in range(50):
        (kept / f"{1_000_000_000 + k}-old.json").write_text("{}")
    (project / "bench-1.json").write_text("{}")  # the step only copies it
    _run_step("Keep this run of main", project, {"COMMIT": "c" * 40}, {})
    names = sorted(p.name for p in kept.glob("*.json"))
    assert len(names) == 50
    assert "1000000000-old.json" not in names and names[-1].endswith("-" + "c" * 40 + ".json")
