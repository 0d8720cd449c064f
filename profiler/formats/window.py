"""The agent's wire format: one sampling window of one process, as the agent ships it.

Frames are sent once per window and stacks refer to them by index, so a window of a few
hundred distinct stacks 20-60 frames deep stays small before compression. The same pydantic
model validates what the server receives; `parse` counts a body's JSON values before parsing it
and `check_limits` enforces the size limits that keep one window from exhausting the server,
with messages that name the limit. Integers are bounded by the columns they are stored in;
code-generated names (frames, files, a hot path's function) have their control characters
escaped, names people type (labels, hot paths) must have none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    FailFast,
    Field,
    field_validator,
    model_validator,
)

from hotpath.profiler.hotpath.histogram import parse_wire
from hotpath.profiler.model import CPU, Frame, Profile, Unit, profile_type

FORMAT_ID = "hotpath.window/1"
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
LABEL_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
# The columns integers are stored in (server/storage/sql/tables.py): a frame's line is an
# INTEGER (int4 on PostgreSQL), budgets and counts are BIGINT.
MAX_LINE = 2**31 - 1
MAX_INT64 = 2**63 - 1
# Control characters, and lone surrogates (no UTF-8 form): PostgreSQL stores neither NUL nor
# a surrogate, SQLite stores both; escaped, a name reads the same from either.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class WindowLimits:
    max_stacks: int = 100_000
    max_frames: int = 200_000
    max_frames_per_stack: int = 1_024
    max_frame_name_chars: int = 1_024
    max_labels: int = 32
    max_label_value_chars: int = 256
    max_samples_per_stack: int = 10**9
    max_hot_paths: int = 64
    # Counted in the body before it is parsed, to bound what decoding it costs (measured by
    # benchmarks/hostile_memory.py): JSON values (numbers, strings, lists, objects), up to
    # ~70 B each parsed, and object members (key: value), up to ~250 B each. A busy real
    # window (a web server sampled at 1 kHz for 10 s) holds ~30k values and ~20 members.
    max_values: int = 1_000_000
    max_members: int = 100_000


class LimitExceeded(ValueError):
    """A window over one of the `WindowLimits`; `limit` names it."""

    def __init__(self, limit: str, actual: int, maximum: int, where: str = "") -> None:
        self.limit, self.actual, self.maximum = limit, actual, maximum
        suffix = f" ({where})" if where else ""
        super().__init__(f"{limit} is {maximum}, got {actual}{suffix}")


def clean_name(name: str) -> str:
    """`name` with its control characters and lone surrogates as visible escapes (`\\x00`,
    `\\ud800`): code generators and exec'd templates make such names, and one must not keep a
    service's profiles out of the database."""
    if _UNPRINTABLE.search(name) is None:
        return name
    return _UNPRINTABLE.sub(lambda m: ascii(m[0])[1:-1], name)


def printable(name: str) -> str:
    """`name` if it holds no control character or lone surrogate, else ValueError: for names
    people type and look things up by (label values, hot paths), where an escaped name would
    be one nobody typed."""
    if _UNPRINTABLE.search(name):
        raise ValueError(f"{name!r} holds a control character")
    return name


PrintableName = Annotated[str, AfterValidator(printable)]


WireFrame = tuple[str, str, Annotated[int, Field(ge=0, le=MAX_LINE)]]


def _no_extra(model: BaseModel) -> None:
    """Unknown fields are refused with one error: pydantic's `extra="forbid"` makes one per
    field (~500 B each), and a body of a million unknown fields would cost the server 0.5 GB."""
    if model.model_extra:
        names = list(model.model_extra)
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise ValueError(f"unknown fields {', '.join(map(repr, names[:3]))}{more}")


class HotPathWindow(BaseModel):
    """The calls of one hot path during the window: a histogram delta (`Histogram.to_wire`)."""

    model_config = ConfigDict(extra="allow")  # and refused by _known_fields

    name: Annotated[str, Field(min_length=1, max_length=112), AfterValidator(printable)]
    budget_ns: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None
    # The timed code as the sampler names its frames, "qualname (filename)": the server finds
    # the hot path in the sampled stacks by it (budget attribution), so it is cleaned as they are.
    function: (
        Annotated[str, Field(min_length=1, max_length=600), AfterValidator(clean_name)] | None
    ) = None
    histogram: dict[str, Any]

    @field_validator("histogram")
    @classmethod
    def _valid_histogram(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Plain Python (the agent has no numpy); ValueError becomes a 422 naming the problem.
        buckets, sum_ns, max_ns = parse_wire(value)
        # Far above any real window (2**40 calls; 2**53 ns is 104 days), so that the hour rows
        # merging many windows stay within BIGINT.
        calls = sum(buckets.values())
        for what, got, most in (
            ("count", calls, 2**40),
            ("sum", sum_ns, 2**53),
            ("max", max_ns, 2**53),
        ):
            if got > most:
                raise ValueError(f"histogram {what} {got} is over {most} for one window")
        return value

    @model_validator(mode="after")
    def _known_fields(self) -> HotPathWindow:
        _no_extra(self)
        return self


# Far above any machine's memory (1 PiB), well inside BIGINT.
MAX_MEMORY_BYTES = 2**50


class ProcessMemoryWindow(BaseModel):
    """The sampled process's memory at the window's end, read from /proc by the agent: RSS
    always, PSS and USS (private pages) when smaps_rollup was readable."""

    model_config = ConfigDict(extra="allow")  # and refused by _known_fields

    pid: Annotated[int, Field(ge=1, le=2**31 - 1)]
    rss_bytes: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)]
    pss_bytes: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = None
    uss_bytes: Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)] | None = None

    @model_validator(mode="after")
    def _known_fields(self) -> ProcessMemoryWindow:
        _no_extra(self)
        for name in ("pss_bytes", "uss_bytes"):
            part = getattr(self, name)
            if part is not None and part > self.rss_bytes:
                raise ValueError(f"{name} {part} is over rss_bytes {self.rss_bytes}")
        return self


# Collections stop at their first error (FailFast): by default pydantic reports every bad
# item, ~450 B each, and a million bad counts would cost the server 0.4 GB of errors.
class Window(BaseModel):
    model_config = ConfigDict(extra="allow")  # and refused by _consistent

    format: Literal["hotpath.window/1"] = FORMAT_ID
    service: Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
    idempotency_key: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[\w.:\-]+$")]
    start: AwareDatetime
    end: AwareDatetime
    sample_rate_hz: Annotated[float, Field(gt=0, le=100_000)]
    unit: Unit = Unit.SAMPLES
    # The profile type's id (hotpath.profiler.model.PROFILE_TYPES); its unit must be `unit`.
    type: str = CPU.id
    labels: Annotated[
        dict[Annotated[str, Field(pattern=LABEL_KEY_PATTERN)], PrintableName], FailFast()
    ] = {}
    frames: Annotated[list[WireFrame], FailFast()]
    stacks: Annotated[list[Annotated[list[Annotated[int, Field(ge=0)]], FailFast()]], FailFast()]
    counts: Annotated[list[Annotated[int, Field(ge=1)]], FailFast()]
    hot_paths: Annotated[list[HotPathWindow], FailFast()] = []
    # Absent from older agents' windows; a window may carry only this (an idle process).
    process: ProcessMemoryWindow | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Window:
        _no_extra(self)
        # One search over all names: a real window's ~700 frames cost ~0.1 ms, not a call each.
        if _UNPRINTABLE.search("".join(name + file for name, file, _ in self.frames)):
            self.frames = [(clean_name(n), clean_name(f), line) for n, f, line in self.frames]
        if self.end < self.start:
            raise ValueError("end is before start")
        if len(self.stacks) == len(self.counts) and _wrapper_frames(self.frames):
            self.frames, self.stacks, self.counts = fold_hot_path_wrappers(
                self.frames, self.stacks, self.counts
            )
        kind = profile_type(self.type)
        if kind.unit != self.unit:
            raise ValueError(f"a {kind.id} profile is in {kind.unit}, not {self.unit}")
        if len(self.stacks) != len(self.counts):
            raise ValueError(f"{len(self.stacks)} stacks but {len(self.counts)} counts")
        n = len(self.frames)
        for i, stack in enumerate(self.stacks):
            if not stack:
                raise ValueError(f"stack {i} is empty")
            if max(stack) >= n:
                raise ValueError(f"stack {i} refers to frame {max(stack)}, but only {n} frames")
        return self


# `@hot_path`'s wrappers (profiler/hotpath/recorder.py): a frame of ours between the caller
# and the user's timed function in every order-path stack.
_WRAPPER_NAMES = ("timed", "timed_async")
_WRAPPER_FILE = "hotpath/recorder.py"


def _wrapper_frames(frames: list[tuple[str, str, int]]) -> set[int]:
    return {
        i
        for i, (name, file, _) in enumerate(frames)
        if name.rpartition(".")[2] in _WRAPPER_NAMES
        and file.replace("\\", "/").endswith(_WRAPPER_FILE)
    }


def fold_hot_path_wrappers(
    frames: list[tuple[str, str, int]], stacks: list[list[int]], counts: list[int]
) -> tuple[list[tuple[str, str, int]], list[list[int]], list[int]]:
    """The window's stacks without the hot-path decorator's wrapper frames, so the order
    path starts at the user's function; stacks that become equal are merged, frames no
    stack uses are dropped. Every way in (agent windows, old agents) passes through here."""
    wrappers = _wrapper_frames(frames)
    if not wrappers:
        return frames, stacks, counts
    merged: dict[tuple[int, ...], int] = {}
    for stack, count in zip(stacks, counts, strict=True):
        kept = tuple(i for i in stack if i not in wrappers) or tuple(stack)
        merged[kept] = merged.get(kept, 0) + count
    used = sorted({i for stack in merged for i in stack})
    index = {old: new for new, old in enumerate(used)}
    return (
        [frames[i] for i in used],
        [[index[i] for i in stack] for stack in merged],
        list(merged.values()),
    )


def parse(data: bytes, limits: WindowLimits) -> Window:
    """The window in `data` (JSON), within `limits`: ValidationError or LimitExceeded.

    Its JSON values and object members are counted before it is parsed (each value follows a
    comma or opens with a bracket or brace, each member has a colon, so the counts are upper
    bounds): pydantic builds the whole parse tree before it validates anything, so a body of
    `[0,0,0,...]` must be refused before that tree exists."""
    # A value takes 2 bytes at least ("0,"), a member 4 ('"":0'): a body too short to pass a
    # limit (a busy real window is 0.12 MB) is not counted.
    if len(data) // 2 + 1 > limits.max_values:
        values = data.count(b",") + data.count(b"[") + data.count(b"{") + 1
        if values > limits.max_values:
            raise LimitExceeded(
                "max_values (JSON values per window, by its commas and brackets)",
                values,
                limits.max_values,
            )
    if len(data) // 4 > limits.max_members:
        members = data.count(b":")  # one per member, and any inside strings
        if members > limits.max_members:
            raise LimitExceeded(
                "max_members (JSON object members per window, by its colons)",
                members,
                limits.max_members,
            )
    window = Window.model_validate_json(data)
    check_limits(window, limits)
    return window


def check_limits(window: Window, limits: WindowLimits) -> None:
    check_sizes(
        limits,
        frames=window.frames,
        stacks=window.stacks,
        counts=window.counts,
        labels=window.labels,
        hot_paths=len(window.hot_paths),
    )


def check_sizes(
    limits: WindowLimits,
    *,
    frames: Sequence[tuple[str, str, int]],
    stacks: Sequence[Sequence[int]],
    counts: Sequence[int],
    labels: Mapping[str, str],
    hot_paths: int = 0,
) -> None:
    """The window limits over any interned profile (an agent window, or a piece made from an
    uploaded file): LimitExceeded naming the first limit passed, and where."""

    def over(limit: str, actual: int, maximum: int, where: str = "") -> None:
        if actual > maximum:
            raise LimitExceeded(limit, actual, maximum, where)

    over("max_stacks (distinct stacks per window)", len(stacks), limits.max_stacks)
    over("max_frames (distinct frames per window)", len(frames), limits.max_frames)
    over("max_labels (labels per window)", len(labels), limits.max_labels)
    over("max_hot_paths (hot paths per window)", hot_paths, limits.max_hot_paths)
    for key, value in labels.items():
        over("max_label_value_chars", len(value), limits.max_label_value_chars, f"label {key}")
    for i, (name, file, _line) in enumerate(frames):
        over(
            "max_frame_name_chars", len(name) + len(file), limits.max_frame_name_chars, f"frame {i}"
        )
    for i, stack in enumerate(stacks):
        over("max_frames_per_stack", len(stack), limits.max_frames_per_stack, f"stack {i}")
    for i, count in enumerate(counts):
        over("max_samples_per_stack", count, limits.max_samples_per_stack, f"stack {i}")


def from_profile(
    profile: Profile,
    *,
    service: str,
    idempotency_key: str,
    start: datetime,
    end: datetime,
    sample_rate_hz: float,
    labels: dict[str, str],
    hot_paths: list[HotPathWindow] | None = None,
    process: ProcessMemoryWindow | None = None,
) -> Window:
    frames = profile.frames
    index = {frame: i for i, frame in enumerate(frames)}
    pairs = [(stack, count) for stack, count in profile.stacks_by_weight() if stack]
    return Window(
        service=service,
        idempotency_key=idempotency_key,
        start=start,
        end=end,
        sample_rate_hz=sample_rate_hz,
        unit=profile.unit,
        type=profile.type.id,
        labels=labels,
        frames=[(f.name, f.file, f.line) for f in frames],
        stacks=[[index[f] for f in stack] for stack, _ in pairs],
        counts=[count for _, count in pairs],
        hot_paths=hot_paths or [],
        process=process,
    )


def to_profile(window: Window) -> Profile:
    frames = [Frame(name, file, line) for name, file, line in window.frames]
    profile = Profile(
        type=profile_type(window.type),
        sample_rate_hz=window.sample_rate_hz,
        start=window.start,
        end=window.end,
        labels=dict(window.labels),
    )
    for stack, count in zip(window.stacks, window.counts, strict=True):
        profile.add((frames[i] for i in stack), count)
    return profile
