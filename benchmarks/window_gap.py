"""Measure what WindowedSampler loses or double-counts at window boundaries.

A CPU-bound target runs for DURATION seconds while, at the same time, one continuous
`py-spy record` covers the whole run, a second one serves as a control, and one WindowedSampler
per --window cuts it into windows (--nonblocking py-spys can sample one process side by side).

The target encodes the wall clock in its call stack: it always runs inside `sec_SS` -> `ms_MMM`
(seconds mod 100, milliseconds), so every sample says when it was taken, to 1 ms. That gives:

* coverage: windowed samples / continuous samples over exactly the span the windows cover. Both
  are Poisson counts (py-spy samples at exponential intervals), so the ratio has a noise of
  about sqrt(1/N1 + 1/N2), printed next to it; use a higher --rate or --duration to shrink it;
* per boundary: L = the last sample before the boundary (in window k), F = the first after it
  (in window k+1). For Poisson sampling E[F - L] = 2/rate + gap, so mean(F - L) - 2/rate
  estimates the gap (negative = overlap), independent of the sampler's own timestamps;
  E[F - B] - 1/rate and E[B - L] - 1/rate (B = reported boundary) check the timestamps. The
  standard error is about sqrt(2)/rate/sqrt(boundaries), so use --rate 1000 for sub-ms figures.

Usage: python benchmarks/window_gap.py [--duration 60] [--window 2 --window 10] [--rate 100]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpath.profiler.adapters.pyspy import SampledWindow, WindowedSampler, py_spy_path

TARGET = r"""
import sys, time
source = []
for s in range(100):
    source.append(f"def sec_{s:02d}(ms, n):\n    return MS[ms](n)\n")
for m in range(1000):
    body = "    x = 0\n    for i in range(n):\n        x += i\n    return x\n"
    source.append(f"def ms_{m:03d}(n):\n" + body)
ns = {}
exec("".join(source), ns)
SEC = [ns[f"sec_{s:02d}"] for s in range(100)]
ns["MS"] = [ns[f"ms_{m:03d}"] for m in range(1000)]
end = time.time() + float(sys.argv[1])
print("ready", flush=True)
while True:
    t = time.time()
    if t > end:
        break
    ms = int(t * 1000)
    SEC[(ms // 1000) % 100](ms % 1000, 300)
"""

OUTLIER_S = 0.25
STAMP = re.compile(r"\bsec_(\d\d) \(.*\bms_(\d\d\d) \(")


@dataclass
class Samples:
    timed: list[tuple[float, int]]  # (encoded wall time mod 100 s, count)
    untimed: int  # samples outside sec_/ms_ (the loop itself, between calls)

    @property
    def total(self) -> int:
        return self.untimed + sum(count for _, count in self.timed)


def parse(collapsed: str) -> Samples:
    timed, untimed = [], 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        match = STAMP.search(stack)
        if match:
            # +0.5 ms: the stamp is the millisecond the call started in.
            timed.append((int(match[1]) + int(match[2]) / 1000 + 0.0005, int(count)))
        else:
            untimed += int(count)
    return Samples(timed, untimed)


def absolute(stamp: float, near: float) -> float:
    """The wall time with `stamp` (time mod 100 s) nearest to `near`."""
    return stamp + 100 * round((near - stamp) / 100)


def sigint_handled(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGINT - 1)))


def start_continuous(pid: int, rate: int, output: Path) -> subprocess.Popen[bytes]:
    """An open-ended py-spy recording, returned once it samples (its SIGINT handler is set)."""
    recorder = subprocess.Popen(
        [
            *(py_spy_path(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"),
            *("--nonblocking", "--function", "-o", str(output)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, RUST_BACKTRACE="0"),
        start_new_session=True,
    )
    while not sigint_handled(recorder.pid):
        time.sleep(0.001)
    return recorder


def run_windowed(sampler: WindowedSampler, out: list[SampledWindow]) -> None:
    out.extend(sampler.windows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--window", type=float, action="append", help="window seconds; repeat")
    parser.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
    parser.add_argument("--verbose", action="store_true", help="print every boundary")
    args = parser.parse_args()
    window_sizes = args.window or [2.0, 10.0]
    wall_start = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="window-gap-") as tmp:
        script = Path(tmp) / "timed_target.py"
        script.write_text(TARGET)
        target = subprocess.Popen(
            [sys.executable, str(script), str(args.duration + 60)], stdout=subprocess.PIPE
        )
        recorders: list[subprocess.Popen[bytes]] = []
        try:
            assert target.stdout is not None
            assert target.stdout.readline().strip() == b"ready"
            # Two continuous recordings: the reference, and a control showing how far two
            # recordings of the same period differ with no windowing at all.
            outputs = [Path(tmp) / "continuous.txt", Path(tmp) / "control.txt"]
            recorders = [start_continuous(target.pid, args.rate, out) for out in outputs]

            samplers = [WindowedSampler(target.pid, args.rate, w) for w in window_sizes]
            results: list[list[SampledWindow]] = [[] for _ in samplers]
            threads = [
                threading.Thread(target=run_windowed, args=(s, r), daemon=True)
                for s, r in zip(samplers, results, strict=True)
            ]
            for thread in threads:
                thread.start()
            time.sleep(args.duration)
            for sampler in samplers:
                sampler.stop()
            for thread in threads:
                thread.join(60)
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(30)
            reference, control = (parse(out.read_text()) for out in outputs)
        finally:
            target.kill()
            target.wait()
            for recorder in recorders:
                if recorder.poll() is None:
                    recorder.kill()
                    recorder.wait()

    print(
        f"target: CPU-bound, rate {args.rate} Hz, --nonblocking --function, "
        f"duration {args.duration:g} s, windows {', '.join(f'{w:g} s' for w in window_sizes)}"
    )
    print(
        f"continuous recording: {reference.total} samples "
        f"({reference.untimed} without a time stamp)"
    )
    for size, sampler, windows in zip(window_sizes, samplers, results, strict=True):
        report(size, sampler, windows, reference, control, args.rate, verbose=args.verbose)
    print(f"\nwall time of the whole benchmark: {time.monotonic() - wall_start:.1f} s")


def report(
    size: float,
    sampler: WindowedSampler,
    windows: list[SampledWindow],
    reference: Samples,
    control: Samples,
    rate: int,
    *,
    verbose: bool = False,
) -> None:
    print(f"\n== {size:g} s windows: {len(windows)} windows, last final={windows[-1].final}")
    span_start, span_end = windows[0].start.timestamp(), windows[-1].end.timestamp()
    mid = (span_start + span_end) / 2
    parsed = [parse(w.collapsed) for w in windows]
    windowed_total = sum(p.total for p in parsed)
    windowed_timed = sum(c for p in parsed for _, c in p.timed)

    def in_span(samples: Samples) -> int:
        return sum(c for t, c in samples.timed if span_start <= absolute(t, mid) < span_end)

    ref_in_span, control_in_span = in_span(reference), in_span(control)
    noise = math.sqrt(1 / max(windowed_timed, 1) + 1 / max(ref_in_span, 1))
    contiguous = all(a.end == b.start for a, b in itertools.pairwise(windows))
    durations = [(w.end - w.start).total_seconds() for w in windows]
    print(
        f"windows span {span_end - span_start:.3f} s; consecutive (start == previous end): "
        f"{contiguous}; durations min {min(durations):.3f} / median "
        f"{statistics.median(durations):.3f} / max {max(durations):.3f} s"
    )
    print(
        f"samples: windowed total {windowed_total} (time-stamped {windowed_timed}); "
        f"continuous over the same span {ref_in_span}"
    )
    print(
        f"coverage windowed/continuous: {windowed_timed / max(ref_in_span, 1):.4f} "
        f"(Poisson noise of this ratio: ±{noise:.4f} at 1 sigma)"
    )
    print(
        f"control: second continuous recording/continuous over the same span: "
        f"{control_in_span / max(ref_in_span, 1):.4f} ({control_in_span} samples)"
    )

    # --nonblocking reads the stack while the target runs, so now and then a stack is torn: its
    # sec_ and ms_ frames come from different calls and its stamp is off by up to seconds. Keep
    # those (they are real samples) out of the boundary figures, but count them.
    stamps: list[list[float]] = []
    torn = 0
    for window, samples in zip(windows, parsed, strict=True):
        lo, hi = window.start.timestamp() - OUTLIER_S, window.end.timestamp() + OUTLIER_S
        mapped = [absolute(t, (lo + hi) / 2) for t, _ in samples.timed]
        stamps.append([t for t in mapped if lo <= t <= hi])
        torn += len(mapped) - len(stamps[-1])
    gaps, after, before, wrong_side = [], [], [], 0
    for k in range(len(windows) - 1):
        boundary = windows[k].end.timestamp()
        left, right = stamps[k], stamps[k + 1]
        if not left or not right:
            continue
        last, first = max(left), min(right)
        gaps.append(first - last - 2 / rate)
        after.append(first - boundary - 1 / rate)
        before.append(boundary - last - 1 / rate)
        # 1 ms of slack: stamps are only good to the millisecond.
        wrong = sum(1 for t in left if t > boundary + 0.001)
        wrong += sum(1 for t in right if t < boundary - 0.001)
        wrong_side += wrong
        if verbose:
            print(
                f"  boundary {k + 1:3d}: F-B {1000 * (first - boundary):+8.2f} ms, "
                f"B-L {1000 * (boundary - last):+8.2f} ms, wrong side {wrong}"
            )
    if gaps:

        def ms(values: list[float]) -> str:
            se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0
            return f"{1000 * statistics.mean(values):+.2f} ms ± {1000 * se:.2f}"

        print(
            f"per boundary ({len(gaps)} boundaries): gap estimate mean(F-L) - 2/rate = "
            f"{ms(gaps)} (negative = overlap)"
        )
        print(f"  successor's first sample vs reported boundary, minus 1/rate: {ms(after)}")
        print(f"  predecessor's last sample vs reported boundary, minus 1/rate: {ms(before)}")
        print(f"  samples on the wrong side of a reported boundary (>1 ms): {wrong_side}")
        print(f"  stamps more than {OUTLIER_S:g} s outside their window (torn reads): {torn}")
    print(f"  py-spy start-up (lead) estimate at the end: {1000 * sampler._lead:.1f} ms")


if __name__ == "__main__":
    main()
