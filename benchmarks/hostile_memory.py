"""What hostile window bodies cost the server's memory, and whether it comes back.

Runs the real `hotpath serve` (SQLite in a temporary folder by default) and sends it, one kind
at a time, `--concurrency` bodies at once (3 by default), sampling the server's RSS (its
process and children, psutil) every 5 ms: before, the peak, and `--settle` seconds after the
answers. The kinds: a typical agent window; the issue's bomb (6 KiB of zstd decoding to 58 MiB
of valid-looking JSON); the largest windows the limits let through (`max_values` JSON values,
the decoded size filled with 4-byte characters); and bodies that fail validation with one bad
item repeated (~1M errors before FailFast) or 100k unknown fields. Each case is sent to a
server that returns freed memory after large requests (malloc_trim, `trim_after_bytes`, the
default) and to one that does not (`HOTPATH_TRIM_AFTER_BYTES=0`).

    .venv/bin/python benchmarks/hostile_memory.py [--db URL] [--concurrency 3] [--settle 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import zstandard  # noqa: E402

from benchmarks import synthetic as syn  # noqa: E402
from tests.servers import start_server, stop_process  # noqa: E402

MiB = 2**20


def _head(**fields: object) -> dict[str, object]:
    """The fields of a valid window but its frames, stacks and counts, a minute old."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    return {
        "service": "hostile",
        "idempotency_key": uuid.uuid4().hex,
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=10)).isoformat(),
        "sample_rate_hz": 100,
        "labels": {"host": "h1"},
        **fields,
    }


def _json(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def typical() -> bytes:
    """A live-like window of a service of 3,000 stacks sampled at 1 kHz for 10 s."""
    model = syn.service_model("hostile", 7)
    rng = np.random.default_rng()
    start = datetime.now(UTC) - timedelta(minutes=1)
    doc = syn.window_dict(model, {"host": "h1"}, start, rng, rate_hz=1_000.0)
    doc["idempotency_key"] = uuid.uuid4().hex
    doc["start"], doc["end"] = doc["start"].isoformat(), doc["end"].isoformat()  # type: ignore[attr-defined]
    return _json(doc)


def issue_bomb() -> bytes:
    """28,000 stacks of 1,024 frames each: 58 MiB of JSON within every per-window limit."""
    head = _json(_head(frames=[["f", "", 1]], counts=[1] * 28_000))[:-1]
    stacks = b",".join([b"[" + b"0," * 1_023 + b"0]"] * 28_000)
    return head + b',"stacks":[' + stacks + b"]}"


def most_values() -> bytes:
    """Just under max_values (1M) of small ints: the largest window by values, stored."""
    n = 970
    return _json(_head(frames=[["f", "f.py", 1]], stacks=[[0] * 1_024] * n, counts=[1] * n))


def most_values_large_ints() -> bytes:
    """Just under max_values of 6-digit ints (an int object each), refused after parsing."""
    n = 970
    stack = b"[" + b"199999," * 1_023 + b"199999]"
    head = _json(_head(frames=[["f", "", 1]] * 3, counts=[1] * n))[:-1]
    return head + b',"stacks":[' + b",".join([stack] * n) + b"]}"


def longest_names() -> bytes:
    """Just under 16 MiB decoded (max_decompressed_bytes) of 4-byte characters in 16k frame
    names (each at most max_frame_name_chars), stored."""
    n = 15 * MiB // 1_040  # just under the limit
    frames = [["\U0001f600" * 255, "f.py", i] for i in range(n)]
    return _json(_head(frames=frames, stacks=[[0]], counts=[1]))


def bad_items() -> bytes:
    """300k counts of 0 (each invalid): pydantic reported each, ~450 B, before FailFast."""
    n = 300_000
    return _json(_head(frames=[["f", "", 1]], stacks=[[0]] * n, counts=[0] * n))


def unknown_fields() -> bytes:
    """Just under max_members (100k) of unknown fields: one error each under extra=forbid."""
    return _json(
        _head(
            frames=[["f", "", 1]], stacks=[[0]], counts=[1], **{f"x{i}": [] for i in range(99_900)}
        )
    )


CASES: list[tuple[str, Callable[[], bytes]]] = [
    ("typical window (1 kHz, 10 s)", typical),
    ("issue's bomb (6 KiB zstd)", issue_bomb),
    ("~1M values, small ints", most_values),
    ("~1M values, large ints", most_values_large_ints),
    ("16 MiB of 4-byte names", longest_names),
    ("300k invalid counts", bad_items),
    ("100k unknown fields", unknown_fields),
]


@dataclass
class Row:
    trim: str
    case: str
    body_kib: float
    decoded_mib: float
    statuses: str
    before_mib: float
    peak_mib: float
    after_mib: float
    seconds: float


def rss_mib(process: psutil.Process) -> float:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total / MiB


def measure(
    url: str, process: psutil.Process, make: Callable[[], bytes], concurrency: int, settle: float
) -> tuple[float, float, str, float, float, float, float]:
    decoded = [make() for _ in range(concurrency)]  # a new idempotency key each
    bodies = [zstandard.ZstdCompressor(level=3).compress(d) for d in decoded]
    time.sleep(settle)
    before = rss_mib(process)
    peak, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mib(process))
            time.sleep(0.005)

    statuses: list[int] = []

    def send(body: bytes) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            response = client.post(
                "/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"}
            )
            statuses.append(response.status_code)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    senders = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    elapsed = time.monotonic() - started
    time.sleep(settle)
    stop.set()
    sampler.join()
    after = rss_mib(process)
    codes = ",".join(str(s) for s in sorted(set(statuses)))
    return (
        len(bodies[0]) / 1024,
        len(decoded[0]) / MiB,
        codes,
        before,
        max(peak),
        after,
        elapsed,
    )


def run(db: str | None, trim: bool, concurrency: int, settle: float, rounds: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'hotpath.db'}"
        env = {} if trim else {"HOTPATH_TRIM_AFTER_BYTES": "0"}
        server = start_server(url, Path(tmp) / "server", env=env)
        try:
            process = psutil.Process(server.process.pid)
            with httpx.Client(base_url=server.url, timeout=60) as client:  # warm up
                for _ in range(20):
                    body = zstandard.ZstdCompressor().compress(typical())
                    client.post(
                        "/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"}
                    )
                for page in ["/", "/services/hostile", "/api/v1/services"]:
                    client.get(page)
            rows = []
            for round_ in range(rounds):
                for name, make in CASES:
                    figures = measure(server.url, process, make, concurrency, settle)
                    case = f"{name} #{round_ + 1}" if rounds > 1 else name
                    rows.append(Row("on" if trim else "off", case, *figures))
                    print(_line(rows[-1]), flush=True)
            return rows
        finally:
            stop_process(server.process)


def _line(r: Row) -> str:
    return (
        f"| {r.trim:4} | {r.case:33} | {r.body_kib:9.1f} | {r.decoded_mib:7.1f} | "
        f"{r.statuses:8} | {r.before_mib:6.0f} | {r.peak_mib:6.0f} | {r.after_mib:6.0f} | "
        f"{r.seconds:5.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="an SQLAlchemy URL (default: SQLite in a temp folder)")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before 'after'")
    parser.add_argument("--trim", choices=["both", "on", "off"], default="both")
    parser.add_argument("--rounds", type=int, default=1, help="times through the cases")
    args = parser.parse_args()
    print(
        f"{args.concurrency} bodies at once per case; RSS of the server in MiB "
        f"(after = {args.settle:g} s after the answers); trim = malloc_trim after large requests"
    )
    print(
        "| trim | case                              | body KiB  | decoded | status   | before |"
        "   peak |  after |     s |"
    )
    print("|------|" + "---|" * 8)
    started = time.monotonic()
    for trim in {"both": (True, False), "on": (True,), "off": (False,)}[args.trim]:
        run(args.db, trim, args.concurrency, args.settle, args.rounds)
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
