"""The storage bars of docs/architecture.md, measured on this machine, one server process.

For SQLite and PostgreSQL alike this prints:

* ingest throughput through real HTTP: the real `hotpath serve` (tests.servers.start_server),
  several client processes posting pre-encoded zstd bodies concurrently with httpx for a fixed
  time, many services and processes (series); windows/s, raw samples/s, p50/p99 latency,
  errors, CPU used, and a check that the database holds exactly the samples acknowledged;
* the same windows through `ProfileStore.put` in process, with the cost of zstd + JSON validation
  timed on its own, so what HTTP/JSON costs shows next to what storage costs;
* flame-graph query latency (cold, p50, p95) for 1 hour, 24 hours and 30 days of one service
  sampled at 100 Hz, in process (`ProfileStore.profile`) and over HTTP (`GET /api/v1/profile`,
  speedscope); every answer's total samples is checked against what was loaded;
* bytes on disk per raw sample, with raw windows, rollups and interned stacks apart;

then a table against the bars. `--quick` is a small run (about a minute); the default run
takes about four minutes. `--profile` adds a py-spy profile of the server during ingest and a
cProfile of the 30-day query, so the top costs can be named.

    .venv/bin/python benchmarks/storage_figures.py [--quick] [--sqlite-only | --postgres-only]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import itertools
import multiprocessing as mp
import os
import pstats
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import zstandard  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from benchmarks import synthetic as syn  # noqa: E402
from hotpath.profiler.formats import collapsed, speedscope  # noqa: E402
from hotpath.profiler.formats import window as wire  # noqa: E402
from hotpath.profiler.model import CPU, function_stats  # noqa: E402
from hotpath.server.storage.profiles import (  # noqa: E402
    DEFAULT_TENANT,
    IngestResult,
    Piece,
    Retention,
    Selection,
)
from hotpath.server.storage.sql.database import make_engine, upgrade  # noqa: E402
from hotpath.server.storage.sql.profiles import SqlProfileStore  # noqa: E402
from hotpath.server.storage.sql.rollups import roll_up  # noqa: E402
from hotpath.server.storage.sql.tables import windows  # noqa: E402
from hotpath.server.storage.sql.timeplan import to_us  # noqa: E402
from tests.servers import RunningServer, start_server, stop_process  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "HOTPATH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BARS = {
    "ingest": 1_000_000,  # raw samples/s into one server process
    "24 h": 150.0,  # ms, flame graph of one service
    "30 d": 300.0,  # ms
    "bytes": 1.0,  # per raw sample at rest
}
# Minute rollups are kept 30 days by default, so by the time a "last 30 days" query runs (a few
# minutes after the history was loaded) the first minutes of its range are past minute
# retention and, by design (server/storage/sql/timeplan.py), answered at hour resolution: the
# totals would not match what was loaded. One more day of minute retention keeps the check
# exact; the pieces a query reads are the same.
QUERY_RETENTION = Retention(minute=timedelta(days=31))
QUERY_ENV = {"HOTPATH_RETENTION_MINUTE": "P31D"}


@dataclass(frozen=True)
class Config:
    duration_s: float = 20.0  # each timed HTTP ingest run
    clients: int = 4  # client processes posting concurrently
    services: int = 50
    processes: int = 4  # series per service
    max_rate: float = 1_200.0  # windows/s the pre-encoded bodies can sustain at most
    store_s: float = 10.0  # ProfileStore.put time in process
    history_days: int = 30
    history_window_s: int = 86_400  # window length for old history, away from query edges
    reps: int = 20
    seed: int = 7


QUICK = Config(
    duration_s=6.0, clients=3, services=20, processes=3, max_rate=1_000.0, store_s=3.0, reps=5
)


# -- small helpers ---------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def human(n: float) -> str:
    return f"{n:,.0f}"


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def database(backend: str, workdir: Path, label: str, admin_url: str) -> Iterator[str]:
    """A throwaway database: an SQLite file in `workdir`, or a PostgreSQL database dropped
    afterwards."""
    if backend == "sqlite":
        path = workdir / f"{label}.db"
        yield f"sqlite:///{path}"
        return
    name = f"hotpath_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def open_store(url: str, retention: Retention | None = None) -> SqlProfileStore:
    engine = make_engine(url)
    upgrade(engine)
    return SqlProfileStore(engine, retention)


def ingest(store: SqlProfileStore, window: wire.Window) -> IngestResult:
    """What the ingest route does with a decoded window."""
    return store.put(Piece.from_window(window, DEFAULT_TENANT))


def cpu_of(service: str, start: datetime, end: datetime) -> Selection:
    return Selection(DEFAULT_TENANT, service, CPU, start, end)


def roll_up_all(engine: Engine, now: datetime | None = None) -> int:
    total = 0
    while rolled := roll_up(engine, now=now):
        total += rolled
    return total


# -- pre-encoded bodies ----------------------------------------------------------------------


@dataclass(frozen=True)
class BodySet:
    """Request bodies per client process, in files: built once, posted in every run."""

    paths: list[Path]
    warmup_per_client: list[int]  # the first bodies of each file: an hour per service, then
    # one window per series
    series: int
    t0: datetime


def _write_bodies(job: tuple) -> int:  # type: ignore[type-arg]
    path, specs, per_series, t0, seed, client = job
    rng = np.random.default_rng([seed, client])
    models = {s.service: syn.service_model(s.service, seed) for s in specs}
    encoder = syn.BodyEncoder()
    with open(path, "wb") as out:
        # Warm-up, part 1: an hour of each service (~all of its 3,000 stacks), as a server that
        # has seen this fleet for a while knows them. Part 2 is the first window of each series.
        for service in dict.fromkeys(s.service for s in specs):
            spec = next(s for s in specs if s.service == service)
            key = syn.idempotency_key("warm", seed, service)
            start = t0 - timedelta(hours=3)  # an hour closed long ago: built during warm-up
            body = encoder.encode(
                syn.window_dict(models[service], spec.labels, start, rng, seconds=3600, key=key)
            )
            out.write(struct.pack("<I", len(body)))
            out.write(body)
        for k in range(per_series):
            for spec in specs:
                start = t0 + timedelta(seconds=k * syn.WINDOW_S)
                key = syn.idempotency_key("ingest", seed, spec.service, spec.pid, k)
                body = encoder.encode(
                    syn.window_dict(models[spec.service], spec.labels, start, rng, key=key)
                )
                out.write(struct.pack("<I", len(body)))
                out.write(body)
    return per_series * len(specs) + len(models)


def read_bodies(path: Path) -> list[bytes]:
    data = path.read_bytes()
    bodies, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        bodies.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return bodies


def build_bodies(config: Config, workdir: Path) -> BodySet:
    """Each client posts the windows of its own services (as one agent per host would), in
    time order; series get enough windows for `max_rate` over the whole run."""
    specs = syn.fleet(config.services, config.processes, config.seed)
    per_series = 1 + int(np.ceil(config.max_rate * config.duration_s / len(specs)))
    # A run posts ~20 minutes of each series' windows in 20 s, so data time runs ahead of the
    # wall clock. Starting at now, no hour the timed windows touch closes during the run, and
    # roll-ups take their live path (minute buckets). Ending at now instead would put many
    # windows into hours already built, and each roll-up would rewrite those hour buckets
    # (the path for windows replayed late from a spool), which a live fleet rarely takes.
    t0 = syn.aligned_now()
    jobs = []
    for c in range(config.clients):
        mine = [s for s in specs if int(s.service.split("-")[1]) % config.clients == c]
        jobs.append((workdir / f"bodies-{c}.bin", mine, per_series, t0, config.seed, c))
    started = time.perf_counter()
    with mp.get_context("fork").Pool(min(config.clients, os.cpu_count() or 1)) as pool:
        counts = pool.map(_write_bodies, jobs)
    say(
        f"  pre-encoded {human(sum(counts))} windows ({len(specs)} series: {config.services} "
        f"services x {config.processes} processes; {per_series} windows each) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    warmups = [len(job[1]) + len({s.service for s in job[1]}) for job in jobs]
    return BodySet([job[0] for job in jobs], warmups, len(specs), t0)


# -- ingest over HTTP ------------------------------------------------------------------------


def _client(
    url: str,
    path: Path,
    warmup: int,
    ready,
    go,
    deadline,
    results,  # type: ignore[no-untyped-def]
) -> None:
    bodies = read_bodies(path)
    out: dict = {"ok": 0, "duplicates": 0, "statuses": Counter(), "errors": Counter()}
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60, headers=syn.HEADERS) as client:
        # Warm-up (not timed): series exist and the most popular stacks are interned, as in a
        # fleet that has been running for a while.
        for body in bodies[:warmup]:
            client.post("/api/v1/windows", content=body).raise_for_status()
        ready.wait()
        go.wait()
        end = deadline.value
        cpu = time.process_time()
        out["exhausted"] = True
        for body in bodies[warmup:]:
            if time.monotonic() >= end:
                out["exhausted"] = False
                break
            began = time.perf_counter()
            try:
                response = client.post("/api/v1/windows", content=body)
            except httpx.HTTPError as exc:
                out["errors"][type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - began)
            if response.status_code == 201:
                out["ok"] += 1
            elif response.status_code == 200:
                out["duplicates"] += 1
            else:
                out["statuses"][response.status_code] += 1
        out["ended"] = time.monotonic()
        out["cpu_s"] = time.process_time() - cpu
    out["latencies"] = latencies
    results.put(out)


@dataclass
class IngestRun:
    windows: int = 0
    samples: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    errors: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    exhausted: bool = False
    server_cpu: float = 0.0  # cores busy in the server process, on average
    machine_cpu: float = 0.0  # cores busy on the whole machine
    client_cpu: float = 0.0  # cores busy in the client processes
    backlog: int = 0  # windows not rolled up yet when the clock stopped
    new_stacks: int = 0  # stacks first seen (interned) during the timed run
    stored_ok: bool = False

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0


def http_ingest(
    server: RunningServer,
    db_url: str,
    bodies: BodySet,
    duration_s: float,
    profile_to: Path | None = None,
) -> tuple[IngestRun, Storage]:
    """One timed run against a running server. Also returns the tables' sizes once the
    warm-up is rolled up, just before the clock starts, so that what the run adds can be
    told from what the warm-up wrote."""
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(len(bodies.paths) + 1)
    go = ctx.Event()
    deadline = ctx.Value("d", 0.0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client, args=(server.url, p, w, ready, go, deadline, results), daemon=True
        )
        for p, w in zip(bodies.paths, bodies.warmup_per_client, strict=True)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=600)
    deadline_backlog = time.monotonic() + 120
    while _backlog(db_url) and time.monotonic() < deadline_backlog:
        time.sleep(0.5)  # the server's maintenance thread rolls the warm-up up
    before = measure_storage(db_url, checkpoint=False)
    process = psutil.Process(server.process.pid)
    server_cpu = _cpu_seconds(process)
    machine = psutil.cpu_times()
    spy = None
    if profile_to is not None:
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "--nonblocking",
                "--duration",
                str(int(duration_s)),
                "--output",
                str(profile_to),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    started = time.monotonic()
    deadline.value = started + duration_s
    go.set()
    outs = [results.get(timeout=duration_s + 300) for _ in procs]
    for p in procs:
        p.join(30)
    ended = max(o["ended"] for o in outs)
    backlog = _backlog(db_url)
    new_stacks = _count_stacks(db_url) - before.stacks
    run = IngestRun()
    run.seconds = ended - started
    run.server_cpu = (_cpu_seconds(process) - server_cpu) / run.seconds
    machine_after = psutil.cpu_times()
    busy = sum(machine_after) - sum(machine) - (machine_after.idle - machine.idle)
    run.machine_cpu = busy / run.seconds
    run.client_cpu = sum(o["cpu_s"] for o in outs) / run.seconds
    if spy is not None:
        spy.wait(60)
    latencies = np.concatenate([np.asarray(o["latencies"]) for o in outs]) * 1e3
    run.windows = sum(o["ok"] for o in outs)
    run.samples = run.windows * syn.SAMPLES_PER_WINDOW
    run.duplicates = sum(o["duplicates"] for o in outs)
    run.p50_ms, run.p99_ms = pct(latencies, 50), pct(latencies, 99)
    errors: Counter[str] = Counter()
    for o in outs:
        errors.update({f"HTTP {k}": v for k, v in o["statuses"].items()})
        errors.update(o["errors"])
    run.errors = dict(errors)
    run.exhausted = any(o["exhausted"] for o in outs)
    run.backlog = backlog
    run.new_stacks = new_stacks
    return run, before


def _cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _count_stacks(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM stacks")).scalar_one()
    finally:
        engine.dispose()


def _backlog(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(windows).where(windows.c.rolled_up.is_(False))
            ).scalar_one()
    finally:
        engine.dispose()


def stored_samples(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        count, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(windows.c.sample_count), 0))
        ).one()
    return int(count), int(total)


# -- ingest in process -----------------------------------------------------------------------


@dataclass
class StoreRun:
    windows: int = 0
    samples: int = 0
    store_s: float = 0.0  # time inside ProfileStore.put (with Piece.from_window)
    decode_s: float = 0.0  # zstd + Window.model_validate_json, as the HTTP handler does
    rollup_windows_per_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.store_s if self.store_s else 0.0

    @property
    def ms_per_window(self) -> float:
        return self.store_s / self.windows * 1e3 if self.windows else 0.0

    @property
    def decode_ms(self) -> float:
        return self.decode_s / self.windows * 1e3 if self.windows else 0.0


def store_ingest(db_url: str, bodies: BodySet, budget_s: float) -> StoreRun:
    """The HTTP run's windows through `ProfileStore.put` directly, until `budget_s` of ingest."""
    store = open_store(db_url)
    decompressor = zstandard.ZstdDecompressor()
    files = [read_bodies(p) for p in bodies.paths]
    run = StoreRun()

    def decode(body: bytes) -> wire.Window:
        return wire.Window.model_validate_json(decompressor.decompress(body))

    for batch, warm in zip(files, bodies.warmup_per_client, strict=True):
        for body in batch[:warm]:
            ingest(store, decode(body))
    # Interleave the clients' files, as concurrent clients would.
    rest = [f[w:] for f, w in zip(files, bodies.warmup_per_client, strict=True)]
    timed = [b for group in itertools.zip_longest(*rest) for b in group if b is not None]
    for body in timed:
        began = time.perf_counter()
        window = decode(body)
        decoded = time.perf_counter()
        result = ingest(store, window)
        run.store_s += time.perf_counter() - decoded
        run.decode_s += decoded - began
        run.windows += 1
        run.samples += result.samples
        if run.store_s >= budget_s:
            break
    began = time.perf_counter()
    rolled = roll_up_all(store.engine)
    run.rollup_windows_per_s = rolled / (time.perf_counter() - began)
    store.engine.dispose()
    return run


# -- history and queries ---------------------------------------------------------------------


@dataclass
class History:
    service: str
    now: datetime
    windows: list[tuple[int, int]]  # (start_us, samples)
    layout: Counter[int]  # window length -> count
    load_s: float
    rollup_s: float

    def expected(self, start: datetime, end: datetime) -> int:
        a, b = to_us(start), to_us(end)
        return sum(n for s, n in self.windows if a <= s < b)


def load_history(db_url: str, config: Config, now: datetime) -> History:
    """One service, one process at 100 Hz, through `ProfileStore.put`; then rolled up."""
    service = "history-svc"
    model = syn.service_model(service, config.seed)
    labels = {"host": "ip-10-0-0-1", "pid": "4242", "version": "1.0.0"}
    seven_days_ago = now - timedelta(days=7)
    edges = [
        (start, 10 if start > seven_days_ago + timedelta(hours=1) else 60)
        for start, _ in query_ranges(now, config.history_days).values()
    ]
    layout = syn.history_layout(now, config.history_days, config.history_window_s, edges)
    store = open_store(db_url, QUERY_RETENTION)
    rng = np.random.default_rng(config.seed)
    stored: list[tuple[int, int]] = []
    began = time.perf_counter()
    for start, seconds in layout:
        window = syn.make_window(
            model,
            labels,
            start,
            rng,
            seconds=seconds,
            key=syn.idempotency_key("history", config.seed, start.isoformat()),
        )
        stored.append((to_us(start), ingest(store, window).samples))
    loaded = time.perf_counter()
    roll_up_all(store.engine)
    rolled = time.perf_counter()
    store.engine.dispose()
    return History(
        service, now, stored, Counter(s for _, s in layout), loaded - began, rolled - loaded
    )


def query_ranges(now: datetime, days: int) -> dict[str, tuple[datetime, datetime]]:
    return {
        "1 h": (now - timedelta(hours=1), now),
        "24 h": (now - timedelta(hours=24), now),
        f"{days} d": (now - timedelta(days=days), now),
    }


@dataclass
class QueryTiming:
    cold_ms: float
    p50_ms: float
    p95_ms: float
    samples: int
    stacks: int = 0
    response_bytes: int = 0


def store_queries(db_url: str, history: History, config: Config) -> dict[str, QueryTiming]:
    engine = make_engine(db_url)
    out = {}
    for name, (start, end) in query_ranges(history.now, config.history_days).items():
        expected = history.expected(start, end)
        store = SqlProfileStore(engine, QUERY_RETENTION)  # empty caches: the first is cold
        times = []
        for _ in range(config.reps + 1):
            began = time.perf_counter()
            profile = store.profile(cpu_of(history.service, start, end))
            times.append((time.perf_counter() - began) * 1e3)
            assert profile.total == expected, (name, profile.total, expected)
        out[name] = QueryTiming(
            times[0], pct(times[1:], 50), pct(times[1:], 95), expected, len(profile.samples)
        )
    engine.dispose()
    return out


def http_queries(url: str, history: History, config: Config) -> dict[str, QueryTiming]:
    out = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, (start, end) in query_ranges(history.now, config.history_days).items():
            expected = history.expected(start, end)
            params = {
                "service": history.service,
                "format": "speedscope",
                "from": str(int(start.timestamp())),
                "until": str(int(end.timestamp())),
            }
            times = []
            for _ in range(config.reps + 1):
                began = time.perf_counter()
                response = client.get("/api/v1/profile", params=params)
                times.append((time.perf_counter() - began) * 1e3)
                response.raise_for_status()
                got = int(response.headers["X-Hotpath-Samples"])
                assert got == expected, (name, got, expected)
            document = orjson.loads(response.content)
            # A cpu profile exports in time: each sample weighs one period of the 100 Hz rate.
            period = 1e9 / syn.RATE_HZ if document["profiles"][0]["unit"] == "nanoseconds" else 1
            assert round(sum(document["profiles"][0]["weights"]) / period) == expected
            out[name] = QueryTiming(
                times[0],
                pct(times[1:], 50),
                pct(times[1:], 95),
                expected,
                len(document["profiles"][0]["samples"]),
                len(response.content),
            )
    return out


def profile_query(db_url: str, history: History, config: Config) -> str:
    """cProfile of the longest range, in process: ProfileStore.profile then speedscope export."""
    engine = make_engine(db_url)
    store = SqlProfileStore(engine, QUERY_RETENTION)
    start, end = list(query_ranges(history.now, config.history_days).values())[-1]
    store.profile(cpu_of(history.service, start, end))  # warm caches, as the timed reps are
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        speedscope.dumps(store.profile(cpu_of(history.service, start, end)))
    profiler.disable()
    engine.dispose()
    text_out = io.StringIO()
    stats = pstats.Stats(profiler, stream=text_out)
    stats.sort_stats("tottime").print_stats(12)
    return text_out.getvalue()


# -- bytes on disk ---------------------------------------------------------------------------

_GROUPS = {
    "windows": "raw windows",
    "service_rollups": "rollups",
    "series_rollups": "rollups",
    "frames": "interned frames+stacks",
    "stacks": "interned frames+stacks",
}


@dataclass
class Storage:
    samples: int
    windows: int
    stacks: int  # distinct stacks interned
    total_bytes: int  # database size as the backend reports it
    groups: dict[str, int]  # bytes per group of tables, indexes included
    window_parts: dict[str, int]  # the windows table: heap (+TOAST) and each index
    note: str = ""

    def per_sample(self, size: int | None = None) -> float:
        return (self.total_bytes if size is None else size) / max(self.samples, 1)

    @property
    def tables(self) -> int:
        return sum(self.groups.values())

    def minus(self, before: Storage) -> Storage:
        """What was added since `before`: bytes, samples, windows and stacks."""
        return Storage(
            self.samples - before.samples,
            self.windows - before.windows,
            self.stacks - before.stacks,
            self.total_bytes - before.total_bytes,
            {k: v - before.groups.get(k, 0) for k, v in self.groups.items()},
            {k: v - before.window_parts.get(k, 0) for k, v in self.window_parts.items()},
            self.note,
        )


def measure_storage(db_url: str, *, checkpoint: bool = True) -> Storage:
    engine = create_engine(db_url)
    count, samples = stored_samples(engine)
    groups: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    with engine.connect() as conn:
        n_stacks = conn.execute(text("SELECT count(*) FROM stacks")).scalar_one()
        if engine.dialect.name == "sqlite":
            if checkpoint:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master").all())
            for name, size in conn.exec_driver_sql(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
            ):
                table = owner.get(name, name)
                groups[_GROUPS.get(table, "other")] += int(size)
                if table == "windows":
                    parts["table" if name == "windows" else name] += int(size)
            path = Path(make_url(db_url).database or "")
            files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
            total = sum(p.stat().st_size for p in files if p.exists())
            note = "file + -wal after a checkpoint; tables from dbstat"
        else:
            total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            for table, size in conn.execute(
                text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r'"
                )
            ):
                groups[_GROUPS.get(table, "other")] += int(size)
            indexes = conn.execute(
                text(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                    "FROM pg_index WHERE indrelid = 'windows'::regclass"
                )
            ).all()
            parts.update({name: int(size) for name, size in indexes})
            parts["table (heap + TOAST)"] = groups["raw windows"] - sum(parts.values())
            note = "pg_database_size, with ~7.5 MB of catalogs; tables: pg_total_relation_size"
    engine.dispose()
    return Storage(samples, count, n_stacks, int(total), dict(groups), dict(parts), note)


def print_storage(label: str, storage: Storage, *, delta: bool = False) -> None:
    what = "added" if delta else "in total"
    say(
        f"  {label}: {human(storage.samples)} raw samples {what} in {human(storage.windows)} "
        f"windows, {human(storage.stacks)} new stacks; hotpath tables "
        f"{storage.tables / 2**20:.2f} MiB = {storage.per_sample(storage.tables):.3f} B/sample"
    )
    if not delta:
        say(
            f"    database {storage.total_bytes / 2**20:.1f} MiB = {storage.per_sample():.3f} "
            f"B/sample ({storage.note})"
        )
    parts = ", ".join(
        f"{group} {storage.per_sample(storage.groups.get(group, 0)):.3f}"
        for group in ("raw windows", "rollups", "interned frames+stacks", "other")
    )
    say(f"    B/sample by table group: {parts}")
    detail = ", ".join(
        f"{name} {storage.per_sample(size):.3f}"
        for name, size in sorted(storage.window_parts.items(), key=lambda kv: -kv[1])
    )
    say(f"    raw windows table, B/sample: {detail}")
    if not delta:
        per_stack = storage.groups.get("interned frames+stacks", 0) / max(storage.stacks, 1)
        say(f"    interned frames+stacks: {per_stack:.0f} B per distinct stack")


def print_bloat(db_url: str) -> None:
    """PostgreSQL: how much of the windows and rollup tables is dead row versions, measured by
    compacting them with VACUUM FULL. Each roll-up UPDATEs `windows.rolled_up` (a new version
    of the row and, the column being indexed, new entries in every index) and rewrites the
    rollup buckets it merges into."""
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for table in ("windows", "series_rollups", "service_rollups"):
            live, dead = conn.execute(
                text("SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = :t"),
                {"t": table},
            ).one()
            size = text("SELECT pg_total_relation_size(CAST(:t AS regclass))")
            before = conn.execute(size, {"t": table}).scalar_one()
            conn.execute(text(f"VACUUM FULL {table}"))
            after = conn.execute(size, {"t": table}).scalar_one()
            say(
                f"    {table}: {live:,} live and {dead:,} dead row versions; VACUUM FULL "
                f"shrinks it (with indexes) from {before / 2**20:.2f} to {after / 2**20:.2f} MiB "
                f"({before / max(after, 1):.2f}x)"
            )
    engine.dispose()


# -- one backend, end to end -----------------------------------------------------------------


@dataclass
class BackendFigures:
    http: IngestRun
    store: StoreRun
    storage: Storage  # what the timed ingest run added: steady-state cost per sample
    storage_total: Storage  # the whole ingest database, warm-up included
    store_queries: dict[str, QueryTiming]
    http_queries: dict[str, QueryTiming]


def run_backend(
    backend: str, config: Config, bodies: BodySet, workdir: Path, args: argparse.Namespace
) -> BackendFigures:
    say(f"\n=== {backend} ===")
    say(f"ingest over HTTP: {config.clients} client processes, {config.duration_s:.0f} s")
    with database(backend, workdir, "ingest", args.pg_admin_url) as url:
        server = start_server(url, workdir / f"{backend}-ingest")
        try:
            run, before = http_ingest(server, url, bodies, config.duration_s)
        finally:
            stop_process(server.process)
        engine = make_engine(url)
        roll_up_all(engine)
        _, samples = stored_samples(engine)
        engine.dispose()
        untimed = samples_outside_run(bodies)
        run.stored_ok = samples == run.samples + untimed
        print_ingest(run, samples, untimed)
        total = measure_storage(url)
        added = total.minus(before)
        print_storage("bytes on disk, what the timed run added (rolled up)", added, delta=True)
        print_storage("bytes on disk, the whole database (warm-up included)", total)
        if backend == "postgresql":
            print_bloat(url)
    if args.profile:
        say(f"  another {config.duration_s:.0f} s run, under py-spy, into a fresh database:")
        with database(backend, workdir, "profile", args.pg_admin_url) as url:
            spy_out = workdir / f"{backend}-ingest.pyspy.txt"
            server = start_server(url, workdir / f"{backend}-profile")
            try:
                profiled, _ = http_ingest(server, url, bodies, config.duration_s, spy_out)
            finally:
                stop_process(server.process)
            say(
                f"  {profiled.windows_per_s:,.1f} windows/s under py-spy, server "
                f"{profiled.server_cpu:.2f} cores"
            )
            print_pyspy(spy_out)

    say(f"ingest through ProfileStore.put in process, {config.store_s:.0f} s of ingest")
    with database(backend, workdir, "store", args.pg_admin_url) as url:
        store_run = store_ingest(url, bodies, config.store_s)
    print_store(store_run)

    with database(backend, workdir, "history", args.pg_admin_url) as url:
        now = syn.aligned_now()
        say(f"loading {config.history_days} days of one service at 100 Hz (ProfileStore.put) ...")
        history = load_history(url, config, now)
        layout = ", ".join(
            f"{n} x {_duration(s)}" for s, n in sorted(history.layout.items(), reverse=True)
        )
        say(
            f"  {human(sum(n for _, n in history.windows))} samples in {len(history.windows)} "
            f"windows ({layout}) loaded in {history.load_s:.0f} s, rolled up in "
            f"{history.rollup_s:.0f} s"
        )
        say(
            "  windows are 10 s (60 s past raw retention) around every query edge and "
            f"{_duration(config.history_window_s)} elsewhere; 100 Hz throughout"
        )
        sq = store_queries(url, history, config)
        print_queries("flame graph, ProfileStore.profile in process", sq)
        if args.profile:
            say("  cProfile of 5 x (ProfileStore.profile + speedscope.dumps), longest range:")
            say(_indent(profile_query(url, history, config), 4))
        with environment(QUERY_ENV):
            server = start_server(url, workdir / f"{backend}-query")
        try:
            time.sleep(2)  # the server's first retention pass runs at start; let it finish
            hq = http_queries(server.url, history, config)
        finally:
            stop_process(server.process)
        print_queries("flame graph, GET /api/v1/profile?format=speedscope", hq)
        history_storage = measure_storage(url)
        say(
            f"  history database: {history_storage.per_sample():.3f} B/sample (long windows "
            "away from the edges, so few minute buckets: not the storage figure)"
        )
    return BackendFigures(run, store_run, added, total, sq, hq)


def samples_outside_run(bodies: BodySet) -> int:
    """Samples of the warm-up bodies, posted before the clock started."""
    dctx = zstandard.ZstdDecompressor()
    total = 0
    for path, warm in zip(bodies.paths, bodies.warmup_per_client, strict=True):
        for body in read_bodies(path)[:warm]:
            total += sum(orjson.loads(dctx.decompress(body))["counts"])
    return total


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _duration(seconds: int) -> str:
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _indent(text_in: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text_in.strip().splitlines())


def print_ingest(run: IngestRun, stored: int, untimed: int) -> None:
    errors = ", ".join(f"{k}: {v}" for k, v in run.errors.items()) or "none"
    say(
        f"  {human(run.windows)} windows in {run.seconds:.1f} s = {run.windows_per_s:,.1f} "
        f"windows/s = {human(run.samples_per_s)} samples/s; latency p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms; errors: {errors}; duplicates: {run.duplicates}"
    )
    say(
        f"  CPU: server process {run.server_cpu:.2f} cores, clients {run.client_cpu:.2f}, "
        f"machine {run.machine_cpu:.2f} of {os.cpu_count()} (load average {_load()}); "
        "roll-up backlog at the end: "
        f"{human(run.backlog)} windows; stacks interned during the run: {human(run.new_stacks)}"
    )
    verdict = "exact" if run.stored_ok else "MISMATCH"
    say(
        f"  stored samples {human(stored)} = acknowledged {human(run.samples)} + untimed "
        f"{human(untimed)}: {verdict}"
    )
    if run.exhausted:
        say("  NOTE: a client ran out of pre-encoded bodies: raise --max-rate")


def print_store(run: StoreRun) -> None:
    say(
        f"  {human(run.windows)} windows: ProfileStore.put {run.ms_per_window:.2f} ms/window = "
        f"{human(run.samples_per_s)} samples/s on one core"
    )
    say(
        f"  zstd + JSON validation (Window.model_validate_json) {run.decode_ms:.2f} ms/window; "
        f"both: {human(1e3 * syn.SAMPLES_PER_WINDOW / (run.ms_per_window + run.decode_ms))} "
        "samples/s"
    )
    say(
        f"  roll-up of those windows afterwards: {run.rollup_windows_per_s:,.0f} windows/s "
        f"({run.rollup_windows_per_s * syn.SAMPLES_PER_WINDOW / 1e6:.2f} M samples/s)"
    )


def print_queries(title: str, timings: dict[str, QueryTiming]) -> None:
    say(f"  {title}:")
    for name, t in timings.items():
        size = f", {t.response_bytes / 1e6:.1f} MB" if t.response_bytes else ""
        say(
            f"    {name:>5}: cold {t.cold_ms:7.1f} ms, p50 {t.p50_ms:7.1f} ms, "
            f"p95 {t.p95_ms:7.1f} ms  ({human(t.samples)} samples, {t.stacks} stacks{size}) ok"
        )


def print_pyspy(path: Path) -> None:
    if not path.exists():
        say("  py-spy produced no profile (is ptrace allowed?)")
        return
    profile = collapsed.loads(_pyspy_lines(path.read_text()))
    total = profile.total or 1
    say(f"  py-spy on the server during ingest ({human(total)} samples); top by self time:")
    by_self = sorted(function_stats(profile), key=lambda s: -s.self_weight)
    for s in by_self[:12]:
        say(f"    {100 * s.self_weight / total:5.1f}%  {s.name}  ({_short(s.file)})")
    say("  top by total time (hotpath and the stack it runs on):")
    shown = 0
    for s in function_stats(profile):
        if any(k in s.file for k in ("server/", "profiler/", "sqlalchemy", "pydantic", "zstd")):
            say(f"    {100 * s.total_weight / total:5.1f}%  {s.name}  ({_short(s.file)})")
            shown += 1
            if shown == 16:
                break


def _pyspy_lines(raw: str) -> str:
    """py-spy's raw output, with records rejoined where a frame's text held a line break
    (seen now and then: a record's count alone on the next line)."""
    lines: list[str] = []
    pending = ""
    for line in raw.splitlines():
        if re.fullmatch(r"\s*\d+", line) and lines and not pending:
            lines[-1] += line  # the count of the previous record, after a break
            continue
        pending += line
        if re.search(r" \d+$", pending):
            lines.append(pending)
            pending = ""
    kept = [line for line in lines if re.fullmatch(r".*\S.* \d+", line)]
    return "\n".join(kept) + "\n"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# -- the table -------------------------------------------------------------------------------


def print_table(figures: dict[str, BackendFigures], config: Config) -> None:
    longest = f"{config.history_days} d"
    rows = [
        ("ingest, HTTP (samples/s)", lambda f: f.http.samples_per_s, "ingest", ">="),
        ("ingest, Store API (samples/s)", lambda f: f.store.samples_per_s, "ingest", ">="),
        ("flame graph 24 h, HTTP p95 (ms)", lambda f: f.http_queries["24 h"].p95_ms, "24 h", "<="),
        (
            "flame graph 24 h, Store p95 (ms)",
            lambda f: f.store_queries["24 h"].p95_ms,
            "24 h",
            "<=",
        ),
        (
            f"flame graph {longest}, HTTP p95 (ms)",
            lambda f: f.http_queries[longest].p95_ms,
            "30 d",
            "<=",
        ),
        (
            f"flame graph {longest}, Store p95 (ms)",
            lambda f: f.store_queries[longest].p95_ms,
            "30 d",
            "<=",
        ),
        (
            "B/raw sample, added by steady ingest",
            lambda f: f.storage.per_sample(f.storage.tables),
            "bytes",
            "<=",
        ),
        (
            "B/raw sample, whole ingest database",
            lambda f: f.storage_total.per_sample(),
            "bytes",
            "<=",
        ),
    ]
    backends = list(figures)
    header = f"| {'figure':<36} | " + " | ".join(f"{b:>22}" for b in backends) + " | bar |"
    say("\n" + header)
    say("|" + "-" * 38 + "|" + "|".join("-" * 24 for _ in backends) + "|-----|")
    for title, get, bar_key, sense in rows:
        bar = BARS[bar_key]
        cells = []
        for b in backends:
            value = get(figures[b])
            ok = value >= bar if sense == ">=" else value <= bar
            ratio = value / bar
            shown = (
                human(value) if value >= 1000 else f"{value:.3f}" if value < 10 else f"{value:.1f}"
            )
            cells.append(f"{shown} ({ratio:.2f}x) {'pass' if ok else 'FAIL'}")
        bar_text = f"{sense} {human(bar)}" if bar >= 1000 else f"{sense} {bar:g}"
        say(f"| {title:<36} | " + " | ".join(f"{c:>22}" for c in cells) + f" | {bar_text} |")
    if config.history_days != 30:
        say(f"(the 30-day bar is compared with a {config.history_days}-day range)")


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run, about a minute")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true")
    only.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--duration", type=float, help="seconds of each HTTP ingest run")
    parser.add_argument("--clients", type=int, help="client processes")
    parser.add_argument("--services", type=int)
    parser.add_argument("--processes", type=int, help="series (processes) per service")
    parser.add_argument("--max-rate", type=float, help="windows/s the bodies can sustain")
    parser.add_argument("--reps", type=int, help="timed repetitions per query")
    parser.add_argument("--history-days", type=int)
    parser.add_argument(
        "--history-window",
        type=int,
        choices=(86_400, 3_600, 60),
        help="window length (s) for history away from query edges",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy ingest, cProfile query")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    config = QUICK if args.quick else Config()
    overrides = {
        "duration_s": args.duration,
        "clients": args.clients,
        "services": args.services,
        "processes": args.processes,
        "max_rate": args.max_rate,
        "reps": args.reps,
        "history_days": args.history_days,
        "history_window_s": args.history_window,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.history_days < 2:
        parser.error("--history-days must be at least 2")
    backends = ["sqlite", "postgresql"]
    if args.sqlite_only:
        backends = ["sqlite"]
    if args.postgres_only:
        backends = ["postgresql"]

    workdir = Path(tempfile.mkdtemp(prefix="hotpath-figures-"))
    say(f"hotpath storage figures ({'quick' if args.quick else 'full'} run), {config}")
    say(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"Python {sys.version.split()[0]}; load average {_load()} (the machine is shared: "
        f"other work competes for the cores); work folder {workdir}"
    )
    began = time.monotonic()
    try:
        bodies = build_bodies(config, workdir)
        figures = {b: run_backend(b, config, bodies, workdir, args) for b in backends}
        print_table(figures, config)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"total time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
