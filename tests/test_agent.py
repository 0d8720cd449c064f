"""The real agent (real py-spy) attached to real processes, shipping to a real server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from hotpath.profiler.formats import collapsed
from hotpath.profiler.model import function_stats
from tests.servers import REPO, attach_agent, free_port, start_server, stop_process

ARTIFACTS = REPO / "artifacts"

# Known split of CPU time between functions; the target measures the truth itself around
# each call, so the test compares the sampler with what really happened.
TARGET = textwrap.dedent("""
    import json, sys, time

    def spin(n):
        acc = 0
        for i in range(n):
            acc += i * i
        return acc

    def alpha(): spin(50_000)
    def beta(): spin(30_000)
    def delta(): spin(12_000)
    SPENT = {"alpha": 0, "beta": 0, "gamma": 0, "delta": 0}

    def gamma():
        spin(8_000)
        t0 = time.perf_counter_ns()
        delta()
        SPENT["delta"] += time.perf_counter_ns() - t0

    def main(seconds, truth_path):
        spent = SPENT
        began = time.perf_counter_ns()
        deadline = began + int(seconds * 1e9)
        while time.perf_counter_ns() < deadline:
            for name, fn in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
                t0 = time.perf_counter_ns()
                fn()
                spent[name] += time.perf_counter_ns() - t0
        total = time.perf_counter_ns() - began
        with open(truth_path, "w") as f:
            json.dump({k: v / total for k, v in spent.items()}, f)

    if __name__ == "__main__":
        main(float(sys.argv[1]), sys.argv[2])
""")


def spawn_target(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    truth = tmp_path / "truth.json"
    process = subprocess.Popen([sys.executable, str(script), str(seconds), str(truth)])
    time.sleep(0.3)  # let the interpreter get into the loop before attaching
    return process, truth


def run_agent(pid: int, server: str, *extra: str, spool_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return attach_agent(pid, server, "acc", *extra, spool_dir=spool_dir, stdout=subprocess.PIPE)


def fetch(server: str, service: str = "acc", **params: str) -> httpx.Response:
    return httpx.get(
        f"{server}/api/v1/profile",
        timeout=30,
        params={"service": service, "format": "collapsed", "from": "-1h", **params},
    )


def agent_summary(stderr: str) -> dict[str, int]:
    pattern = r"done: (\d+) windows, (\d+) samples, (\d+) shipped, (\d+) spooled, (\d+) refused"
    match = re.search(pattern, stderr)
    assert match, stderr
    names = ("windows", "samples", "shipped", "spooled", "refused")
    return dict(zip(names, map(int, match.groups()), strict=True))


def test_exported_shares_match_the_truth_measured_in_the_process(sqlite_server, tmp_path) -> None:
    target, truth_path = spawn_target(tmp_path, seconds=20)
    agent = run_agent(target.pid, sqlite_server.url, "--window", "2", "--label", "version=t1")
    try:
        target.wait(60)
        _, err = agent.communicate(timeout=60)  # the agent ends by itself when the target exits
    finally:
        stop_process(target)
        stop_process(agent)
    assert agent.returncode == 0, err
    summary = agent_summary(err)
    assert summary["windows"] >= 9 and summary["spooled"] == 0

    profile = collapsed.loads(fetch(sqlite_server.url, label="version=t1").text)
    assert profile.total == summary["samples"]  # every sampled window reached the server
    assert profile.total > 1500, "py-spy at 100 Hz over 20 s of CPU work"
    truth = json.loads(truth_path.read_text())
    shares = {s.name: s.total_weight / profile.total for s in function_stats(profile)}
    report = {
        name: {
            "truth": round(truth[name], 4),
            "measured": round(shares.get(name, 0), 4),
            "diff_pp": round(100 * (shares.get(name, 0) - truth[name]), 2),
        }
        for name in truth
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "accuracy.json").write_text(
        json.dumps({"samples": profile.total, "functions": report}, indent=2)
    )
    print(json.dumps(report, indent=2))
    for name, row in report.items():
        assert abs(row["diff_pp"]) <= 3.0, (name, report)


def test_sigint_ships_the_last_partial_window(sqlite_server, tmp_path) -> None:
    target, _ = spawn_target(tmp_path, seconds=60)
    agent = run_agent(target.pid, sqlite_server.url, "--window", "60")
    try:
        time.sleep(3)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
    finally:
        stop_process(target)
        stop_process(agent)
    assert agent.returncode == 0, err
    summary = agent_summary(err)
    assert summary["windows"] == 1 and summary["shipped"] == 1
    stored = collapsed.loads(fetch(sqlite_server.url).text)
    assert stored.total == summary["samples"] > 100


def test_sigterm_also_ships_the_last_window(sqlite_server, tmp_path) -> None:
    target, _ = spawn_target(tmp_path, seconds=60)
    agent = run_agent(target.pid, sqlite_server.url, "--window", "60")
    try:
        time.sleep(2)
        agent.terminate()
        _, err = agent.communicate(timeout=30)
    finally:
        stop_process(target)
    assert agent.returncode == 0, err
    assert collapsed.loads(fetch(sqlite_server.url).text).total == agent_summary(err)["samples"]


def test_windows_spool_while_the_server_is_away_and_replay_in_order(tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    target, _ = spawn_target(tmp_path, seconds=60)
    agent = run_agent(target.pid, url, "--window", "1", spool_dir=tmp_path / "spool")
    server = None
    try:
        time.sleep(3.5)  # a few windows find no server
        assert list((tmp_path / "spool" / "acc").glob("*/*.zst")), "windows were spooled"
        server = start_server(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "srv", port=port)
        time.sleep(2.5)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
    finally:
        stop_process(target)
        stop_process(agent)
    try:
        summary = agent_summary(err)
        assert summary["spooled"] >= 2
        assert not list((tmp_path / "spool" / "acc").glob("*/*.zst")), "the spool was replayed"
        stored = collapsed.loads(fetch(url).text)
        assert stored.total == summary["samples"], "nothing lost, nothing counted twice"
        assert httpx.get(f"{url}/api/v1/services").json()[0]["samples"] == summary["samples"]
    finally:
        if server:
            stop_process(server.process)


def test_attaching_to_a_missing_pid_says_so(sqlite_server) -> None:
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    agent = run_agent(gone.pid, sqlite_server.url)
    _, err = agent.communicate(timeout=30)
    assert agent.returncode != 0
    assert str(gone.pid) in err and "no running process" in err.lower(), err


def test_attaching_to_a_process_that_is_not_python_says_so(sqlite_server) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        agent = run_agent(other.pid, sqlite_server.url)
        _, err = agent.communicate(timeout=30)
    finally:
        stop_process(other)
    assert agent.returncode != 0
    assert str(other.pid) in err and "python" in err.lower(), err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--label", "version"], "not key=value"),
        (["--rate", "0"], "--rate"),
    ],
)
def test_bad_agent_options_are_refused(argv: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hotpath", "agent", "attach", "--pid", "1", "--service", "s", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 2 and words in result.stderr, result.stderr
