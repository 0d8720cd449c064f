"""Profile types are identity, shown on a real process attached twice at once by real agents:
one sampling on-CPU threads (cpu), one every thread (`--idle`, wall). Reads of one type never
see the other's samples, and a comparison of the two types is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from hotpath.profiler.formats import collapsed
from hotpath.profiler.model import function_stats
from tests.servers import attach_agent, stop_process

# Half of each cycle computes, half sleeps; the target measures its own split.
TARGET = textwrap.dedent("""
    import sys, time

    def compute(seconds):
        deadline = time.perf_counter() + seconds
        acc = 0
        while time.perf_counter() < deadline:
            for i in range(2_000):
                acc += i * i
        return acc

    def sleep_a_while(seconds):
        time.sleep(seconds)

    def main(total):
        end = time.monotonic() + total
        while time.monotonic() < end:
            compute(0.05)
            sleep_a_while(0.05)

    if __name__ == "__main__":
        main(float(sys.argv[1]))
""")


def total_shares(
    server: str, service: str, profile_type: str | None
) -> tuple[dict[str, float], int]:
    params = {"service": service, "format": "collapsed", "from": "-1h"}
    if profile_type is not None:
        params["type"] = profile_type
    response = httpx.get(f"{server}/api/v1/profile", params=params, timeout=30)
    assert response.status_code == 200, response.text
    profile = collapsed.loads(response.text)
    assert profile.total > 0
    total = profile.total
    return {s.name: s.total_weight / total for s in function_stats(profile)}, total


def test_cpu_and_wall_profiles_of_one_process_stay_apart(sqlite_server, tmp_path: Path) -> None:
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    target = subprocess.Popen([sys.executable, str(script), "14"])
    time.sleep(0.3)
    agents = [
        attach_agent(target.pid, sqlite_server.url, "halfsleep", "--window", "2", *extra)
        for extra in ((), ("--idle",))
    ]
    try:
        target.wait(60)
        for agent in agents:
            _, err = agent.communicate(timeout=60)
            assert agent.returncode == 0, err
    finally:
        stop_process(target)
        for agent in agents:
            stop_process(agent)

    cpu, cpu_total = total_shares(sqlite_server.url, "halfsleep", None)  # the default is cpu
    wall, wall_total = total_shares(sqlite_server.url, "halfsleep", "wall")
    cpu_explicit, _ = total_shares(sqlite_server.url, "halfsleep", "cpu")
    assert cpu == cpu_explicit
    # On CPU the process only computes: the sleeping function is (almost) absent.
    assert cpu.get("sleep_a_while", 0.0) < 0.05, cpu
    assert cpu.get("compute", 0.0) > 0.9, cpu
    # Wall clock sees the sleep at about its true half (py-spy at 100 Hz, ~14 s).
    assert 0.35 < wall.get("sleep_a_while", 0.0) < 0.65, wall
    assert 0.35 < wall.get("compute", 0.0) < 0.65, wall
    # Wall samples every 10 ms whatever runs; cpu only while computing: about half as many.
    assert cpu_total < 0.8 * wall_total, (cpu_total, wall_total)

    services = httpx.get(f"{sqlite_server.url}/api/v1/services", timeout=30).json()
    (entry,) = [s for s in services if s["name"] == "halfsleep"]
    assert set(entry["types"]) == {"cpu", "wall"}

    refused = httpx.get(
        f"{sqlite_server.url}/api/v1/diff",
        params={"service": "halfsleep", "base_type": "cpu", "head_type": "wall"},
        timeout=30,
    )
    assert refused.status_code == 422
    assert "cpu" in refused.text and "wall" in refused.text

    unknown = httpx.get(
        f"{sqlite_server.url}/api/v1/profile",
        params={"service": "halfsleep", "type": "gpu"},
        timeout=30,
    )
    assert unknown.status_code == 422 and "gpu" in unknown.text and "wall" in unknown.text


def test_the_cli_refuses_to_compare_cpu_with_wall(sqlite_server) -> None:
    """The refusal reaches the command line as exit 2 with the server's reason."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotpath",
            "diff",
            "--service",
            "nothing-yet",
            "--base",
            "-2h..-1h",
            "--head",
            "-1h..now",
            "--base-type",
            "cpu",
            "--head-type",
            "wall",
            "--server",
            sqlite_server.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "cpu" in result.stderr and "wall" in result.stderr, result.stderr
