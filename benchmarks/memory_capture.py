"""What an on-demand memray capture costs its target, measured on a real process.

- The pause at attach and at detach, two ways: from outside, as the agent measures it (the
  span from the main thread's first tracing stop to the end of its last, /proc polled every
  0.5 ms), and from inside (the
  longest gap between two iterations of the target's work loop, which also sees memray's own
  start-up and tear-down under the GIL).
- The slowdown while captured: work done per CPU second of the target (utime+stime from
  /proc) during W seconds with a capture running, over the same without, trials interleaved.

    .venv/bin/python benchmarks/memory_capture.py --trials 5 --window 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hotpath.profiler.adapters.memray import MemrayCapture

TARGET = """
import sys, time
units = 0
gap = 0.0
last = time.perf_counter()
report = last
keep = []
while True:
    scratch = [str(i) for i in range(200)]  # allocation-heavy unit of work
    keep.append(len(scratch))
    if len(keep) > 1000:
        keep.clear()
    units += 1
    now = time.perf_counter()
    gap = max(gap, now - last)
    last = now
    if now - report > 0.02:
        print(units, f"{gap * 1000:.2f}", flush=True)
        gap, report = 0.0, now
"""


class Target:
    def __init__(self, folder: Path) -> None:
        script = folder / "work.py"
        script.write_text(TARGET)
        self.process = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=folder
        )
        self.units = 0
        self.gaps: list[tuple[float, float]] = []  # (time, longest gap in the last ~20 ms)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(1.0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            units, gap = line.split()
            self.units = int(units)
            self.gaps.append((time.monotonic(), float(gap)))

    def cpu_s(self) -> float:
        data = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = data[data.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks

    def longest_gap_ms(self, start: float, end: float) -> float:
        time.sleep(0.1)  # the line covering `end` arrives a little later
        return max((g for t, g in self.gaps if start <= t <= end + 0.05), default=0.0)

    def rate(self, seconds: float) -> float:
        units, cpu = self.units, self.cpu_s()
        time.sleep(seconds)
        return (self.units - units) / max(self.cpu_s() - cpu, 1e-9)


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"median {statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--window", type=float, default=3.0)
    args = parser.parse_args()
    outside = {"attach": [], "detach": []}
    inside = {"attach": [], "detach": []}
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        target = Target(Path(folder))
        try:
            for trial in range(args.trials):
                plain = target.rate(args.window)
                with MemrayCapture(target.process.pid) as capture:
                    began = time.monotonic()
                    pause = capture.attach()
                    inside["attach"].append(target.longest_gap_ms(began, time.monotonic()))
                    outside["attach"].append(pause.span_ms)
                    captured = target.rate(args.window)
                    began = time.monotonic()
                    finished = capture.detach()
                    inside["detach"].append(target.longest_gap_ms(began, time.monotonic()))
                    outside["detach"].append(finished.detach.span_ms)
                plain_after = target.rate(args.window)
                ratios.append(captured / ((plain + plain_after) / 2))
                print(
                    f"trial {trial + 1}: attach {outside['attach'][-1]:.0f} ms outside, "
                    f"{inside['attach'][-1]:.0f} ms inside; detach {outside['detach'][-1]:.0f} "
                    f"ms outside, {inside['detach'][-1]:.0f} ms inside; work per CPU s "
                    f"captured/plain {ratios[-1]:.3f}",
                    flush=True,
                )
        finally:
            target.process.kill()
    print(f"pause at attach, outside (first to last stop): {spread(outside['attach'])} ms")
    print(f"pause at attach, inside (longest loop gap):    {spread(inside['attach'])} ms")
    print(f"pause at detach, outside:                      {spread(outside['detach'])} ms")
    print(f"pause at detach, inside:                       {spread(inside['detach'])} ms")
    print(f"work per CPU second, captured / not captured:  {spread(ratios)}")


if __name__ == "__main__":
    main()
