"""On-demand memray leak ranking: how long a capture must run before it flags a leak, by leak
rate (issue 15).

For each --rates (KiB/s kept, 1 KiB = 1024 bytes) and each of --repeats, a fresh target
process is started per capture and memray is attached to it (`MemrayCapture`, as
`hotpath agent memory` does), for each of --durations in turn, shortest first, until a single
capture, read (`profiler/formats/memray.read`) and ranked (`rank_leaks`, as
`hotpath agent memory` ranks one capture), has the leaking function at rank 1 and flagged.
That duration is how long after attaching (the leak already running) the detector flags it.

The target runs, in a loop every 10 ms:
- `leaky_handler`: keeps --bytes-per-call bytes (a bytearray) per call, called at
  rate / bytes-per-call calls per second on a fixed schedule with a random phase. The default
  1024 bytes is above pymalloc's 512-byte limit, so each kept buffer is a malloc memray sees;
  smaller objects come out of pymalloc's arenas (memray attaches without
  --trace-python-allocators) and a leak of them shows only as a whole new arena now and then;
- `churn`: ~40 KB of buffers and strings made and dropped per call (nothing kept);
- and a 20 MB structure built once at start-up, before any capture.
Rate 0 is the control: the same target without the leak, captured at every duration. The
ranking's floor is 1 KiB/s (`FLOOR_BYTES_PER_S`): 0.25 is below it, 1 sits on it (flagged
only if the interval's lower bound clears it), 1.1 is 10% above it.

False flags: any function other than `leaky_handler` flagged in any capture.
Jobs (one per rate and repeat) run --jobs at a time, each its own target; the attach pauses
then overlap on the 2 cores, which makes the captures a little noisier, not longer.

    .venv/bin/python benchmarks/leak_latency.py [--rates 0,0.25,1,1.1,2,4,16]
        [--durations 2,5,10,20,40] [--repeats 3] [--bytes-per-call 1024] [--jobs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpath.profiler.adapters.memray import MemrayCapture
from hotpath.profiler.analysis.leaks import FLOOR_BYTES_PER_S, rank_leaks
from hotpath.profiler.formats import memray as memray_file
from tests.memray_targets import stop

LEAKER = "leaky_handler"
KIB = 1024

TARGET = textwrap.dedent("""
    import random, sys, time
    rate = float(sys.argv[1])  # bytes kept per second
    per_call = int(sys.argv[2])
    kept = []
    big = [bytearray(1000) for _ in range(20000)]  # 20 MB, built before any capture


    def leaky_handler():
        kept.append(bytearray(per_call))


    def churn():
        scratch = [bytearray(2000) for _ in range(16)]  # 32 KB made and dropped per call
        text = [str(i) * 4 for i in range(300)]
        return len(scratch) + len(text)


    interval = per_call / rate if rate > 0 else None
    # A random phase: a slow leak's first call lands anywhere in its interval.
    next_call = time.monotonic() + random.uniform(0, interval) if interval else 0.0
    print("ready", flush=True)
    while True:
        if interval is not None:
            now = time.monotonic()
            while now >= next_call:
                leaky_handler()
                next_call += interval
        churn()
        time.sleep(0.01)
""")


@dataclass
class Capture:
    duration_s: float  # asked for
    seen_s: float  # memray's start to end
    rank: int | None  # the leaker's rank, None when absent
    flagged: bool
    growth: float  # the leaker's growth, bytes/s, as ranked
    low: float  # its lower bound
    false_flags: list[str]
    top_other: str  # the fastest-growing other function, for the log


@dataclass
class Job:
    rate_kib: float
    repeat: int
    captures: list[Capture] = field(default_factory=list)
    error: str | None = None

    @property
    def detected(self) -> Capture | None:
        hit = self.captures[-1] if self.captures else None
        return hit if hit is not None and hit.rank == 1 and hit.flagged else None


_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def start_target(folder: Path, rate_kib: float, per_call: int) -> subprocess.Popen[str]:
    script = folder / "leak_target.py"
    if not script.exists():
        script.write_text(TARGET)
    argv = [sys.executable, str(script), str(rate_kib * KIB), str(per_call)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=folder)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def capture_once(folder: Path, rate_kib: float, per_call: int, seconds: float) -> Capture:
    process = start_target(folder, rate_kib, per_call)
    try:
        with MemrayCapture(process.pid) as session:
            session.attach()
            session.wait(seconds)
            profiles = memray_file.read(session.detach().path)
    finally:
        stop(process)
    ranks = rank_leaks([profiles])
    position = next((i for i, r in enumerate(ranks) if r.function == LEAKER), None)
    leak = ranks[position] if position is not None else None
    return Capture(
        duration_s=seconds,
        seen_s=profiles.duration_s,
        rank=None if position is None else position + 1,
        flagged=leak is not None and leak.flagged,
        growth=leak.growth_bytes_per_s if leak else 0.0,
        low=leak.low_bytes_per_s if leak else 0.0,
        false_flags=[r.function for r in ranks if r.flagged and r.function != LEAKER],
        top_other=next(
            (f"{r.function} {r.growth_bytes_per_s:.0f} B/s" for r in ranks if r.function != LEAKER),
            "none",
        ),
    )


def run_job(job: Job, durations: list[float], per_call: int) -> Job:
    with tempfile.TemporaryDirectory(prefix="hotpath-leak-latency-") as folder:
        for seconds in durations:
            try:
                got = capture_once(Path(folder), job.rate_kib, per_call, seconds)
            except Exception as exc:  # a failed capture is reported, not fatal to the run
                job.error = f"{seconds:g} s capture failed: {exc}"
                say(f"  {job.rate_kib:g} KiB/s #{job.repeat}: {job.error}")
                break
            job.captures.append(got)
            rank = f"rank {got.rank}" if got.rank else "absent"
            say(
                f"  {job.rate_kib:g} KiB/s #{job.repeat}: {seconds:g} s capture "
                f"(memray {got.seen_s:.1f} s): {LEAKER} {rank}, "
                f"{'flagged' if got.flagged else 'not flagged'}, growth {got.growth:.0f} B/s "
                f"(low {got.low:.0f}); next: {got.top_other}; "
                f"other flagged: {', '.join(got.false_flags) or 'none'}"
            )
            if job.rate_kib > 0 and job.detected:
                break
    return job


def row(rate_kib: float, jobs: list[Job], durations: list[float], per_call: int) -> list[str]:
    needed, ranks, growth, spans = [], [], [], []
    for job in jobs:
        hit = job.detected
        if job.error:
            needed.append("error")
        elif rate_kib == 0:
            needed.append("-")
        elif hit:
            needed.append(f"{hit.duration_s:g} s")
        else:
            needed.append(f">{durations[-1]:g} s")
        last = hit or (job.captures[-1] if job.captures else None)
        if rate_kib > 0 and last is not None:
            ranks.append(f"{last.rank or '-'}{'' if last.flagged else ' (not flagged)'}")
            growth.append(last.growth)
        if hit is not None:
            spans.append(hit.seen_s)
    false = [(f, c.duration_s) for job in jobs for c in job.captures for f in c.false_flags]
    captures = sum(len(job.captures) for job in jobs)
    names = sorted({f for f, _ in false})
    calls = f"{rate_kib * KIB / per_call:g}/s x {per_call} B" if rate_kib else "no leak"
    return [
        f"{rate_kib:g} KiB/s ({calls})",
        ", ".join(needed),
        ", ".join(ranks) or "-",
        f"{statistics.median(spans):.1f} s" if spans else "-",
        f"{statistics.median(growth) / KIB:.2f} KiB/s" if growth else "-",
        f"{len(false)} in {captures} captures" + (f" ({', '.join(names)})" if names else ""),
    ]


def print_table(rows: list[list[str]]) -> None:
    head = [
        "leak rate",
        "capture length needed (per repeat)",
        "flagged rank",
        "memray span",
        "growth seen",
        "false flags",
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for i, r in enumerate([head, *rows]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0,0.25,1,1.1,2,4,16", help="KiB/s kept; 0 is no leak")
    parser.add_argument("--durations", default="2,5,10,20,40", help="capture lengths, s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bytes-per-call", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=3, help="targets captured at once")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    durations = sorted(float(d) for d in args.durations.split(","))
    if any(r < 0 for r in rates) or not durations or durations[0] <= 0 or args.repeats < 1:
        parser.error("rates >= 0, durations > 0, repeats >= 1")
    print(
        f"memray leak ranking, one capture each, floor {FLOOR_BYTES_PER_S:g} B/s; leak of "
        f"{args.bytes_per_call} B per call; durations {', '.join(f'{d:g}' for d in durations)} s; "
        f"{args.repeats} repeats; {args.jobs} at a time"
    )
    began = time.monotonic()
    # Slowest leaks first: they run the longest, so the pool ends together.
    jobs = [Job(rate, i + 1) for rate in sorted(rates) for i in range(args.repeats)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(lambda j: run_job(j, durations, args.bytes_per_call), jobs))
    print(f"\n({time.monotonic() - began:.0f} s in all)\n")
    rows = [
        row(rate, [j for j in done if j.rate_kib == rate], durations, args.bytes_per_call)
        for rate in rates
    ]
    print_table(rows)
    print(
        f"\nflagged rank: {LEAKER}'s rank at the capture that flagged it, or at the longest "
        "when none did; memray span: that capture's length as memray recorded it (attach to "
        "detach, median); growth seen: the ranking's slope for it there (median)"
    )
    command = " ".join([".venv/bin/python benchmarks/leak_latency.py", *sys.argv[1:]])
    print(f"\n(command: {command})")


if __name__ == "__main__":
    main()
