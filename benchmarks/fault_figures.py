"""Faults under authentication, with real processes: does any window get lost or doubled?

Five real Python target processes, each profiled by a real `hotpath agent attach` (py-spy,
1-s windows, `--idle` so every window holds ~100 samples, a token in HOTPATH_TOKEN) shipping to
a real `hotpath serve --auth required`. Two faults:

* **kills** (`--db sqlite`, `postgresql` or `both`): the server is SIGKILLed `--kills` times at
  random moments a few seconds apart and started again on the same port at once;
* **pg-restarts** (PostgreSQL only): the PostgreSQL cluster is restarted `--pg-restarts` times
  (`pg_ctlcluster VERSION NAME restart`, fast mode: every connection is cut) while the server
  stays up; a probe posts a small window every 0.1 s to time how long ingest answered 503.

Then the agents are stopped cleanly (SIGINT: they ship their last window) and, per agent, its
exit summary is set against what the database holds for its pid label:

* made: windows the agent sampled; the agent sends every window with samples, so
  `made - shipped - left - dropped - refused` windows held none (with `--idle`, at most the
  final one, cut short by the stop) and the sample totals below prove it;
* lost = windows the server acknowledged (`shipped`) that are not stored;
* doubled = stored rows sharing an idempotency key or a (series, start), or more stored than
  shipped; gaps = stored windows whose start is not the previous window's end;
* samples: the agent's sampled total against the stored total (equal when nothing is lost).

PostgreSQL (127.0.0.1:5432, trust auth): a fresh database per run, dropped afterwards. Other
work may use that cluster: the restarts are few and short, and happen only in this script.

    .venv/bin/python benchmarks/fault_figures.py [--db both] [--kills 20] [--pg-restarts 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import zstandard  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from benchmarks.storage_figures import PG_ADMIN_URL  # noqa: E402
from hotpath.profiler.formats import window as wire  # noqa: E402
from hotpath.profiler.model import Frame, Profile  # noqa: E402
from hotpath.server.storage.sql.tables import series_labels, services, windows  # noqa: E402
from tests.servers import attach_agent, free_port, make_token, stop_process  # noqa: E402

SERVICE = "fault-trader"
PROBE_SERVICE = "fault-probe"
# A target that looks like a service: a little work, then waiting for the next message.
TARGET = """
import time

def price(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def wait_for_quote():
    time.sleep(0.004)

def handle():
    price(2_000)
    wait_for_quote()

while True:
    handle()
"""
SUMMARY = re.compile(
    r"pid (?P<pid>\d+) done: (?P<made>\d+) windows, (?P<samples>\d+) samples, "
    r"(?P<shipped>\d+) shipped, (?P<spooled>\d+) spooled, (?P<refused>\d+) refused .*?, "
    r"(?P<direct>\d+) sent directly, (?P<dropped_full>\d+) dropped \(spool full\), "
    r"(?P<dropped_memory>\d+) dropped \(memory queue full\), (?P<left>\d+) left in"
)


def say(text: str = "") -> None:
    print(text, flush=True)


# -- the server, the targets and their agents -----------------------------------------------


class Server:
    """`hotpath serve --auth required` on a fixed port, so that it can be killed and started
    again where the agents send."""

    def __init__(self, db: str, workdir: Path) -> None:
        self.db, self.workdir = db, workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Seconds until the health check answers 200."""
        began = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        argv = [sys.executable, "-m", "hotpath", "serve", "--port", self.url.rsplit(":", 1)[1]]
        argv += ["--db", self.db, "--data-dir", str(self.workdir), "--log-level", "warning"]
        with self.log.open("ab") as log:  # every run's output, one after another
            self.process = subprocess.Popen(
                [*argv, "--auth", "required"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        while time.monotonic() - began < 60:
            if self.process.poll() is not None:
                output = self.log.read_bytes()[offset:].decode(errors="replace")
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{output[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy within 60 s: see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown, whatever is in flight is cut
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")


@dataclass
class AgentSummary:
    pid: int
    made: int
    samples: int
    shipped: int
    spooled: int
    refused: int
    dropped: int
    left: int
    exit_code: int | None


class Fleet:
    """Target processes, each with a real agent shipping 1-s windows with a token."""

    def __init__(self, count: int, url: str, token: str, workdir: Path) -> None:
        self.count, self.url, self.token, self.workdir = count, url, token, workdir
        self.targets: list[subprocess.Popen[bytes]] = []
        self.agents: list[subprocess.Popen[str]] = []

    @property
    def pids(self) -> list[int]:
        return [t.pid for t in self.targets]

    def start(self) -> None:
        env = {**os.environ, "HOTPATH_TOKEN": self.token}  # not on the command line
        for i in range(self.count):
            target = subprocess.Popen([sys.executable, "-c", TARGET], cwd=self.workdir)
            self.targets.append(target)
            with (self.workdir / f"agent-{i}.log").open("w") as log:
                agent = attach_agent(
                    target.pid,
                    self.url,
                    SERVICE,
                    "--window",
                    "1",
                    "--idle",
                    spool_dir=self.workdir / f"spool-{i}",
                    stderr=log,
                    env=env,
                )
            self.agents.append(agent)

    def stop(self) -> list[AgentSummary]:
        """SIGINT to every agent (each ships its last window and reports), then the targets."""
        for agent in self.agents:
            agent.send_signal(signal.SIGINT)
        for agent in self.agents:
            try:
                agent.wait(90)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        for target in self.targets:
            target.kill()
            target.wait()
        return [self._summary(i, a.returncode) for i, a in enumerate(self.agents)]

    def _summary(self, i: int, exit_code: int | None) -> AgentSummary:
        text = (self.workdir / f"agent-{i}.log").read_text(errors="replace")
        found = SUMMARY.search(text)
        if found is None:
            raise RuntimeError(f"agent {i} printed no summary (exit {exit_code}):\n{text[-2000:]}")
        n = {k: int(v) for k, v in found.groupdict().items()}
        return AgentSummary(
            pid=n["pid"],
            made=n["made"],
            samples=n["samples"],
            shipped=n["shipped"],
            spooled=n["spooled"],
            refused=n["refused"],
            dropped=n["dropped_full"] + n["dropped_memory"],
            left=n["left"],
            exit_code=exit_code,
        )


@contextlib.contextmanager
def database(backend: str, workdir: Path, label: str, admin_url: str) -> Iterator[str]:
    """An SQLite file in `workdir`, or a fresh PostgreSQL database dropped afterwards. No
    pooled admin connection: one kept across a PostgreSQL restart would be dead at the drop."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{label}.db'}"
        return
    name = f"hotpath_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# -- what the database holds ------------------------------------------------------------------


@dataclass
class Stored:
    windows: int = 0
    samples: int = 0
    same_key: int = 0  # rows beyond the first with one idempotency key
    same_start: int = 0  # rows beyond the first with one (series, start)
    gaps: int = 0  # windows not starting where the previous one ended


def stored_by_pid(db: str, service: str = SERVICE) -> dict[int, Stored]:
    query = (
        select(
            series_labels.c.value,
            windows.c.idempotency_key,
            windows.c.series_id,
            windows.c.start_us,
            windows.c.end_us,
            windows.c.sample_count,
        )
        .select_from(
            windows.join(series_labels, series_labels.c.series_id == windows.c.series_id).join(
                services, services.c.id == windows.c.service_id
            )
        )
        .where(services.c.name == service, series_labels.c.key == "pid")
    )
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    by_pid: dict[int, list] = {}
    for row in rows:
        by_pid.setdefault(int(row[0]), []).append(row)
    return {pid: tally(rows) for pid, rows in by_pid.items()}


def tally(rows: list) -> Stored:
    keys = Counter(r.idempotency_key for r in rows)
    starts = Counter((r.series_id, r.start_us) for r in rows)
    chain = sorted(rows, key=lambda r: r.start_us)
    # Consecutive windows share their boundary; 1 ms of slack for rounding on the wire.
    gaps = sum(abs(b.start_us - a.end_us) > 1_000 for a, b in itertools.pairwise(chain))
    return Stored(
        windows=len(rows),
        samples=sum(r.sample_count for r in rows),
        same_key=sum(c - 1 for c in keys.values()),
        same_start=sum(c - 1 for c in starts.values()),
        gaps=gaps,
    )


def wait_for_first_windows(db: str, pids: list[int], timeout_s: float = 90) -> None:
    """Until every agent has a window stored: py-spy and the agents take a while to start."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            have = stored_by_pid(db)
        except Exception:  # the server may still be creating its tables
            have = {}
        if all(have.get(pid, Stored()).windows for pid in pids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no window stored within {timeout_s:.0f} s for some of {pids}")
        time.sleep(0.5)


def count_windows(db: str, service: str) -> int:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(windows.join(services, services.c.id == windows.c.service_id))
                .where(services.c.name == service)
            ).scalar_one()
    finally:
        engine.dispose()


# -- the figures -----------------------------------------------------------------------------


HEADER = (
    "| agent pid | made | empty, not sent | shipped | had to wait | left | dropped | refused "
    "| stored | lost | doubled | gaps | samples made | samples stored |"
)


def report(summaries: list[AgentSummary], stored: dict[int, Stored]) -> tuple[int, int, bool]:
    """Prints the per-agent table; returns (lost, doubled, samples equal everywhere)."""
    say(HEADER)
    say("|" + " --- |" * (HEADER.count("|") - 1))
    lost_all = doubled_all = 0
    equal_all = True
    total: Counter[str] = Counter()
    for s in summaries:
        got = stored.get(s.pid, Stored())
        unsent = s.made - s.shipped - s.left - s.dropped - s.refused
        lost = max(0, s.shipped - got.windows)
        doubled = got.same_key + got.same_start + max(0, got.windows - s.shipped)
        equal = got.samples == s.samples
        lost_all, doubled_all = lost_all + lost, doubled_all + doubled
        equal_all = equal_all and equal
        row = {
            "made": s.made, "unsent": unsent, "shipped": s.shipped, "spooled": s.spooled,
            "left": s.left, "dropped": s.dropped, "refused": s.refused, "stored": got.windows,
            "lost": lost, "doubled": doubled, "gaps": got.gaps, "samples": s.samples,
            "stored_samples": got.samples,
        }  # fmt: skip
        total.update(row)
        say(f"| {s.pid} | " + " | ".join(f"{v:,}" for v in row.values()) + " |")
    say("| all | " + " | ".join(f"{v:,}" for v in total.values()) + " |")
    return lost_all, doubled_all, equal_all


# -- ingest's answers while PostgreSQL restarts ------------------------------------------------


def probe_window() -> wire.Window:
    profile = Profile()
    profile.add((Frame("main", "probe.py", 1), Frame("tick", "probe.py", 5)), 1)
    end = datetime.now(UTC)
    return wire.from_profile(
        profile,
        service=PROBE_SERVICE,
        idempotency_key=uuid.uuid4().hex,
        start=end - timedelta(seconds=1),
        end=end,
        sample_rate_hz=100,
        labels={"host": "probe", "pid": "0"},
    )


class IngestProbe(threading.Thread):
    """Posts a one-sample window every `every_s` (no retries) and keeps each answer."""

    def __init__(self, url: str, token: str, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.every_s = url, token, every_s
        self.answers: list[tuple[float, str]] = []  # (monotonic time sent, status or error)
        self._halt = threading.Event()

    def run(self) -> None:
        compressor = zstandard.ZstdCompressor()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Encoding": "zstd"}
        with httpx.Client(base_url=self.url, timeout=10, headers=headers) as client:
            while not self._halt.is_set():
                body = compressor.compress(probe_window().model_dump_json().encode())
                sent = time.monotonic()
                try:
                    outcome = str(client.post("/api/v1/windows", content=body).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.answers.append((sent, outcome))
                self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def acknowledged(self) -> int:
        return sum(outcome == "201" for _, outcome in self.answers)


@dataclass
class Outage:
    start: float  # monotonic: the first answer other than 201
    end: float  # the next 201
    outcomes: Counter[str]


def outages(answers: list[tuple[float, str]]) -> list[Outage]:
    """Runs of answers other than 201, each from its first answer to the next 201."""
    found: list[Outage] = []
    current: Outage | None = None
    for sent, outcome in answers:
        if outcome == "201":
            if current is not None:
                current.end = sent
                found.append(current)
                current = None
        else:
            if current is None:
                current = Outage(sent, sent, Counter())
            current.outcomes[outcome] += 1
    if current is not None:
        found.append(current)  # never answered 201 again: its end is its last answer
    return found


def postgres_cluster(admin_url: str) -> tuple[str, str]:
    """(version, name) of the local cluster on the admin URL's port, from pg_lsclusters."""
    port = make_url(admin_url).port or 5432
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    for line in listing.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, name
    raise RuntimeError(f"no local PostgreSQL cluster on port {port}:\n{listing}")


def restart_postgres(cluster: tuple[str, str]) -> float:
    """Seconds `pg_ctlcluster restart` took (fast mode: sessions are cut, nothing waits)."""
    began = time.monotonic()
    subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, capture_output=True)
    return time.monotonic() - began


# -- the two faults ----------------------------------------------------------------------------


@dataclass
class Outcome:
    fault: str
    backend: str
    faults: int
    made: int
    stored: int
    lost: int
    doubled: int
    samples_equal: bool
    unavailable: str  # how long the server or its ingest was away per fault


def with_fleet(backend: str, args: argparse.Namespace, label: str, body) -> Outcome:  # type: ignore[no-untyped-def]
    """A server on a fresh database, a token, the fleet; `body(server, fleet, db)` applies the
    fault and returns (fault count, unavailability text); then the agents stop and are counted."""
    workdir = Path(tempfile.mkdtemp(prefix=f"hotpath-faults-{label}-"))
    try:
        with database(backend, workdir, f"faults_{label}", args.pg_admin_url) as db:
            server = Server(db, workdir)
            server.start()
            fleet: Fleet | None = None
            try:
                fleet = Fleet(args.agents, server.url, make_token(db, "ingest,read"), workdir)
                fleet.start()
                wait_for_first_windows(db, fleet.pids)
                faults, unavailable = body(server, fleet, db)
                time.sleep(args.settle)  # the server up a while before the agents stop
                summaries = fleet.stop()
            finally:
                if fleet is not None:
                    for process in [*fleet.agents, *fleet.targets]:
                        if process.poll() is None:
                            process.kill()
                server.stop()
            stored = stored_by_pid(db)
            lost, doubled, equal = report(summaries, stored)
            refused = sum(s.refused for s in summaries)
            say(
                f"agents' exit codes {[s.exit_code for s in summaries]}; refused {refused}; "
                f"Tracebacks in the server's log {server.tracebacks()}"
            )
            outcome = Outcome(
                label,
                backend,
                faults,
                sum(s.made for s in summaries),
                sum(stored.get(s.pid, Stored()).windows for s in summaries),
                lost,
                doubled,
                equal,
                unavailable,
            )
    except BaseException:
        say(f"failed: the logs are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return outcome


def kill_cycles(backend: str, args: argparse.Namespace) -> Outcome:
    rng = random.Random(args.seed)

    def fault(server: Server, _fleet: Fleet, _db: str) -> tuple[int, str]:
        down = []
        for _ in range(args.kills):
            time.sleep(rng.uniform(args.min_gap, args.max_gap))
            server.kill()
            down.append(server.start())
        text = f"{sum(down) / len(down):.1f} s mean, {max(down):.1f} s max" if down else "-"
        say(f"server SIGKILLed and started again {len(down)} times: down {text} each")
        return len(down), text

    say(f"\n## {args.kills} server kills on {backend}, {args.agents} agents")
    return with_fleet(backend, args, "kill", fault)


def postgres_restarts(args: argparse.Namespace) -> Outcome:
    rng = random.Random(args.seed + 1)
    cluster = postgres_cluster(args.pg_admin_url)

    def fault(server: Server, fleet: Fleet, db: str) -> tuple[int, str]:
        probe = IngestProbe(server.url, fleet.token)
        probe.start()
        restarts = []
        try:
            time.sleep(2)
            for _ in range(args.pg_restarts):
                time.sleep(rng.uniform(args.min_gap, args.max_gap))
                began = time.monotonic()
                restarts.append((began, restart_postgres(cluster)))
            time.sleep(args.settle)
        finally:
            probe.stop()
        runs = outages(probe.answers)
        for i, (_, took) in enumerate(restarts, 1):
            say(f"restart {i}: pg_ctlcluster {' '.join(cluster)} restart took {took:.1f} s")
        for run in runs:
            after = max((b for b, _ in restarts if b <= run.start + 1), default=run.start)
            say(
                f"  ingest answered other than 201 for {run.end - run.start:.1f} s, from "
                f"{run.start - after:+.1f} s after a restart began: {dict(run.outcomes)}"
            )
        acked, kept = probe.acknowledged(), count_windows(db, PROBE_SERVICE)
        say(
            f"probe: {len(probe.answers)} posts, {acked} acknowledged (201), {kept} stored: "
            f"{'exact' if acked == kept else 'MISMATCH'}"
        )
        spans = [run.end - run.start for run in runs]
        text = (
            f"{len(runs)} outages, {max(spans):.1f} s max ({'+'.join(sorted(_outcomes(runs)))})"
            if runs
            else "never"
        )
        return len(restarts), text

    say(f"\n## {args.pg_restarts} PostgreSQL restarts, {args.agents} agents")
    return with_fleet("postgresql", args, "pgrestart", fault)


def _outcomes(runs: list[Outage]) -> set[str]:
    return {outcome for run in runs for outcome in run.outcomes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--kills", type=int, default=20, help="server SIGKILLs per database")
    parser.add_argument("--pg-restarts", type=int, default=3, help="0: none")
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--min-gap", type=float, default=2.0, help="s between faults, at least")
    parser.add_argument("--max-gap", type=float, default=5.0, help="s between faults, at most")
    parser.add_argument("--settle", type=float, default=5.0, help="s up before agents stop")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)

    began = time.monotonic()
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = [kill_cycles(backend, args) for backend in backends if args.kills]
    if "postgresql" in backends and args.pg_restarts:
        results.append(postgres_restarts(args))

    say(f"\n## Summary ({time.monotonic() - began:.0f} s)")
    say(
        "| fault | database | faults | windows made | stored | lost | doubled "
        "| samples made = stored | unavailable per fault |"
    )
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        say(
            f"| {r.fault} | {r.backend} | {r.faults} | {r.made:,} | {r.stored:,} | {r.lost} "
            f"| {r.doubled} | {'yes' if r.samples_equal else 'NO'} | {r.unavailable} |"
        )
    bad = [r for r in results if r.lost or r.doubled or not r.samples_equal]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
