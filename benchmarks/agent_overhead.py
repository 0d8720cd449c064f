"""Agent overhead on the target: throughput of a CPU-bound loop with and without the agent.

Runs pairs of trials interleaved (without, with, without, with, ...) so that drift on a
shared machine hits both sides alike, and prints the median ratio. The agent is the real
`hotpath agent attach` (py-spy, 100 Hz, non-blocking) shipping to a real server.

    .venv/bin/python benchmarks/agent_overhead.py [--trials 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import attach_agent, start_server, stop_process  # noqa: E402

LOOP = textwrap.dedent("""
    import sys, time
    def work():
        acc = 0
        for i in range(1000):
            acc += i * i
        return acc
    seconds = float(sys.argv[1])
    time.sleep(float(sys.argv[2]))  # time for the agent to attach before counting
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        work()
        n += 1
    print(n / seconds)
""")


def trial(script: Path, seconds: float, server: str | None) -> float:
    target = subprocess.Popen(
        [sys.executable, str(script), str(seconds), "1.0"], stdout=subprocess.PIPE, text=True
    )
    agent = None
    if server:
        agent = attach_agent(
            target.pid,
            server,
            "overhead",
            "--window",
            "2",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    out, _ = target.communicate(timeout=seconds + 60)
    if agent:
        if agent.poll() is None:
            agent.send_signal(signal.SIGINT)
        agent.wait(30)
    return float(out.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "loop.py"
        script.write_text(LOOP)
        server = start_server(f"sqlite:///{tmp}/h.db", Path(tmp) / "srv")
        try:
            ratios, base, attached = [], [], []
            for i in range(args.trials):
                without = trial(script, args.seconds, None)
                with_agent = trial(script, args.seconds, server.url)
                base.append(without)
                attached.append(with_agent)
                ratios.append(with_agent / without)
                print(
                    f"trial {i + 1}: without {without:,.0f}/s  with agent {with_agent:,.0f}/s"
                    f"  ratio {with_agent / without:.4f}",
                    flush=True,
                )
        finally:
            stop_process(server.process)
    print(f"\ncpus={os.cpu_count()} trials={args.trials} seconds={args.seconds:g}")
    print(f"median throughput without agent: {statistics.median(base):,.0f} loops/s")
    print(f"median throughput with agent:    {statistics.median(attached):,.0f} loops/s")
    print(
        f"median ratio with/without: {statistics.median(ratios):.4f} "
        f"(loss {100 * (1 - statistics.median(ratios)):.2f}%; bar: loss <= 1%)"
    )


if __name__ == "__main__":
    main()
