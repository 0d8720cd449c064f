"""RSS always on: what reading a process's memory costs the agent, and how soon the RSS trend
flags a leak, by leak rate (issue 15).

(a) cost: `agent/process_memory.read` (smaps_rollup: RSS, PSS, USS) and a statm-only read
    (RSS), timed on real processes holding --sizes MB each (written pages, many arenas),
    --reads times each: median and the 5th-95th percentiles, in microseconds.

(b) detection, real: one steady process (churning a bounded working set of random-size
    objects, so its RSS wobbles and steps as a real one does) and one leaking process per
    --rates (MB/min, 10^6 bytes, on top of the same churn) warm up for --warmup seconds
    unread (an agent attaches to a service that has been running), then the leaks start
    and all are read side by side for --minutes;
    every --window seconds (the agent's window) each one's RSS is read from /proc and judged
    by the server's rule (server/memory_trends.py with the default settings: horizon, floor,
    min span, alpha). Printed: minutes from the leak's start to the first "growing", and how
    many judgements of the steady process said "growing" (false alarms).

(c) detection, model (a hypothesis, not a measurement of leaking processes): the steady
    process's recorded RSS with a planted linear slope, judged the same way, for more rates
    and every start offset of the recording; latency median and worst.

Usage: python benchmarks/memory_rss.py [--minutes 20] [--window 10] [--warmup 180]
       [--rates 0.1,0.5,2]
       [--sizes 50,500,2000] [--reads 300] [--skip-real]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpath.agent import process_memory
from hotpath.server.memory_trends import TrendRule, judge
from hotpath.server.settings import Settings
from hotpath.server.storage.memory import MAX_POINTS, MemoryPoint, ProcessMemorySeries

MB = 1_000_000

HOLDER = textwrap.dedent("""
    import sys, time
    # Written pages in many objects (and so many allocator arenas and mappings).
    held = [bytearray(b"x") * 1_000_000 for _ in range(int(sys.argv[1]))]
    print("ready", flush=True)
    time.sleep(3600)
""")

# A steady service: a bounded working set of random-size objects, replaced at random; plus a
# leak of `rate` MB/min kept for good (0 for the steady one).
WORKLOAD = textwrap.dedent("""
    import random, sys, time
    rate = float(sys.argv[1]) * 1_000_000 / 60  # bytes per second
    rng = random.Random(int(sys.argv[2]))
    leak_from = time.monotonic() + float(sys.argv[3])  # after its warm-up
    cache, leaked, owed = [], [], 0.0
    last = leak_from
    while True:
        batch = [b"v" * rng.randint(10, 2000) for _ in range(rng.randint(1000, 20000))]
        cache.append(batch)
        if len(cache) > 5:
            cache.pop(rng.randrange(len(cache)))
        now = time.monotonic()
        if now > leak_from:
            owed += rate * (now - last)
            last = now
        if owed >= 4096:
            leaked.append(b"L" * int(owed))
            owed -= int(owed)
        time.sleep(0.1)
""")


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return f"median {statistics.median(values):8.1f}  p5 {p(0.05):8.1f}  p95 {p(0.95):8.1f}"


def statm_read(pid: int) -> process_memory.ProcessMemory:
    with open(f"/proc/{pid}/statm") as f:
        return process_memory.from_statm(pid, f.read())


def read_cost(sizes: list[int], reads: int, window_s: float) -> None:
    print("(a) reading a process's memory from /proc, per window (µs)")
    for size in sizes:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(size)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            got = process_memory.read(holder.pid)
            assert got is not None and got.uss_bytes is not None
            with open(f"/proc/{holder.pid}/maps") as f:
                mappings = sum(1 for _ in f)
            timings: dict[str, list[float]] = {"smaps_rollup": [], "statm": []}
            for _ in range(reads):  # interleaved, so drift hits both alike
                for name, read in (("smaps_rollup", process_memory.read), ("statm", statm_read)):
                    t0 = time.perf_counter_ns()
                    read(holder.pid)
                    timings[name].append((time.perf_counter_ns() - t0) / 1000)
            print(f"  RSS {got.rss_bytes / MB:7.0f} MB, {mappings} mappings:")
            for name, values in timings.items():
                print(f"    {name:13s} {percentiles(values)}")
            # The agent's reader: statm every window, smaps_rollup within its budget. Windows
            # of --window seconds are simulated by its clock; the cost is real.
            skipped = [0.0]  # the idle time between windows, added to the real clock
            reader = process_memory.MemoryReader(
                holder.pid, clock=lambda skipped=skipped: time.perf_counter() + skipped[0]
            )
            spent: list[float] = []
            for _ in range(reads):
                t0 = time.perf_counter()
                reader.read()
                cost = time.perf_counter() - t0
                spent.append(cost * 1e6)
                skipped[0] += window_s
            mean = statistics.fmean(spent)
            print(
                f"    agent reader  mean {mean:8.1f} µs per {window_s:g} s window "
                f"({mean / 1e6 / window_s:.5%} of a core); PSS/USS in "
                f"{reader.full_reads} of {reads} windows"
            )
        finally:
            holder.kill()
            holder.wait()


def series_of(pid: int, readings: list[tuple[float, int]]) -> ProcessMemorySeries:
    """Readings (seconds, RSS) as the store would hand them to the rule (last MAX_POINTS)."""
    points = [MemoryPoint(datetime.fromtimestamp(t, UTC), rss, None, None) for t, rss in readings][
        -MAX_POINTS:
    ]
    return ProcessMemorySeries(pid, points, points[-1], len(points))


def within_horizon(readings: list[tuple[float, int]], now: float, rule: TrendRule) -> list:
    return [(t, r) for t, r in readings if t > now - rule.horizon_s]


def thin(readings: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Averaged to MAX_POINTS equal steps, as the store does for longer ranges."""
    if len(readings) <= MAX_POINTS:
        return readings
    first, last = readings[0][0], readings[-1][0]
    step = (last - first) / MAX_POINTS + 1e-9
    buckets: dict[int, list[tuple[float, int]]] = {}
    for t, r in readings:
        buckets.setdefault(int((t - first) / step), []).append((t, r))
    return [
        (statistics.fmean(t for t, _ in b), round(statistics.fmean(r for _, r in b)))
        for _, b in sorted(buckets.items())
    ]


def real_detection(
    rates: list[float], minutes: float, window_s: float, warmup_s: float, rule: TrendRule
) -> list:
    print(
        f"\n(b) real processes, RSS read every {window_s:g} s for {minutes:g} min; rule: "
        f"horizon {rule.horizon_s / 60:g} min, floor {rule.floor_bytes_per_min / MB:.3f} MB/min, "
        f"min span {rule.min_span_s:g} s, alpha {rule.alpha:g}; the processes warm up for "
        f"{warmup_s:g} s first (not read), then the leaks start"
    )
    procs = {
        rate: subprocess.Popen([sys.executable, "-c", WORKLOAD, str(rate), str(i), str(warmup_s)])
        for i, rate in enumerate([0.0, *rates])
    }
    # The agent attaches to a process that has run a while: readings start with the leak.
    time.sleep(warmup_s)
    readings: dict[float, list[tuple[float, int]]] = {rate: [] for rate in procs}
    flagged_at: dict[float, float | None] = {rate: None for rate in procs}
    false_alarms = judged = 0
    start = time.monotonic()
    try:
        while (now := time.monotonic() - start) < minutes * 60:
            for rate, proc in procs.items():
                got = process_memory.read(proc.pid)
                if got is None:
                    continue
                readings[rate].append((now, got.rss_bytes))
                recent = thin(within_horizon(readings[rate], now, rule))
                verdict = judge(series_of(proc.pid, recent), rule)
                if rate == 0.0:
                    judged += 1
                    false_alarms += verdict.growing
                elif verdict.growing and flagged_at[rate] is None:
                    flagged_at[rate] = now
                    print(
                        f"    {rate:g} MB/min flagged after {now / 60:.1f} min: {verdict.summary}"
                    )
            time.sleep(max(0.0, window_s - (time.monotonic() - start - now)))
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    for rate in rates:
        at = flagged_at[rate]
        text = f"{at / 60:.1f} min" if at is not None else f"not within {minutes:g} min"
        print(f"  leak {rate:5g} MB/min: flagged after {text}")
    print(f"  steady process: {false_alarms} of {judged} judgements said growing")
    return readings[0.0]


def model_detection(
    steady: list[tuple[float, int]], rates: list[float], rule: TrendRule, window_s: float
) -> None:
    print(
        "\n(c) model (hypothesis): the steady process's recorded RSS plus a planted slope, "
        "judged at every reading from each start offset"
    )
    if len(steady) < 10:
        print("  too short a recording")
        return
    offsets = range(0, max(1, len(steady) // 2), max(1, len(steady) // 20))
    for rate in rates:
        latencies: list[float] = []
        missed = 0
        for offset in offsets:
            base = steady[offset:]
            t0 = base[0][0]
            planted = [(t, r + round(rate * MB / 60 * (t - t0))) for t, r in base]
            hit = None
            for i in range(len(planted)):
                now = planted[i][0]
                recent = thin(within_horizon(planted[: i + 1], now, rule))
                if judge(series_of(1, recent), rule).growing:
                    hit = now - t0
                    break
            if hit is None:
                missed += 1
            else:
                latencies.append(hit / 60)
        span = (steady[-1][0] - steady[len(steady) // 2][0]) / 60
        found = (
            f"median {statistics.median(latencies):.1f} min, worst {max(latencies):.1f} min"
            if latencies
            else "never"
        )
        print(
            f"  {rate:5g} MB/min: flagged in {len(latencies)} of {len(latencies) + missed} starts "
            f"({found}; each start had at least {span:.0f} min)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=180.0)
    parser.add_argument("--rates", default="0.1,0.5,2")
    parser.add_argument("--model-rates", default="0.1,0.25,0.5,1,2,8")
    parser.add_argument("--sizes", default="50,500,2000")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    read_cost([int(s) for s in args.sizes.split(",")], args.reads, args.window)
    rule = TrendRule.from_settings(Settings())
    if args.skip_real:
        return
    rates = [float(r) for r in args.rates.split(",")]
    steady = real_detection(rates, args.minutes, args.window, args.warmup, rule)
    model_detection(steady, [float(r) for r in args.model_rates.split(",")], rule, args.window)
    print(
        f"\n(command: python benchmarks/memory_rss.py {' '.join(sys.argv[1:])}; pid {os.getpid()})"
    )


if __name__ == "__main__":
    main()
