"""The profile storage contract: what the HTTP layer and the pages may ask of a backend.

A **series** is keyed by (tenant, service, profile type, labels); a backend stores **pieces**
of series (one span of time, its weighted stacks and its hot-path histograms) and answers
**selections** (tenant, service, type, time range, label filter) with one merged, typed
`Profile`. Two types are never merged: every read is of one type. Every read and write is
inside one tenant.

`put` takes stacks in an interned batch form (frames once, stacks as indexes into them,
counts), because the agent's window already is that form: converting a window to a `Profile`
and back to store it cost 5.4 ms per realistic window (240 stacks, 280 frames), against
0.1 µs to take its lists. A `Profile` (Pyroscope's `/ingest`, uploads) converts with one pass.

`tests/test_storage_contract.py` is the suite every backend must pass; `hotpath.server.storage.sql`
is the SQLite/PostgreSQL backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from hotpath.profiler.formats import window as wire
from hotpath.profiler.hotpath.histogram import Histogram
from hotpath.profiler.model import CPU, WALL, Frame, Profile, ProfileType, profile_type
from hotpath.server.storage.memory import MemorySample

# One tenant until tokens name others (the trust issue); `server/tenancy.py` supplies it.
DEFAULT_TENANT = "default"


class UnknownService(LookupError):
    """The tenant has no service of that name (the HTTP layer answers 404)."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"unknown service {service!r}")


@dataclass(frozen=True)
class SeriesKey:
    tenant: str
    service: str
    type: ProfileType
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Selection:
    """What a read covers: pieces of one type of one service whose start lies in
    [start, end), of the series whose labels include every `labels` pair."""

    tenant: str
    service: str
    type: ProfileType
    start: datetime
    end: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HotPathCalls:
    """The calls of one hot path during a piece: a latency histogram delta."""

    name: str
    calls: Histogram
    budget_ns: int | None = None
    function: str | None = None  # "qualname (file)", as the sampler names the timed code


@dataclass(frozen=True)
class Piece:
    """One span of one series: what `put` stores, in one transaction or not at all.

    `stacks[i]` lists indexes into `frames`, root first, and weighs `counts[i]` (in the
    type's unit). `idempotency_key` is unique per (tenant, service): a piece put twice under
    one key is stored once.
    """

    key: SeriesKey
    start: datetime
    end: datetime
    sample_rate_hz: float
    frames: Sequence[tuple[str, str, int]]
    stacks: Sequence[Sequence[int]]
    counts: Sequence[int]
    idempotency_key: str
    hot_paths: Sequence[HotPathCalls] = ()
    memory: MemorySample | None = None  # the process's memory at `end` (MemoryStore reads it)

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def from_window(cls, window: wire.Window, tenant: str) -> Piece:
        """The agent's window as it came; no copy of its stacks."""
        return cls(
            key=SeriesKey(tenant, window.service, window_type(window), window.labels),
            start=window.start,
            end=window.end,
            sample_rate_hz=window.sample_rate_hz,
            frames=window.frames,
            stacks=window.stacks,
            counts=window.counts,
            idempotency_key=window.idempotency_key,
            hot_paths=[
                HotPathCalls(h.name, Histogram.from_wire(h.histogram), h.budget_ns, h.function)
                for h in window.hot_paths
            ],
            memory=_memory(window.process),
        )

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        key: SeriesKey,
        *,
        start: datetime,
        end: datetime,
        sample_rate_hz: float,
        idempotency_key: str,
    ) -> Piece:
        """A profile's stacks in the interned form (empty stacks carry no frame: dropped)."""
        if profile.type != key.type:
            raise ValueError(f"a {profile.type} profile cannot be put in a {key.type} series")
        index: dict[Frame, int] = {}
        stacks: list[list[int]] = []
        counts: list[int] = []
        for stack, count in profile.samples.items():
            if stack and count:
                stacks.append([index.setdefault(f, len(index)) for f in stack])
                counts.append(count)
        return cls(
            key=key,
            start=start,
            end=end,
            sample_rate_hz=sample_rate_hz,
            frames=[(f.name, f.file, f.line) for f in index],
            stacks=stacks,
            counts=counts,
            idempotency_key=idempotency_key,
        )


def _memory(process: wire.ProcessMemoryWindow | None) -> MemorySample | None:
    if process is None:
        return None
    return MemorySample(process.pid, process.rss_bytes, process.pss_bytes, process.uss_bytes)


def window_type(window: wire.Window) -> ProfileType:
    """The window's type; agents from before types marked wall-clock windows only with the
    label `sampling=wall`, so a window that does not say its type but has it is wall."""
    if "type" not in window.model_fields_set and window.labels.get("sampling") == WALL.id:
        return WALL
    return profile_type(window.type)


@dataclass(frozen=True)
class IngestResult:
    window_id: int | None  # None for a duplicate
    duplicate: bool
    samples: int  # the piece's total weight


@dataclass(frozen=True)
class Limits:
    """Cardinality per service, enforced by `put`. A series or hot-path name counts while it
    is *active*: a piece of it arrived within `active_window` (by the server's clock: a
    sender chooses its data's times), as Prometheus-style stores count the series in their
    head. The agent labels each process with its pid, so counting every series ever made
    would refuse a service's new processes for good after enough restarts; counting the
    active ones still bounds how fast a service can grow. Existing series and names are
    always accepted; only new ones are refused or dropped."""

    series_per_service: int = 1_000
    hot_paths_per_service: int = 200
    active_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class TypeSummary:
    type: ProfileType
    last_seen: datetime
    total: int  # all time, in the type's unit
    series: int


@dataclass(frozen=True)
class ServiceSummary:
    name: str
    last_seen: datetime
    series: int
    types: tuple[TypeSummary, ...]  # the types the service has, in PROFILE_TYPES order

    @property
    def samples(self) -> int:
        """All-time samples of the default type (CPU), the figure the services list shows."""
        return sum(t.total for t in self.types if t.type == CPU)


@dataclass(frozen=True)
class Timeline:
    step_s: int  # 60 up to two days, else 3600
    lines: dict[str, dict[int, int]]  # line name -> {unix seconds of the step: weight}


@dataclass(frozen=True)
class Retention:
    """How long each level is kept: raw pieces, then minute, hour and day roll-ups."""

    raw: timedelta = timedelta(days=7)
    minute: timedelta = timedelta(days=30)
    hour: timedelta = timedelta(days=365)
    day: timedelta = timedelta(days=5 * 365)

    def by_resolution(self) -> dict[int, timedelta]:
        """Keyed by the level's resolution in seconds, 0 for raw pieces."""
        return {0: self.raw, 60: self.minute, 3600: self.hour, 86400: self.day}


# Per hot path: its budget (the latest one shipped) and its merged calls.
HotPathHistograms = dict[str, tuple[int | None, Histogram]]


class ProfileStore(Protocol):
    """Profiles and hot-path histograms, by series. Reads of a service the tenant does not
    have raise `UnknownService`; an empty selection of a known one answers empty."""

    def put(self, piece: Piece) -> IngestResult:
        """Store a piece and its hot-path calls, or recognise its key as a duplicate.

        Raises `SeriesLimitExceeded` (errors.py), storing nothing, when the piece would make
        a new series beyond `Limits.series_per_service`, and `HotPathLimitExceeded`, storing
        nothing, when its hot paths would bring new names beyond
        `Limits.hot_paths_per_service` (naming them: the agent sends the window again without
        them, so its stacks are kept)."""
        ...

    def profile(self, selection: Selection) -> Profile:
        """The merged profile of the selection, typed, with the series' sample rate."""
        ...

    def sample_count(self, selection: Selection) -> int:
        """What `profile(selection).total` is, without decoding a stack."""
        ...

    def window_profiles(self, selection: Selection, limit: int = 120) -> list[Profile]:
        """Up to `limit` raw pieces of the selection, evenly spread over it, each as its own
        profile (the window-to-window variability a diff needs); fewer past raw retention."""
        ...

    def services(self, tenant: str) -> list[ServiceSummary]:
        """The tenant's services by name, with the types each has."""
        ...

    def profile_types(self, tenant: str, service: str) -> list[ProfileType]:
        """The types `service` has, in PROFILE_TYPES order."""
        ...

    def label_keys(self, tenant: str, service: str, type: ProfileType | None = None) -> list[str]:
        """The label keys of the service's series (of one type if given), sorted."""
        ...

    def timeline(self, selection: Selection, by: str | None = None) -> Timeline:
        """Weight per step, one line per value of label `by` (or one line, "all")."""
        ...

    def hot_path_histograms(self, selection: Selection) -> HotPathHistograms:
        """Per hot path, its budget and its calls merged over the selection."""
        ...

    def hot_path_functions(self, selection: Selection) -> dict[str, str]:
        """Per hot path, the function it times, as last shipped in the selection."""
        ...

    def hot_path_timeline(
        self, selection: Selection, name: str, step_s: int
    ) -> list[tuple[datetime, Histogram]]:
        """The calls of one hot path merged per `step_s` bucket; empty buckets left out.
        Steps of whole hours reach past raw retention."""
        ...

    def close(self) -> None: ...
