"""The benchmark-run store contract: runs uploaded by `hotpath gate` and their history.

A run is the pytest-benchmark JSON exactly as uploaded, with one row of summary statistics
per benchmark that history charts and change-point detection read without the raw bytes.
Everything belongs to a tenant. Guarantees every backend gives
(`tests/test_storage_contract_alerts.py` checks them): a run is stored whole or not at all;
the same bytes uploaded again for the same tenant, project and branch return the run already
stored (`created=False`), even when two servers receive them at once; lists are oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hotpath.profiler.formats.pytest_benchmark import BenchRun
from hotpath.server.storage.errors import UnknownRun

STATS = ("min", "median", "mean")


@dataclass(frozen=True)
class RunMeta:
    id: int
    project: str
    branch: str
    commit: str | None
    run_time: datetime
    uploaded: datetime
    source: str
    machine: str | None
    benchmarks: int
    raw_size: int


@dataclass(frozen=True)
class StoredRun:
    meta: RunMeta
    created: bool  # False: the same bytes were already stored for this project and branch


@dataclass(frozen=True)
class ProjectSummary:
    name: str
    branches: list[str]
    runs: int
    last_upload: datetime


@dataclass(frozen=True)
class Point:
    """One benchmark in one run; times in seconds."""

    run_id: int
    run_time: datetime
    commit: str | None
    fullname: str
    min: float
    median: float
    mean: float
    stddev: float
    rounds: int

    def stat(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class ProfileSeries:
    """A benchmark profile uploaded by `hotpath gate --profile` (a series of its service)."""

    labels: dict[str, str]
    first_seen: datetime
    last_seen: datetime


class BenchStore(Protocol):
    def add_run(
        self,
        tenant: str,
        project: str,
        branch: str,
        commit: str | None,
        data: bytes,
        run: BenchRun,
    ) -> StoredRun:
        """Store `data` (parsed as `run`); `commit` overrides the run's own commit id."""
        ...

    def run(self, tenant: str, run_id: int) -> RunMeta:
        """`UnknownRun` when the tenant has no such run."""
        ...

    def raw(self, tenant: str, run_id: int) -> bytes:
        """The bytes as uploaded; `UnknownRun` when the tenant has no such run."""
        ...

    def projects(self, tenant: str) -> list[ProjectSummary]: ...

    def branches(self, tenant: str, project: str) -> list[str]: ...

    def runs(
        self, tenant: str, project: str, branch: str, limit: int | None = None
    ) -> list[RunMeta]:
        """The newest `limit` runs of a branch, oldest first."""
        ...

    def history(
        self,
        tenant: str,
        project: str,
        branch: str,
        fullname: str | None = None,
        limit: int | None = None,
    ) -> list[Point]:
        """Points of one benchmark (all when `fullname` is None) over the newest `limit` runs
        of a branch, oldest first."""
        ...

    def profiles(
        self, tenant: str, service: str, benchmark: str | None = None
    ) -> list[ProfileSeries]:
        """The series `hotpath gate --profile` uploaded to `service` (of one benchmark when
        given, by its `benchmark` label), oldest first."""
        ...


__all__ = [
    "STATS",
    "BenchStore",
    "Point",
    "ProfileSeries",
    "ProjectSummary",
    "RunMeta",
    "StoredRun",
    "UnknownRun",
]
