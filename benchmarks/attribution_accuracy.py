"""Budget attribution against the truth measured inside the process.

A target runs an order path marked `@hot_path` whose four callees and own code burn known
shares of each call (busy loops, so CPU and wall time agree), and times each part itself.
The real agent (py-spy) attached to it ships to a real server; the server's attribution
(`/api/v1/hotpaths/NAME/attribution`) is printed beside the truth, per function, as shares of
the hot path and as milliseconds per call. Work outside the hot path (housekeeping) runs too,
so the split must come from the stacks inside the hot path only.

    .venv/bin/python benchmarks/attribution_accuracy.py [--seconds 20] [--rate 100] [--idle]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import attach_agent, start_server, stop_process  # noqa: E402

# ms per call of each part; the order path takes 10 ms, housekeeping 4 ms between orders.
SPLIT = {"risk_check": 4.0, "price_quote": 2.5, "route_order": 1.5, "decode_order": 1.0}
OWN_MS = 1.0

TARGET = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from hotpath import hot_path

    SPLIT = {split!r}

    def busy(ms):
        end = time.perf_counter_ns() + int(ms * 1e6)
        while time.perf_counter_ns() < end:
            pass

    def risk_check(): busy(SPLIT["risk_check"])
    def price_quote(): busy(SPLIT["price_quote"])
    def route_order(): busy(SPLIT["route_order"])
    def decode_order(): busy(SPLIT["decode_order"])
    PARTS = [decode_order, price_quote, risk_check, route_order]

    spent = dict.fromkeys([*SPLIT, "(self)"], 0)
    calls = [0]

    @hot_path("order_execution", budget_ms=20)
    def execute_order():
        for part in PARTS:
            t0 = time.perf_counter_ns()
            part()
            spent[part.__name__] += time.perf_counter_ns() - t0
        t0 = time.perf_counter_ns()
        end = t0 + int({own_ms} * 1e6)
        while time.perf_counter_ns() < end:
            pass
        spent["(self)"] += time.perf_counter_ns() - t0
        calls[0] += 1

    def housekeeping():
        busy(4)

    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        execute_order()
        housekeeping()
    with open(sys.argv[2], "w") as f:
        json.dump(dict(spent=spent, calls=calls[0]), f)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--idle", action="store_true", help="wall-clock sampling (py-spy --idle)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hotpath-attribution-") as tmp:
        work = Path(tmp)
        server = start_server(f"sqlite:///{work / 'h.db'}", work)
        script, truth_path = work / "target.py", work / "truth.json"
        script.write_text(TARGET.format(repo=str(REPO), split=SPLIT, own_ms=OWN_MS))
        target = subprocess.Popen([sys.executable, str(script), str(args.seconds), str(truth_path)])
        time.sleep(0.5)
        extra = ["--window", "5", "--rate", str(args.rate), *(["--idle"] if args.idle else [])]
        agent = attach_agent(target.pid, server.url, "bench", *extra, spool_dir=work / "spool")
        try:
            target.wait(args.seconds + 60)
            agent.communicate(timeout=60)
            with server.client() as client:
                answer = client.get(
                    "/api/v1/hotpaths/order_execution/attribution",
                    params={"service": "bench", "from": "-1h"},
                )
                answer.raise_for_status()
                split = answer.json()
        finally:
            stop_process(target)
            stop_process(agent)
            stop_process(server.process)
        truth = json.loads(truth_path.read_text())

    spent, calls = truth["spent"], truth["calls"]
    total_ns = sum(spent.values())
    measured = {c["function"]: c for c in split["children"]}
    mean_ms = split["hot_path"]["mean_ms"]
    print(
        f"{calls} calls in process; server: {split['hot_path']['count']} calls, mean "
        f"{mean_ms:.2f} ms, {split['samples_inside']} samples inside the hot path "
        f"(of {split['samples_total']}), {args.rate} Hz{', --idle' if args.idle else ''}"
    )
    print(f"{split['summary']}\n")
    header = (
        f"{'function':<14}{'truth':>9}{'server':>9}{'diff pp':>9}{'truth ms':>10}{'server ms':>11}"
    )
    print(header)
    worst = 0.0
    for name, ns in sorted(spent.items(), key=lambda kv: -kv[1]):
        share = ns / total_ns
        got = measured.get(name, {"total_share": 0.0, "total_ms": 0.0})
        diff = (got["total_share"] - share) * 100
        worst = max(worst, abs(diff))
        print(
            f"{name:<14}{share:>9.1%}{got['total_share']:>9.1%}{diff:>+9.2f}"
            f"{ns / calls / 1e6:>10.2f}{got['total_ms']:>11.2f}"
        )
    print(f"\nlargest difference: {worst:.2f} pp (bar: within 5 pp)")


if __name__ == "__main__":
    main()
