"""The one profile model every format converts to and from.

A profile is a multiset of call stacks: each distinct stack (root first) carries a weight, in
one unit (samples for a sampler, nanoseconds, bytes, allocations). Frames are value objects, so
Python's own hashing interns identical stacks; the server interns them again for storage.
Transforms (merge, filter, per-function totals) are plain functions over this model, in the
spirit of pyinstrument's processors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Unit(StrEnum):
    SAMPLES = "samples"
    NANOSECONDS = "nanoseconds"
    BYTES = "bytes"
    ALLOCATIONS = "allocations"


@dataclass(frozen=True, slots=True)
class ProfileType:
    """What a profile measured, shaped like Pyroscope's profile types: `name` (what ran:
    process_cpu, wall, memory), `sample_type` (what each weight counts) and `unit`.

    The type is part of a profile's identity: two profiles of different types are never
    merged or compared. `id` is the short name users type (`--type wall`, `type=wall`).
    Time profiles (cpu, wall) are weighted in samples at the profile's sample rate, so a
    weight times the sampling period is time; memory profiles in bytes or allocations.
    """

    id: str
    name: str
    sample_type: str
    unit: Unit
    description: str

    def __str__(self) -> str:
        return self.id


CPU = ProfileType("cpu", "process_cpu", "cpu", Unit.SAMPLES, "CPU time (on-CPU samples)")
WALL = ProfileType("wall", "wall", "wall", Unit.SAMPLES, "wall-clock time (idle included)")
ALLOC_BYTES = ProfileType("alloc_bytes", "memory", "alloc_space", Unit.BYTES, "bytes allocated")
ALLOC_COUNT = ProfileType(
    "alloc_count", "memory", "alloc_objects", Unit.ALLOCATIONS, "allocations made"
)
HELD_BYTES = ProfileType(
    "held_bytes", "memory", "inuse_space", Unit.BYTES, "bytes still held (allocated, not freed)"
)

PROFILE_TYPES: dict[str, ProfileType] = {
    t.id: t for t in (CPU, WALL, ALLOC_BYTES, ALLOC_COUNT, HELD_BYTES)
}


def profile_type(type_id: str) -> ProfileType:
    """The type named `type_id`; ValueError naming the known ones otherwise."""
    try:
        return PROFILE_TYPES[type_id]
    except KeyError:
        known = ", ".join(PROFILE_TYPES)
        raise ValueError(f"unknown profile type {type_id!r}: known types are {known}") from None


@dataclass(frozen=True, slots=True, order=True)
class Frame:
    """One function in a stack. `line` is the function's first line when known, else 0."""

    name: str
    file: str = ""
    line: int = 0

    @property
    def function_key(self) -> tuple[str, str]:
        """Identity of the function regardless of the line, for self/total per function."""
        return (self.name, self.file)

    def __str__(self) -> str:
        if not self.file:
            return self.name
        return (
            f"{self.name} ({self.file}:{self.line})" if self.line else f"{self.name} ({self.file})"
        )


Stack = tuple[Frame, ...]


@dataclass
class Profile:
    """Weights per stack, plus what is needed to interpret and merge them."""

    samples: Counter[Stack] = field(default_factory=Counter)
    type: ProfileType = CPU
    sample_rate_hz: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def unit(self) -> Unit:
        """How a weight is counted; the type decides it."""
        return self.type.unit

    def empty_like(self) -> Profile:
        """A profile with no samples and this one's unit, rate, span and labels (for
        transforms that keep or rewrite some of the stacks)."""
        return Profile(
            type=self.type,
            sample_rate_hz=self.sample_rate_hz,
            start=self.start,
            end=self.end,
            labels=dict(self.labels),
        )

    def add(self, stack: Iterable[Frame], weight: int = 1) -> None:
        if weight < 0:
            raise ValueError("stack weights cannot be negative")
        if weight:
            self.samples[tuple(stack)] += weight

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    @property
    def frames(self) -> list[Frame]:
        """Distinct frames in first-seen order (stable for exports)."""
        seen: dict[Frame, None] = {}
        for stack in self.samples:
            for frame in stack:
                seen.setdefault(frame, None)
        return list(seen)

    def stacks_by_weight(self) -> list[tuple[Stack, int]]:
        """Heaviest stacks first; ties broken by the stack itself so output is deterministic."""
        return sorted(self.samples.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True, slots=True)
class FunctionStats:
    name: str
    file: str
    self_weight: int
    total_weight: int


def merge(profiles: Iterable[Profile]) -> Profile:
    """Sum the weights of several profiles of the same type; the time span covers them all.
    Profiles of different types are never merged (ValueError)."""
    merged = Profile()
    first = True
    for profile in profiles:
        if first:
            merged.type, merged.sample_rate_hz = profile.type, profile.sample_rate_hz
            merged.labels = dict(profile.labels)
            first = False
        elif profile.type != merged.type:
            raise ValueError(f"cannot merge a {profile.type} profile into a {merged.type} one")
        else:
            if profile.sample_rate_hz != merged.sample_rate_hz:
                merged.sample_rate_hz = None  # mixed rates: counts stay exact, time is approximate
            merged.labels = {k: v for k, v in merged.labels.items() if profile.labels.get(k) == v}
        merged.samples.update(profile.samples)
        merged.start = _earliest(merged.start, profile.start)
        merged.end = _latest(merged.end, profile.end)
    return merged


def function_stats(profile: Profile) -> list[FunctionStats]:
    """Self and total (inclusive) weight per function, heaviest total first.

    A recursive function counts once per stack in its total, so totals never exceed the
    profile's total weight.
    """
    self_w: Counter[tuple[str, str]] = Counter()
    total_w: Counter[tuple[str, str]] = Counter()
    for stack, weight in profile.samples.items():
        if not stack:
            continue
        self_w[stack[-1].function_key] += weight
        for key in {frame.function_key for frame in stack}:
            total_w[key] += weight
    return sorted(
        (
            FunctionStats(name, file, self_w[(name, file)], total)
            for (name, file), total in total_w.items()
        ),
        key=lambda s: (-s.total_weight, s.name, s.file),
    )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
