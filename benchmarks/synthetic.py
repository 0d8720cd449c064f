"""Realistic synthetic profiling data for the storage benchmarks: services, windows, bodies.

A service is modelled as a program: a few hundred functions in a few dozen files (about a
third of them library code shared by every service, e.g. asyncio, json, sqlalchemy; the rest
in the service's own package), and a layered call graph whose walks all start with the same
prefix a real asyncio program has (`<module>` -> `main` -> `run` -> `run_forever` ->
`_run_once` -> `_run` -> a handler ...). Walks through that graph, cut at a depth of 20-60
frames, give a pool of a few thousand distinct stacks that share prefixes like a real
program's. Stacks are sampled with a Zipf-like popularity, so a window of 1,000 samples (10 s
at 100 Hz) lands on 100-300 distinct stacks, as a busy service's windows do.

Everything is deterministic given a seed. Windows come out as `profiler.formats.window.Window`
objects (what `Piece.from_window` turns into `ProfileStore.put`'s input) or as the request
bodies the agent sends to `POST /api/v1/windows`: the same JSON, zstd-compressed
(`Content-Encoding: zstd`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import zstandard

from hotpath.profiler.formats import window as wire

RATE_HZ = 100.0
WINDOW_S = 10
SAMPLES_PER_WINDOW = int(RATE_HZ * WINDOW_S)

# Library code every Python service runs through: shared frames across services.
_LIBRARY = {
    "asyncio/runners.py": ["run", "_cancel_all_tasks"],
    "asyncio/base_events.py": ["run_forever", "_run_once", "run_until_complete", "create_task"],
    "asyncio/events.py": ["_run"],
    "asyncio/selector_events.py": ["_read_ready", "_write_ready", "sock_sendall"],
    "asyncio/streams.py": ["readline", "readexactly", "write", "drain"],
    "asyncio/tasks.py": ["__step", "gather", "wait_for", "sleep"],
    "selectors.py": ["select", "register", "modify"],
    "json/__init__.py": ["dumps", "loads"],
    "json/encoder.py": ["encode", "iterencode", "_iterencode_dict", "_iterencode_list"],
    "json/decoder.py": ["decode", "raw_decode"],
    "logging/__init__.py": ["info", "debug", "_log", "handle", "emit", "format", "makeRecord"],
    "ssl.py": ["read", "write", "do_handshake", "recv_into"],
    "socket.py": ["send", "recv_into", "makefile"],
    "re/__init__.py": ["match", "sub", "_compile"],
    "functools.py": ["wrapper", "_lru_cache_wrapper"],
    "contextlib.py": ["__enter__", "__exit__", "helper"],
    "dataclasses.py": ["__init__", "asdict", "_asdict_inner"],
    "decimal.py": ["quantize", "__add__", "__mul__"],
    "datetime.py": ["now", "isoformat", "fromtimestamp"],
    "uuid.py": ["uuid4", "__str__"],
    "sqlalchemy/engine/base.py": ["execute", "_execute_context", "_exec_single_context"],
    "sqlalchemy/engine/default.py": ["do_execute", "_init_compiled"],
    "sqlalchemy/orm/session.py": ["execute", "flush", "commit", "_autoflush"],
    "sqlalchemy/orm/query.py": ["all", "first", "_iter"],
    "sqlalchemy/sql/compiler.py": ["process", "visit_select", "visit_binary", "_compose_select"],
    "psycopg/cursor.py": ["execute", "fetchall", "_execute_gen"],
    "pydantic/main.py": ["model_validate", "model_dump", "__init__"],
    "httpx/_client.py": ["send", "_send_handling_auth", "_send_single_request", "request"],
    "httpx/_transports/default.py": ["handle_request"],
    "numpy/core/fromnumeric.py": ["sum", "_wrapreduction", "argsort"],
}
_ROOT = [
    ("<module>", "{pkg}/__main__.py"),
    ("main", "{pkg}/__main__.py"),
    ("run", "asyncio/runners.py"),
    ("run_until_complete", "asyncio/base_events.py"),
    ("run_forever", "asyncio/base_events.py"),
    ("_run_once", "asyncio/base_events.py"),
    ("_run", "asyncio/events.py"),
]
_APP_MODULES = [
    "handlers/orders", "handlers/quotes", "handlers/accounts", "handlers/admin", "handlers/feed",
    "risk/limits", "risk/exposure", "pricing/model", "pricing/curves", "pricing/greeks",
    "book/orderbook", "book/matching", "codec/fix", "codec/protobuf", "db/repository",
    "db/models", "cache/local", "cache/redis", "net/session", "net/gateway", "util/timing",
    "util/ids", "metrics", "config",
]  # fmt: skip
_VERBS = [
    "handle", "process", "validate", "compute", "apply", "load", "store", "encode", "decode",
    "check", "update", "publish", "route", "fetch", "parse", "build", "merge", "match", "price",
    "send", "flush", "lookup", "resolve", "render", "normalize", "aggregate", "dispatch", "on",
]  # fmt: skip
_NOUNS = [
    "order", "quote", "fill", "position", "limit", "book", "level", "trade", "account",
    "message", "request", "response", "session", "curve", "greeks", "batch", "event", "row",
    "key", "snapshot", "tick", "spread", "risk", "payload", "frame", "record", "cursor",
]  # fmt: skip


@dataclass(frozen=True)
class ServiceModel:
    """One service's program: its functions, its pool of stacks and their popularity."""

    name: str
    frames: list[tuple[str, str, int]]  # (function, file, first line)
    stacks: list[tuple[int, ...]]  # indexes into frames, root first
    popularity: np.ndarray  # probability of each stack in `stacks`

    def expected_distinct(self, samples: int = SAMPLES_PER_WINDOW) -> float:
        """Expected number of distinct stacks among `samples` draws."""
        return float(np.sum(1.0 - (1.0 - self.popularity) ** samples))


def service_model(
    name: str,
    seed: int,
    *,
    n_stacks: int = 3_000,
    n_app_functions: int = 220,
    zipf_s: float = 1.25,
) -> ServiceModel:
    """A deterministic program for service `name` (the seed picks its shape)."""
    rng = np.random.default_rng([seed, _stable(name)])
    pkg = name.replace("-", "_").replace(".", "_")
    frames: list[tuple[str, str, int]] = []
    index: dict[tuple[str, str], int] = {}

    def frame(function: str, file: str) -> int:
        key = (function, file)
        if key not in index:
            # A stable first line per function: the same library frame in every service.
            line = 1 + _stable(f"{file}:{function}") % 2_000
            index[key] = len(frames)
            frames.append((function, file, line))
        return index[key]

    root = [frame(f, file.format(pkg=pkg)) for f, file in _ROOT]
    library = [frame(f, file) for file, functions in _LIBRARY.items() for f in functions]
    app: list[int] = []
    seen: set[tuple[str, str]] = set()
    while len(app) < n_app_functions:
        module = _APP_MODULES[int(rng.integers(len(_APP_MODULES)))]
        function = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
        file = f"{pkg}/{module}.py"
        if (function, file) not in seen:
            seen.add((function, file))
            app.append(frame(function, file))
    handlers = app[:12]
    # A layered call graph: application functions call a few of the next ones (deeper
    # layers) and a few library functions; library functions call other library functions.
    app_callees: dict[int, list[int]] = {}
    lib_callees: dict[int, list[int]] = {}
    for position, function in enumerate(app):
        later = app[position + 1 : position + 1 + 6]
        n_app = min(len(later), int(rng.integers(2, 5)))
        app_callees[function] = [int(f) for f in rng.choice(later, n_app, replace=False)]
        lib_callees[function] = [int(f) for f in rng.choice(library, 3, replace=False)]
    for function in library:
        others = [f for f in library if f != function]
        lib_callees[function] = [int(f) for f in rng.choice(others, 2, replace=False)]

    walk = random.Random(int(rng.integers(2**63)))  # much faster than numpy for single draws
    pool: dict[tuple[int, ...], None] = {}
    attempts = 0
    while len(pool) < n_stacks:
        attempts += 1
        if attempts > n_stacks * 200:
            raise RuntimeError(f"could not build {n_stacks} distinct stacks for {name}")
        # A sample lands anywhere in a call: in application code, or in a short run of
        # library code under it (a json.dumps, a logging call, a database driver).
        depth = walk.randint(20, 60)
        tail = min(depth - 20, walk.randint(0, 8))
        stack = [*root, walk.choice(handlers)]
        while len(stack) < depth - tail and app_callees[stack[-1]]:
            stack.append(walk.choice(app_callees[stack[-1]]))
        while len(stack) < depth:
            stack.append(walk.choice(lib_callees[stack[-1]]))
        pool[tuple(stack)] = None
    stacks = list(pool)
    ranks = rng.permutation(len(stacks)) + 1
    weights = 1.0 / ranks**zipf_s
    return ServiceModel(name, frames, stacks, weights / weights.sum())


@dataclass(frozen=True)
class SeriesSpec:
    """One profiled process of a service: what its windows are labelled with."""

    service: str
    host: str
    pid: int
    version: str

    @property
    def labels(self) -> dict[str, str]:
        return {"host": self.host, "pid": str(self.pid), "version": self.version}


def fleet(services: int, processes: int, seed: int = 0) -> list[SeriesSpec]:
    """`services` services of `processes` processes each, with plausible labels."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(services):
        for p in range(processes):
            out.append(
                SeriesSpec(
                    service=service_name(s),
                    host=f"ip-10-{s % 250}-{p}-{int(rng.integers(2, 250))}",
                    pid=int(rng.integers(1_000, 4_000_000)),
                    version=f"1.{s % 7}.{int(rng.integers(0, 30))}",
                )
            )
    return out


def service_name(index: int) -> str:
    return f"svc-{index:03d}"


def idempotency_key(*parts: object) -> str:
    """A deterministic stand-in for the agent's `uuid4().hex`: 32 hex digits."""
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def window_dict(
    model: ServiceModel,
    labels: dict[str, str],
    start: datetime,
    rng: np.random.Generator,
    *,
    seconds: float = WINDOW_S,
    rate_hz: float = RATE_HZ,
    key: str | None = None,
) -> dict:
    """One window in its wire form (a dict that `Window.model_validate` accepts).

    Samples are drawn from the service's stack popularity; only the frames the window's
    stacks use are sent, renumbered, as the agent does.
    """
    samples = round(seconds * rate_hz)
    counts = rng.multinomial(samples, model.popularity)
    chosen = np.flatnonzero(counts)
    # Heaviest first, as `wire.from_profile` orders them.
    chosen = chosen[np.argsort(-counts[chosen], kind="stable")]
    remap: dict[int, int] = {}
    frames: list[tuple[str, str, int]] = []
    stacks: list[list[int]] = []
    for stack_index in chosen.tolist():
        out = []
        for f in model.stacks[stack_index]:
            i = remap.get(f)
            if i is None:
                i = remap[f] = len(frames)
                frames.append(model.frames[f])
            out.append(i)
        stacks.append(out)
    end = start + timedelta(seconds=seconds)
    return {
        "format": wire.FORMAT_ID,
        "service": model.name,
        "idempotency_key": key or idempotency_key(model.name, labels, start.isoformat()),
        "start": start,
        "end": end,
        "sample_rate_hz": rate_hz,
        "unit": "samples",
        "labels": labels,
        "frames": frames,
        "stacks": stacks,
        "counts": counts[chosen].tolist(),
    }


def make_window(
    model: ServiceModel,
    labels: dict[str, str],
    start: datetime,
    rng: np.random.Generator,
    **options: object,
) -> wire.Window:
    """A validated `Window`, as the server builds it from a request body."""
    return wire.Window.model_validate(window_dict(model, labels, start, rng, **options))  # type: ignore[arg-type]


def with_time(body: dict, start: datetime, key: str) -> dict:
    """The same window content at another time and with another idempotency key."""
    seconds = (body["end"] - body["start"]).total_seconds()
    return {
        **body,
        "start": start,
        "end": start + timedelta(seconds=seconds),
        "idempotency_key": key,
    }


class BodyEncoder:
    """Window dicts -> request bodies: JSON, zstd level 3, as `agent.shipper` sends them."""

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=3)

    def json(self, window: dict) -> bytes:
        return orjson.dumps(window)

    def encode(self, window: dict) -> bytes:
        return self._compressor.compress(self.json(window))


HEADERS = {"Content-Encoding": "zstd", "Content-Type": "application/json"}


def aligned_now(step_s: int = WINDOW_S) -> datetime:
    """Now, floored to a window boundary: windows of every series line up like real ones."""
    now = int(datetime.now(UTC).timestamp())
    return datetime.fromtimestamp(now - now % step_s, UTC)


def history_layout(
    now: datetime, days: int, coarsest_s: int, edges: list[tuple[datetime, int]]
) -> list[tuple[datetime, int]]:
    """(start, seconds) of the windows of one process at 100 Hz over `days` + 1 days to `now`.

    Every second lies in exactly one window, so every hour holds 360,000 samples. Away from
    the query edges a window spans `coarsest_s` (86,400, 3,600 or 60): there a query reads
    day and hour buckets, and a bucket's content does not depend on how many windows were
    merged into it. Around each edge `(time, finest)` the cells are split as finely as the
    planner reads them there: hours, then minutes, then `finest` seconds (10 where raw windows
    are still kept, 60 past raw retention). So a query reads as many buckets and windows as it
    would from 10-s windows all along, and loading 30 days takes seconds, not hours.
    """
    levels = [s for s in (86_400, 3_600, 60, 10) if s <= coarsest_s]
    end = int(now.timestamp())
    begin = (end - (days + 1) * 86_400) // levels[0] * levels[0]
    points = [(int(t.timestamp()), finest) for t, finest in edges]
    out: list[tuple[datetime, int]] = []

    def fill(start: int, size: int, level: int) -> None:
        if start >= end:
            return
        split = start + size > end or any(
            start < p < start + size and size > finest for p, finest in points
        )
        if split and level + 1 < len(levels):
            step = levels[level + 1]
            for sub in range(start, start + size, step):
                fill(sub, step, level + 1)
        else:
            out.append((datetime.fromtimestamp(start, UTC), size))

    for cell in range(begin, end, levels[0]):
        fill(cell, levels[0], 0)
    return out


def _stable(text: str) -> int:
    """A hash that is the same in every process (unlike `hash` of a str)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
