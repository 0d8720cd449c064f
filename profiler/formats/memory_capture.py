"""The wire format of one on-demand memory capture (memray attached to a live process).

A capture is shipped whole, in one request, and stored in one transaction or not at all:
- three typed profiles as agent windows of the capture's span: `alloc_bytes` and
  `alloc_count` (everything allocated during the capture) and `held_bytes` (bytes still held
  at its end from allocations made during it);
- per function (the innermost Python frame that allocated), its held bytes over the capture:
  the evidence the leak ranking fits a slope to;
- the target's pause at attach and at detach, measured by the agent, kept with the capture.

A capture cut short (the target exited, memray failed) is never shipped.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    FailFast,
    Field,
    model_validator,
)

from hotpath.profiler.formats.window import (
    MAX_INT64,
    SERVICE_NAME_PATTERN,
    Window,
    _no_extra,
    clean_name,
)
from hotpath.profiler.model import ALLOC_BYTES, ALLOC_COUNT, HELD_BYTES

FORMAT_ID = "hotpath.memory_capture/1"
CAPTURE_TYPES = (ALLOC_BYTES.id, ALLOC_COUNT.id, HELD_BYTES.id)
MAX_FUNCTIONS = 500  # the functions holding the most bytes at the end; the rest are summed away
MAX_POINTS = 240  # held-bytes points per function (memray snapshots every 10 ms, resampled)
MAX_CAPTURE_S = 3600.0

Bytes = Annotated[int, Field(ge=0, le=MAX_INT64)]
CodeName = Annotated[str, Field(min_length=1, max_length=600), AfterValidator(clean_name)]


class HeldSeries(BaseModel):
    """One function's bytes held, from allocations made since the capture started, at
    times (seconds since the capture's start), increasing; its last point is at the end."""

    model_config = ConfigDict(extra="allow")  # and refused by _checked

    function: CodeName  # the frame's name as the sampler and memray give it (a qualname)
    file: CodeName
    held_bytes: Bytes  # at the end of the capture
    allocations_held: Annotated[int, Field(ge=0, le=MAX_INT64)]  # allocations behind them
    points: Annotated[
        list[tuple[Annotated[float, Field(ge=0, le=MAX_CAPTURE_S)], Bytes]],
        Field(min_length=1, max_length=MAX_POINTS),
        FailFast(),
    ]

    @model_validator(mode="after")
    def _checked(self) -> HeldSeries:
        _no_extra(self)
        times = [t for t, _ in self.points]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"{self.function}: point times must increase")
        return self


class MemoryCapture(BaseModel):
    model_config = ConfigDict(extra="allow")  # and refused by _consistent

    format: Literal["hotpath.memory_capture/1"] = FORMAT_ID
    service: Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
    idempotency_key: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[\w.:\-]+$")]
    pid: Annotated[int, Field(ge=1, le=2**22)]  # Linux's PID_MAX_LIMIT
    start: AwareDatetime
    end: AwareDatetime
    # The target stopped (all threads) while gdb injected memray, and while it removed it.
    pause_attach_ms: Annotated[float, Field(ge=0, le=600_000)]
    pause_detach_ms: Annotated[float, Field(ge=0, le=600_000)]
    tool: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w .:+\-]+$")]
    windows: Annotated[list[Window], Field(min_length=3, max_length=3), FailFast()]
    functions: Annotated[list[HeldSeries], Field(max_length=MAX_FUNCTIONS), FailFast()] = []

    @model_validator(mode="after")
    def _consistent(self) -> MemoryCapture:
        _no_extra(self)
        if self.end <= self.start:
            raise ValueError("end is not after start")
        if (self.end - self.start).total_seconds() > MAX_CAPTURE_S:
            raise ValueError(f"a capture lasts at most {MAX_CAPTURE_S:.0f} s")
        types = sorted(w.type for w in self.windows)
        if types != sorted(CAPTURE_TYPES):
            raise ValueError(f"windows must be one each of {', '.join(CAPTURE_TYPES)}: {types}")
        for w in self.windows:
            if (w.service, w.start, w.end) != (self.service, self.start, self.end):
                raise ValueError(f"the {w.type} window's service or span is not the capture's")
            if w.hot_paths or w.process is not None:
                raise ValueError("a memory window carries no hot paths and no process memory")
        return self

    def window(self, type_id: str) -> Window:
        return next(w for w in self.windows if w.type == type_id)
