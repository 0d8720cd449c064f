"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json).

Export writes one "sampled" profile whose weights are the model's own weights (sample counts
for a sampler, unit "none"), and omits null fields: speedscope's schema rejects them.
Import reads "sampled" and "evented" profiles, as written by py-spy, pyinstrument or memray.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hotpath.profiler.formats import FormatError
from hotpath.profiler.model import ALLOC_BYTES, CPU, Frame, Profile, ProfileType, Unit

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

_UNIT_OUT = {
    Unit.SAMPLES: "none",
    Unit.NANOSECONDS: "nanoseconds",
    Unit.BYTES: "bytes",
    Unit.ALLOCATIONS: "none",
}
# speedscope time units, as nanoseconds per unit, so imported time profiles share one unit.
_NS_PER = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000, "seconds": 10**9}


def to_document(profile: Profile, name: str = "hotpath profile") -> dict[str, Any]:
    frames = profile.frames
    index = {frame: i for i, frame in enumerate(frames)}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, weight in profile.stacks_by_weight():
        samples.append([index[f] for f in stack])
        weights.append(weight)
    return {
        "$schema": SCHEMA_URL,
        "name": name,
        "exporter": "hotpath",
        "activeProfileIndex": 0,
        "shared": {"frames": [_frame_out(f) for f in frames]},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": _UNIT_OUT[profile.unit],
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def dumps(profile: Profile, name: str = "hotpath profile") -> str:
    return json.dumps(to_document(profile, name), separators=(",", ":"))


def loads(text: str | bytes, profile_index: int | None = None) -> Profile:
    """Read one profile of a speedscope file (the file's active one by default)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not JSON: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("profiles"), list):
        raise FormatError("not a speedscope file: no 'profiles' list")
    profiles = doc["profiles"]
    if not profiles:
        raise FormatError("the speedscope file holds no profile")
    index = profile_index if profile_index is not None else int(doc.get("activeProfileIndex") or 0)
    if not 0 <= index < len(profiles):
        raise FormatError(f"profile index {index} out of range (the file has {len(profiles)})")
    try:
        frames = [_frame_in(f) for f in doc["shared"]["frames"]]
        data = profiles[index]
        if data["type"] == "sampled":
            return _sampled_in(data, frames)
        if data["type"] == "evented":
            return _evented_in(data, frames)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise FormatError(f"malformed speedscope profile: {type(exc).__name__}: {exc}") from None
    raise FormatError(f"unknown speedscope profile type {data.get('type')!r}")


def _frame_out(frame: Frame) -> dict[str, Any]:
    out: dict[str, Any] = {"name": frame.name}
    if frame.file:
        out["file"] = frame.file
    if frame.line:
        out["line"] = frame.line
    return out


def _frame_in(data: Mapping[str, Any]) -> Frame:
    return Frame(str(data["name"]), str(data.get("file") or ""), int(data.get("line") or 0))


def _unit_in(unit: str) -> tuple[ProfileType, float]:
    """The profile type and the factor that converts a speedscope weight into its unit."""
    if unit in _NS_PER:
        return CPU, _NS_PER[unit]
    if unit == "bytes":
        return ALLOC_BYTES, 1
    return CPU, 1


def _sampled_in(data: Mapping[str, Any], frames: Sequence[Frame]) -> Profile:
    unit, factor = _unit_in(data["unit"])
    profile = Profile(type=unit)
    samples, weights = data["samples"], data["weights"]
    if len(samples) != len(weights):
        raise ValueError(f"{len(samples)} samples but {len(weights)} weights")
    for stack, weight in zip(samples, weights, strict=True):
        profile.add((frames[i] for i in stack), round(weight * factor))
    return profile


def _evented_in(data: Mapping[str, Any], frames: Sequence[Frame]) -> Profile:
    """Time between consecutive events is charged to the stack open during it."""
    unit, factor = _unit_in(data["unit"])
    profile = Profile(type=unit)
    open_stack: list[Frame] = []
    last_at = float(data["startValue"])
    for event in data["events"]:
        at = float(event["at"])
        if open_stack and at > last_at:
            profile.add(open_stack, round((at - last_at) * factor))
        last_at = at
        if event["type"] == "O":
            open_stack.append(frames[event["frame"]])
        elif event["type"] == "C":
            if not open_stack or open_stack[-1] != frames[event["frame"]]:
                raise ValueError(f"close event at {at} does not match the open frame")
            open_stack.pop()
    return profile
