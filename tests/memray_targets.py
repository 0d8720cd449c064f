"""Target processes for the memray tests and benchmark: real Python processes with known
allocation behaviour, started with this virtualenv's Python (which can import memray)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

PLANTED = """
import os, sys, time
LEAK = "--no-leak" not in sys.argv
TRIGGER = sys.argv[1]
kept = []
cache = {}
big = [bytearray(1000) for _ in range(20000)]  # 20 MB built once, before any capture


def leaky_handler():
    kept.append(bytearray(4096))  # a few KB kept per call


def churn():
    scratch = [bytearray(2000) for _ in range(50)]  # 100 KB made and dropped per call
    return len(scratch)


def fill_cache():
    for i in range(2000):
        cache[i] = bytearray(1000)  # 2 MB, once


print("ready", flush=True)
while True:
    if LEAK:
        leaky_handler()
    churn()
    if not cache and os.path.exists(TRIGGER):
        fill_cache()
    time.sleep(0.005)
"""


def start_planted(folder: Path, *, leak: bool = True) -> tuple[subprocess.Popen[str], Path]:
    """The planted target (leak, churn, a structure built at start, a cache filled when the
    returned trigger file appears), running and past its start-up."""
    script = folder / "planted_target.py"
    script.write_text(PLANTED)
    trigger = folder / "fill-cache"
    argv = [sys.executable, str(script), str(trigger)] + ([] if leak else ["--no-leak"])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=folder)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    return process, trigger


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
