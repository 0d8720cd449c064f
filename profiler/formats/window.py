"""The agent's wire format: one sampling window of one process, as the agent ships it.

Frames are sent once per window and stacks refer to them by index, so a window of a few
hundred distinct stacks 20-60 frames deep stays small before compression. The same pydantic
model validates what the server receives; `check_limits` enforces the size limits that keep one
window from exhausting the server, with messages that name the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from hotpath.profiler.hotpath.histogram import parse_wire
from hotpath.profiler.model import CPU, Frame, Profile, Unit, profile_type

FORMAT_ID = "hotpath.window/1"
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
LABEL_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"


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


class LimitExceeded(ValueError):
    """A window over one of the `WindowLimits`; `limit` names it."""

    def __init__(self, limit: str, actual: int, maximum: int, where: str = "") -> None:
        self.limit, self.actual, self.maximum = limit, actual, maximum
        suffix = f" ({where})" if where else ""
        super().__init__(f"{limit} is {maximum}, got {actual}{suffix}")


WireFrame = tuple[str, str, Annotated[int, Field(ge=0)]]


class HotPathWindow(BaseModel):
    """The calls of one hot path during the window: a histogram delta (`Histogram.to_wire`)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=112)]
    budget_ns: Annotated[int, Field(ge=0)] | None = None
    # The timed code as the sampler names its frames, "qualname (filename)": the server finds
    # the hot path in the sampled stacks by it (budget attribution).
    function: Annotated[str, Field(min_length=1, max_length=600)] | None = None
    histogram: dict[str, Any]

    @field_validator("histogram")
    @classmethod
    def _valid_histogram(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Plain Python (the agent has no numpy); ValueError becomes a 422 naming the problem.
        parse_wire(value)
        return value


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["hotpath.window/1"] = FORMAT_ID
    service: Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
    idempotency_key: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[\w.:\-]+$")]
    start: AwareDatetime
    end: AwareDatetime
    sample_rate_hz: Annotated[float, Field(gt=0, le=100_000)]
    unit: Unit = Unit.SAMPLES
    # The profile type's id (hotpath.profiler.model.PROFILE_TYPES); its unit must be `unit`.
    type: str = CPU.id
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY_PATTERN)], str] = {}
    frames: list[WireFrame]
    stacks: list[list[Annotated[int, Field(ge=0)]]]
    counts: list[Annotated[int, Field(ge=1)]]
    hot_paths: list[HotPathWindow] = []

    @model_validator(mode="after")
    def _consistent(self) -> Window:
        if self.end < self.start:
            raise ValueError("end is before start")
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
