"""Sustained ingest into one server process: does its memory stay bounded?

The claim: the server's caches (server/storage/sql/interning.py: frame, stack and series ids,
resolved stacks) are LRU-bounded, and nothing else grows per window, so RSS levels off however
long a fleet keeps sending. This runs the real `hotpath serve` (SQLite by default, `--db URL` for
another database) and a live-like fleet against it for `--minutes`: every process of every
service sends one 10-s window of 1,000 samples every 10 s (so the offered rate is
services x processes / 10 windows/s), and processes restart with a new pid every
`--restart-every` minutes on average, so new series keep appearing as in a real deployment.
Before the clock starts, one hour-long window per service is posted so that the server knows
(and caches) nearly all of the fleet's stacks, as one that has been running a while does;
without it (`--no-warmup`) the caches fill during the soak, which looks like growth.
The server requires tokens by default (`--auth required`, as `hotpath serve` does): `--tokens`
ingest tokens are made with the real `hotpath token create`, and every sender sends its
service's token (services share them round-robin), so each request pays the real token check.
The server's RSS (its process and children, psutil) is sampled every second; it prints RSS
over time, peak and final, the growth over the second half, the windows ingested, latency at
the sender (p50/p99/p99.9/max), answers other than 201 by status, and checks that the
database holds exactly the acknowledged windows and samples.

    .venv/bin/python benchmarks/ingest_soak.py [--minutes 10] [--db URL]
    .venv/bin/python benchmarks/ingest_soak.py --services 20 --processes 10  # 200 agents
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402

from benchmarks import synthetic as syn  # noqa: E402
from hotpath.server.storage.sql.tables import series, stacks, windows  # noqa: E402
from tests.servers import make_token, start_server, stop_process  # noqa: E402


def _client(url: str, specs: list[syn.SeriesSpec], args: dict, stop_at: float, results) -> None:  # type: ignore[no-untyped-def]
    """Sends each series' windows on its own 10-s schedule until `stop_at` (monotonic)."""
    seed, restart_s, tokens = args["seed"], args["restart_s"], args["tokens"]
    rng = np.random.default_rng([seed, os.getpid()])
    pick = random.Random(seed + os.getpid())
    models = {s.service: syn.service_model(s.service, seed) for s in specs}
    encoder = syn.BodyEncoder()
    out = {"ok": 0, "late": 0, "restarts": 0, "errors": Counter(), "latencies": []}
    # Staggered like a real fleet: each series' windows end at its own offset in the 10 s.
    wall, mono = time.time(), time.monotonic()  # window times are wall-clock times
    due = [(time.monotonic() + pick.uniform(0, syn.WINDOW_S), i) for i in range(len(specs))]
    heapq.heapify(due)
    pids = [s.pid for s in specs]
    restart_at = [mono + pick.expovariate(1 / restart_s) if restart_s else 0.0 for _ in specs]
    with httpx.Client(base_url=url, timeout=60, headers=syn.HEADERS) as client:
        while due:
            at, i = heapq.heappop(due)
            if at >= stop_at:
                continue
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -syn.WINDOW_S:
                out["late"] += 1  # the server (or this client) fell a window behind
            if restart_s and at >= restart_at[i]:
                pids[i] = pick.randrange(1_000, 4_000_000)  # a new process: a new series
                restart_at[i] = at + pick.expovariate(1 / restart_s)
                out["restarts"] += 1
            spec = specs[i]
            end = datetime.fromtimestamp(wall + at - mono, UTC)
            labels = {**spec.labels, "pid": str(pids[i])}
            window = syn.window_dict(
                models[spec.service],
                labels,
                end - timedelta(seconds=syn.WINDOW_S),
                rng,
                key=syn.idempotency_key("soak", seed, spec.service, pids[i], at),
            )
            body = encoder.encode(window)
            began = time.perf_counter()
            try:
                response = client.post(
                    "/api/v1/windows", content=body, headers=auth_header(tokens, spec.service)
                )
                out["latencies"].append(time.perf_counter() - began)
                if response.status_code == 201:
                    out["ok"] += 1
                else:
                    out["errors"][f"HTTP {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                out["errors"][type(exc).__name__] += 1
            heapq.heappush(due, (at + syn.WINDOW_S, i))
    results.put(out)


def rss_bytes(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may exit between list and read
            total += p.memory_info().rss
    return total


def auth_header(tokens: dict[str, str], service: str) -> dict[str, str]:
    """The service's token as a bearer header (none when the server runs `--auth off`)."""
    token = tokens.get(service)
    return {"Authorization": f"Bearer {token}"} if token else {}


def service_tokens(db: str, services: list[str], count: int) -> dict[str, str]:
    """`count` ingest tokens made by the real `hotpath token create`, dealt to the services
    round-robin: a fleet's agents share a few tokens (one per team, say), not one each."""
    made = [make_token(db, "ingest") for _ in range(min(count, len(services)))]
    return {service: made[i % len(made)] for i, service in enumerate(services)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--db", default="", help="SQLAlchemy URL [default: SQLite in a temp dir]")
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--processes", type=int, default=12, help="per service")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--restart-every", type=float, default=5.0, help="minutes; 0: never")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--auth", choices=["required", "off"], default="required", help="the server's --auth"
    )
    parser.add_argument(
        "--tokens", type=int, default=10, help="ingest tokens, shared by the services"
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip posting an hour of each service first (then the stack caches fill up "
        "during the soak, which looks like growth)",
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="hotpath-soak-"))
    db = args.db or f"sqlite:///{workdir / 'hotpath.db'}"
    specs = syn.fleet(args.services, args.processes, args.seed)
    rate = len(specs) / syn.WINDOW_S
    print(
        f"soak: {args.minutes:g} min, {len(specs)} processes ({args.services} services x "
        f"{args.processes}) at 100 Hz = {rate:.0f} windows/s = {rate * 1000:,.0f} samples/s "
        f"offered; restarts every {args.restart_every:g} min on average; database "
        f"{db.split('@')[-1]}; auth {args.auth}",
        flush=True,
    )
    server = start_server(db, workdir, auth=args.auth)
    try:
        process = psutil.Process(server.process.pid)
        tokens: dict[str, str] = {}
        if args.auth == "required":
            tokens = service_tokens(db, sorted({s.service for s in specs}), args.tokens)
            print(f"  {len(set(tokens.values()))} ingest tokens for {len(tokens)} services")
        if not args.no_warmup:
            warm_up(server.url, specs, args.seed, tokens)
        stacks_start = count_stacks(db)
        ctx = mp.get_context("fork")
        results = ctx.Queue()
        stop_at = time.monotonic() + args.minutes * 60
        shared = {"seed": args.seed, "restart_s": args.restart_every * 60, "tokens": tokens}
        clients = [
            ctx.Process(
                target=_client,
                args=(server.url, specs[c :: args.clients], shared, stop_at, results),
                daemon=True,
            )
            for c in range(args.clients)
        ]
        began = time.monotonic()
        for c in clients:
            c.start()
        samples: list[tuple[float, int]] = []
        next_report = 0.0
        cpu0 = process.cpu_times()
        while time.monotonic() < stop_at:
            elapsed = time.monotonic() - began
            samples.append((elapsed, rss_bytes(process)))
            if elapsed >= next_report:
                print(
                    f"  t={elapsed / 60:5.1f} min  RSS {samples[-1][1] / 2**20:7.1f} MiB",
                    flush=True,
                )
                next_report += 60
            time.sleep(1)
        outs = [results.get(timeout=300) for _ in clients]
        for c in clients:
            c.join(30)
        elapsed = time.monotonic() - began
        samples.append((elapsed, rss_bytes(process)))
        cpu1 = process.cpu_times()
    finally:
        stop_process(server.process)

    rss = np.array([r for _, r in samples]) / 2**20
    times = np.array([t for t, _ in samples])
    half = times >= times[-1] / 2
    slope = np.polyfit(times[half] / 60, rss[half], 1)[0] if half.sum() > 2 else float("nan")
    ok = sum(o["ok"] for o in outs)
    errors: Counter[str] = Counter()
    for o in outs:
        errors.update(o["errors"])
    latencies = np.concatenate([np.asarray(o["latencies"]) for o in outs]) * 1e3
    stacks_end = count_stacks(db)
    engine = create_engine(db)
    with engine.connect() as conn:
        stored, stored_samples = conn.execute(
            select(func.count(), func.coalesce(func.sum(windows.c.sample_count), 0))
        ).one()
        n_series = conn.execute(select(func.count()).select_from(series)).scalar_one()
    engine.dispose()
    print(f"RSS at a few points (m:ss MiB): {rss_points(times, rss)}")
    mid = rss[min(np.searchsorted(times, times[-1] / 2), len(rss) - 1)]
    print(
        f"RSS: start {rss[0]:.1f} MiB, peak {rss.max():.1f} MiB, final {rss[-1]:.1f} MiB; "
        f"second half {mid:.1f} -> {rss[-1]:.1f} MiB, growth {slope:+.2f} MiB/min"
    )
    p50, p99, p999, top = (
        [*np.percentile(latencies, [50, 99, 99.9]), latencies.max()]
        if len(latencies)
        else [np.nan] * 4
    )
    print(
        f"windows ingested {ok:,} in {elapsed:.0f} s ({ok / elapsed:.1f}/s, "
        f"{ok * syn.SAMPLES_PER_WINDOW / elapsed:,.0f} samples/s); latency at the sender p50 "
        f"{p50:.1f} ms, p99 {p99:.1f} ms, p99.9 {p999:.1f} ms, max "
        f"{top:.1f} ms; late sends {sum(o['late'] for o in outs)}; "
        f"answers other than 201 {dict(errors) or 'none'}"
    )
    print(
        f"server CPU {(sum(cpu1[:2]) - sum(cpu0[:2])) / elapsed:.2f} cores; series "
        f"{n_series:,} ({sum(o['restarts'] for o in outs):,} restarts); distinct stacks "
        f"{stacks_start:,} when the clock started, {stacks_end:,} at the end"
    )
    warm = 0 if args.no_warmup else len({s.service for s in specs})
    stored -= warm
    stored_samples -= warm * 360_000
    exact = stored == ok and stored_samples == ok * syn.SAMPLES_PER_WINDOW
    print(
        f"database, besides the warm-up: {stored:,} windows, {stored_samples:,} samples: "
        f"{'exact' if exact else 'MISMATCH'}"
    )
    if not args.db:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if exact and not errors else 1


def warm_up(url: str, specs: list[syn.SeriesSpec], seed: int, tokens: dict[str, str]) -> None:
    """An hour of each service, two hours ago: the server then knows (and caches) nearly all
    of the fleet's stacks, as a server that has run for a while does, so the soak shows what
    grows per window rather than caches filling up."""
    rng = np.random.default_rng(seed)
    encoder = syn.BodyEncoder()
    start = syn.aligned_now() - timedelta(hours=2)
    first = {s.service: s for s in reversed(specs)}
    began = time.monotonic()
    with httpx.Client(base_url=url, timeout=120, headers=syn.HEADERS) as client:
        for service, spec in first.items():
            model = syn.service_model(service, seed)
            key = syn.idempotency_key("soak-warm", seed, service)
            window = syn.window_dict(model, spec.labels, start, rng, seconds=3600, key=key)
            body = encoder.encode(window)
            headers = auth_header(tokens, service)
            client.post("/api/v1/windows", content=body, headers=headers).raise_for_status()
    print(
        f"  warm-up: an hour of each of {len(first)} services in {time.monotonic() - began:.0f} s"
    )


def count_stacks(db: str) -> int:
    engine = create_engine(db)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(stacks)).scalar_one()
    engine.dispose()
    return int(n)


def rss_points(times: np.ndarray, rss: np.ndarray, n: int = 7) -> str:
    marks = np.linspace(0, times[-1], n)
    return ", ".join(
        f"{int(t) // 60}:{int(t) % 60:02d} {rss[min(np.searchsorted(times, t), len(rss) - 1)]:.0f}"
        for t in marks
    )


if __name__ == "__main__":
    sys.exit(main())
