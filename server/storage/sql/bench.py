"""The SQL benchmark-run store (`server/storage/bench.py` is its contract).

A run is written in one transaction or not at all: the uploaded bytes, zstd-compressed, and
one row of summary statistics per benchmark, which the history charts and change-point
detection read without decompressing anything. The sha256 of the bytes is unique per tenant,
project and branch, so uploading the same file again returns the run already stored, even when two
servers receive it at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime

import zstandard
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from hotpath.profiler.formats.pytest_benchmark import BenchRun
from hotpath.server.storage.bench import (
    Point,
    ProfileSeries,
    ProjectSummary,
    RunMeta,
    StoredRun,
)
from hotpath.server.storage.errors import UnknownRun
from hotpath.server.storage.sql.database import read_snapshot, write_transaction
from hotpath.server.storage.sql.tables import bench_results, bench_runs, series, services
from hotpath.server.storage.sql.timeplan import from_us


def _to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_us(micros: int) -> datetime:
    return from_us(micros)  # robust to a time no datetime holds


class SqlBenchStore:
    """`BenchStore` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writing ------------------------------------------------------------------------------

    def add_run(
        self,
        tenant: str,
        project: str,
        branch: str,
        commit: str | None,
        data: bytes,
        run: BenchRun,
    ) -> StoredRun:
        digest = hashlib.sha256(data).digest()
        existing = self._by_digest(tenant, project, branch, digest)
        if existing is not None:
            return StoredRun(existing, created=False)
        now = datetime.now(UTC)
        row = {
            "tenant": tenant,
            "project": project,
            "branch": branch,
            "commit_id": commit or run.commit_id(),
            "run_us": _to_us(run.datetime or now),
            "uploaded_us": _to_us(now),
            "digest": digest,
            "source": run.source[:255],
            "machine": run.machine_key(),
            "benchmarks": len(run.benchmarks),
            "raw_size": len(data),
            "raw_zstd": zstandard.ZstdCompressor(level=9).compress(data),
        }
        try:
            with write_transaction(self.engine) as conn:
                run_id = conn.execute(
                    insert(bench_runs).returning(bench_runs.c.id), row
                ).scalar_one()
                conn.execute(insert(bench_results), list(_result_rows(run_id, run)))
        except IntegrityError:
            # Lost a race with a concurrent upload of the same bytes: that copy is the one kept.
            existing = self._by_digest(tenant, project, branch, digest)
            if existing is None:
                raise
            return StoredRun(existing, created=False)
        return StoredRun(self.run(tenant, run_id), created=True)

    # -- reading ------------------------------------------------------------------------------

    def _by_digest(self, tenant: str, project: str, branch: str, digest: bytes) -> RunMeta | None:
        with read_snapshot(self.engine) as conn:
            row = conn.execute(
                _meta_query().where(
                    *_branch_of(tenant, project, branch), bench_runs.c.digest == digest
                )
            ).one_or_none()
        return _meta(row) if row else None

    def run(self, tenant: str, run_id: int) -> RunMeta:
        with read_snapshot(self.engine) as conn:
            row = conn.execute(
                _meta_query().where(bench_runs.c.tenant == tenant, bench_runs.c.id == run_id)
            ).one_or_none()
        if row is None:
            raise UnknownRun(run_id)
        return _meta(row)

    def raw(self, tenant: str, run_id: int) -> bytes:
        with read_snapshot(self.engine) as conn:
            blob = conn.execute(
                select(bench_runs.c.raw_zstd).where(
                    bench_runs.c.tenant == tenant, bench_runs.c.id == run_id
                )
            ).scalar_one_or_none()
        if blob is None:
            raise UnknownRun(run_id)
        return zstandard.ZstdDecompressor().decompress(blob)

    def projects(self, tenant: str) -> list[ProjectSummary]:
        with read_snapshot(self.engine) as conn:
            rows = conn.execute(
                select(
                    bench_runs.c.project,
                    bench_runs.c.branch,
                    func.count(),
                    func.max(bench_runs.c.uploaded_us),
                )
                .where(bench_runs.c.tenant == tenant)
                .group_by(bench_runs.c.project, bench_runs.c.branch)
                .order_by(bench_runs.c.project, bench_runs.c.branch)
            ).all()
        by_project: dict[str, tuple[list[str], int, int]] = {}
        for project, branch, count, last in rows:
            branches, runs, latest = by_project.get(project, ([], 0, 0))
            by_project[project] = ([*branches, branch], runs + count, max(latest, last))
        return [
            ProjectSummary(name, branches, runs, _from_us(last))
            for name, (branches, runs, last) in by_project.items()
        ]

    def branches(self, tenant: str, project: str) -> list[str]:
        with read_snapshot(self.engine) as conn:
            return list(
                conn.execute(
                    select(bench_runs.c.branch)
                    .where(bench_runs.c.tenant == tenant, bench_runs.c.project == project)
                    .distinct()
                    .order_by(bench_runs.c.branch)
                ).scalars()
            )

    def runs(
        self, tenant: str, project: str, branch: str, limit: int | None = None
    ) -> list[RunMeta]:
        query = (
            _meta_query()
            .where(*_branch_of(tenant, project, branch))
            .order_by(bench_runs.c.run_us.desc(), bench_runs.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with read_snapshot(self.engine) as conn:
            rows = conn.execute(query).all()
        return [_meta(row) for row in reversed(rows)]

    def history(
        self,
        tenant: str,
        project: str,
        branch: str,
        fullname: str | None = None,
        limit: int | None = None,
    ) -> list[Point]:
        with read_snapshot(self.engine) as conn:
            run_ids = _newest_run_ids(conn, tenant, project, branch, limit)
            if not run_ids:
                return []
            query = (
                select(
                    bench_results.c.run_id,
                    bench_runs.c.run_us,
                    bench_runs.c.commit_id,
                    bench_results.c.fullname,
                    bench_results.c.min_s,
                    bench_results.c.median_s,
                    bench_results.c.mean_s,
                    bench_results.c.stddev_s,
                    bench_results.c.rounds,
                )
                .join(bench_runs, bench_runs.c.id == bench_results.c.run_id)
                .where(bench_results.c.run_id.in_(run_ids))
                .order_by(bench_runs.c.run_us, bench_runs.c.id)
            )
            if fullname is not None:
                query = query.where(bench_results.c.fullname == fullname)
            rows = conn.execute(query).all()
        return [Point(r[0], _from_us(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def profiles(
        self, tenant: str, service: str, benchmark: str | None = None
    ) -> list[ProfileSeries]:
        with read_snapshot(self.engine) as conn:
            rows = conn.execute(
                select(series.c.labels, series.c.first_seen_us, series.c.last_seen_us)
                .join(services, services.c.id == series.c.service_id)
                .where(services.c.tenant == tenant, services.c.name == service)
                .order_by(series.c.first_seen_us)
            ).all()
        found = []
        for labels_json, first, last in rows:
            labels = json.loads(labels_json)
            if benchmark is None or labels.get("benchmark") == benchmark:
                found.append(ProfileSeries(labels, _from_us(first), _from_us(last)))
        return found


def _branch_of(tenant: str, project: str, branch: str) -> tuple:  # type: ignore[type-arg]
    return (
        bench_runs.c.tenant == tenant,
        bench_runs.c.project == project,
        bench_runs.c.branch == branch,
    )


def _newest_run_ids(
    conn: Connection, tenant: str, project: str, branch: str, limit: int | None
) -> list[int]:
    query = (
        select(bench_runs.c.id)
        .where(*_branch_of(tenant, project, branch))
        .order_by(bench_runs.c.run_us.desc(), bench_runs.c.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def _meta_query():  # type: ignore[no-untyped-def]
    return select(
        bench_runs.c.id,
        bench_runs.c.project,
        bench_runs.c.branch,
        bench_runs.c.commit_id,
        bench_runs.c.run_us,
        bench_runs.c.uploaded_us,
        bench_runs.c.source,
        bench_runs.c.machine,
        bench_runs.c.benchmarks,
        bench_runs.c.raw_size,
    )


def _meta(row) -> RunMeta:  # type: ignore[no-untyped-def]
    return RunMeta(
        id=row.id,
        project=row.project,
        branch=row.branch,
        commit=row.commit_id,
        run_time=_from_us(row.run_us),
        uploaded=_from_us(row.uploaded_us),
        source=row.source,
        machine=row.machine,
        benchmarks=row.benchmarks,
        raw_size=row.raw_size,
    )


def _result_rows(run_id: int, run: BenchRun) -> Iterable[dict[str, object]]:
    for bench in run.benchmarks:
        yield {
            "run_id": run_id,
            "fullname": bench.fullname,
            "name": bench.name,
            "bench_group": bench.group,
            "min_s": bench.min,
            "max_s": bench.max,
            "mean_s": bench.mean,
            "median_s": bench.median,
            "stddev_s": bench.stddev,
            "iqr_s": bench.iqr if bench.iqr is not None else 0.0,
            "rounds": bench.rounds,
            "iterations": bench.iterations,
        }
