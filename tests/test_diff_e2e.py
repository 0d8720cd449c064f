"""A real process run twice, once with one function about 50% slower: `hotpath diff` flags
that function first and nothing else, round after round; a steady process flags nothing."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.servers import REPO, attach_agent, stop_process

TARGET = textwrap.dedent("""
    import sys, time

    SLOW = float(sys.argv[1])

    def decode_order():
        return sum(i * i for i in range(4_000))

    def risk_check():
        return sum(i * i for i in range(12_000))

    def price_quote():
        return sum(i * i for i in range(int(8_000 * SLOW)))

    def route_order():
        return sum(i * i for i in range(6_000))

    def handle_order():
        decode_order()
        risk_check()
        price_quote()
        route_order()

    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        handle_order()
""")
FUNCTIONS = {"decode_order", "risk_check", "price_quote", "route_order", "handle_order"}


def hotpath(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotpath", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def profile_run(server: str, tmp_path, slow: float, labels: list[str], seconds: float):  # type: ignore[no-untyped-def]
    """Start the target and attach the real agent; returns the two processes."""
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    target = subprocess.Popen([sys.executable, str(script), str(slow), str(seconds)])
    time.sleep(0.3)
    label_args = [arg for label in labels for arg in ("--label", label)]
    agent = attach_agent(
        target.pid,
        server,
        "orders",
        "--window",
        "2",
        "--rate",
        "250",
        *label_args,
        spool_dir=tmp_path / "spool",
    )
    return target, agent


def finish(target, agent) -> None:  # type: ignore[no-untyped-def]
    try:
        target.wait(120)
        _, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
        # Diagnosable failures: an agent that sampled nothing says so here, not as a 422 later.
        samples = re.search(r"(\d+) samples, (\d+) shipped", err)
        assert samples and int(samples[1]) > 100 and int(samples[2]) > 0, err
    finally:
        stop_process(target)
        stop_process(agent)


def test_the_slowed_function_is_flagged_first_and_alone_round_after_round(
    sqlite_server, tmp_path
) -> None:
    rounds = 3
    for r in range(rounds):
        # One after the other: side by side, two targets, two py-spys, two agents and the
        # server oversubscribe two cores, and the functions' relative speeds drift.
        finish(*profile_run(sqlite_server.url, tmp_path, 1.0, [f"version=1-{r}"], 10))
        finish(*profile_run(sqlite_server.url, tmp_path, 1.5, [f"version=2-{r}"], 10))
    for r in range(rounds):
        result = hotpath(
            "diff",
            "--server",
            sqlite_server.url,
            "--service",
            "orders",
            "--base",
            f"version=1-{r}",
            "--head",
            f"version=2-{r}",
            "--json",
        )
        assert result.returncode == 1, result.stderr  # a slowdown was found
        functions = json.loads(result.stdout)
        flagged = [f["function"] for f in functions if f["flagged"]]
        assert flagged == ["price_quote"], (r, functions[:6])
        top = functions[0]
        assert top["function"] == "price_quote" and top["change_pp"] > 5, top
        assert {"function", "base_share", "head_share", "change_pp", "p_value", "flagged"} <= set(
            top
        )
        seen = {f["function"] for f in functions}
        assert seen >= FUNCTIONS
    table = hotpath(
        "diff",
        "--server",
        sqlite_server.url,
        "--service",
        "orders",
        "--base",
        "version=1-0",
        "--head",
        "version=2-0",
    )
    assert table.returncode == 1 and "price_quote" in table.stdout and "SLOWER" in table.stdout


def test_two_windows_of_one_steady_process_flag_nothing(sqlite_server, tmp_path) -> None:
    began = datetime.now(UTC)
    target, agent = profile_run(sqlite_server.url, tmp_path, 1.0, ["version=steady"], 60)
    try:
        time.sleep(12.5)
        agent.send_signal(signal.SIGINT)
        agent.communicate(timeout=60)
    finally:
        stop_process(target)
        stop_process(agent)
    middle = began + timedelta(seconds=6.5)
    first = f"{began.isoformat()}..{middle.isoformat()}"
    second = f"{middle.isoformat()}..{(began + timedelta(seconds=20)).isoformat()}"
    result = hotpath(
        "diff",
        "--server",
        sqlite_server.url,
        "--service",
        "orders",
        "--base",
        first,
        "--head",
        second,
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    functions = json.loads(result.stdout)
    assert not [f for f in functions if f["flagged"]]
    assert {f["function"] for f in functions} >= FUNCTIONS
    itself = hotpath(
        "diff",
        "--server",
        sqlite_server.url,
        "--service",
        "orders",
        "--base",
        "version=steady",
        "--head",
        "version=steady",
        "--json",
    )
    assert itself.returncode == 0 and not [f for f in json.loads(itself.stdout) if f["flagged"]]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--base", "version"], "key=value or FROM..UNTIL"),
        (["--base", "-1h..soon"], "cannot read the time"),
        (["--base", "-2h..-1h,-1h..now"], "at most one"),
    ],
)
def test_bad_sides_are_usage_errors(sqlite_server, argv: list[str], words: str) -> None:
    result = hotpath(
        "diff", "--server", sqlite_server.url, "--service", "orders", "--head", "version=2", *argv
    )
    assert result.returncode == 2 and words in result.stderr, result.stderr


def test_an_unknown_service_is_an_error_not_a_verdict(sqlite_server) -> None:
    result = hotpath(
        "diff",
        "--server",
        sqlite_server.url,
        "--service",
        "nope",
        "--base",
        "version=1",
        "--head",
        "version=2",
    )
    assert result.returncode == 2 and "unknown service 'nope'" in result.stderr
