"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json).

Export writes one "sampled" profile in its type's unit: a cpu or wall profile with a known
rate in nanoseconds (a sample weighs one period, 1e9/rate ns), bytes as "bytes", counts and
samples of unknown rate as "none". Null fields are omitted (speedscope's schema rejects them).
Beside speedscope's fields the document carries `"hotpath": {"type", "sample_rate_hz"}`
(speedscope ignores keys it does not know), so our own files read back exactly.

Import reads "sampled" and "evented" profiles as py-spy, pyinstrument and memray write them;
the profiles of one type in a file (py-spy writes one per thread) are merged:
- time units become samples at the file's own period. py-spy writes every sample as its own
  entry weighing one period (0.01 s at 100 Hz), so the period is the weight most entries carry;
  an evented profile (pyinstrument) has no period, so its time is counted in samples of
  pyinstrument's default interval, 1 ms. py-spy's time is CPU (it samples running threads;
  upload with type=wall for --idle files); pyinstrument's is wall clock.
- memray (`memray transform speedscope`) writes "Memory" in bytes and "Allocations" with unit
  "none": the allocations still live at the moment the heap was largest (memray's high-water
  mark), so "Memory" is held_bytes, and "Allocations" (how many allocations hold those bytes)
  is alloc_count, our one count type. Files made with --temporary-allocations hold bytes that
  were freed: upload those with type=alloc_bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from hotpath.profiler.formats import Format, FormatError, choose_type
from hotpath.profiler.model import (
    ALLOC_BYTES,
    ALLOC_COUNT,
    CPU,
    HELD_BYTES,
    PROFILE_TYPES,
    WALL,
    Frame,
    Profile,
    ProfileType,
    Stack,
    Unit,
)

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
# pyinstrument's default sampling interval: the period of an evented profile's samples.
EVENTED_PERIOD_S = 0.001

_SECONDS_PER = {"nanoseconds": 1e-9, "microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}


def to_document(profile: Profile, name: str = "hotpath profile") -> dict[str, Any]:
    frames = profile.frames
    index = {frame: i for i, frame in enumerate(frames)}
    period_ns = (
        round(1e9 / profile.sample_rate_hz)
        if profile.unit == Unit.SAMPLES and profile.sample_rate_hz
        else 0
    )
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, weight in profile.stacks_by_weight():
        samples.append([index[f] for f in stack])
        weights.append(weight * period_ns if period_ns else weight)
    unit = "nanoseconds" if period_ns else "bytes" if profile.unit == Unit.BYTES else "none"
    meta: dict[str, Any] = {"type": profile.type.id}
    if profile.sample_rate_hz:
        meta["sample_rate_hz"] = profile.sample_rate_hz
    return {
        "$schema": SCHEMA_URL,
        "name": name,
        "exporter": "hotpath",
        "activeProfileIndex": 0,
        "hotpath": meta,
        "shared": {"frames": [_frame_out(f) for f in frames]},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": unit,
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def dumps(profile: Profile, name: str = "hotpath profile") -> str:
    return json.dumps(to_document(profile, name), separators=(",", ":"))


def dump(profile: Profile, name: str | None = None) -> bytes:
    return dumps(profile, name or f"hotpath {profile.type.id} profile").encode()


def sniff(data: bytes) -> bool:
    head = data[:256].lstrip()
    return head.startswith(b"{") and b'"profiles"' in data and b'"shared"' in data


def load(data: bytes, *, type: ProfileType | None = None) -> list[Profile]:
    """Every profile of the file, those of one type merged; or only `type`'s."""
    doc = _document(data)
    by_type: dict[ProfileType, Profile] = {}
    for i in range(len(doc["profiles"])):
        profile = _profile_in(doc, i)
        if profile.type in by_type:
            by_type[profile.type].samples.update(profile.samples)
        else:
            by_type[profile.type] = profile
    return choose_type(list(by_type.values()), type)


def loads(text: str | bytes, profile_index: int | None = None) -> Profile:
    """One profile of a speedscope file (the file's active one by default)."""
    doc = _document(text)
    index = profile_index if profile_index is not None else doc.get("activeProfileIndex") or 0
    if not isinstance(index, int) or not 0 <= index < len(doc["profiles"]):
        raise FormatError(
            f"profile index {index} out of range (the file has {len(doc['profiles'])})"
        )
    return _profile_in(doc, index)


def _document(text: str | bytes) -> Mapping[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also a 4,300-digit number, deep nesting
        raise FormatError(f"not JSON: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("profiles"), list):
        raise FormatError("not a speedscope file: no 'profiles' list")
    if not doc["profiles"]:
        raise FormatError("the speedscope file holds no profile")
    return doc


def _profile_in(doc: Mapping[str, Any], index: int) -> Profile:
    try:
        frames = [_frame_in(f) for f in doc["shared"]["frames"]]
        data = doc["profiles"][index]
        if data["type"] == "sampled":
            weights = _sampled_in(data, frames)
        elif data["type"] == "evented":
            weights = _evented_in(data, frames)
        else:
            raise FormatError(f"unknown speedscope profile type {data['type']!r}")
        return _typed(doc, str(data["unit"]), data["type"], weights)
    except (KeyError, TypeError, IndexError, ValueError, OverflowError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(
            f"malformed speedscope profile {index}: {type(exc).__name__}: {exc}"
        ) from None


def _typed(
    doc: Mapping[str, Any], unit: str, kind: str, weights: Mapping[Stack, list[float]]
) -> Profile:
    """The weights per stack as a profile of the right type, time counted in samples."""
    exporter = str(doc.get("exporter") or "")
    meta = doc.get("hotpath") if isinstance(doc.get("hotpath"), Mapping) else {}
    said = PROFILE_TYPES.get(str(meta.get("type")))
    rate = meta.get("sample_rate_hz")
    rate = float(rate) if isinstance(rate, int | float) and 0 < rate <= 1e6 else None
    if unit in _SECONDS_PER:
        default = WALL if exporter.startswith("pyinstrument") else CPU
        profile = Profile(type=said if said and said.unit == Unit.SAMPLES else default)
        if rate:
            period_s = 1 / rate
        elif kind == "sampled":
            # py-spy: every entry is one sample, weighing one period.
            every = Counter(w for ws in weights.values() for w in ws if w > 0)
            period_s = every.most_common(1)[0][0] * _SECONDS_PER[unit] if every else 0.01
        else:
            period_s = EVENTED_PERIOD_S
        profile.sample_rate_hz = 1 / period_s
        for stack, ws in weights.items():
            seconds = sum(ws) * _SECONDS_PER[unit]
            if seconds > 0:
                profile.add(stack, max(1, round(seconds / period_s)))
        return profile
    if unit == "bytes":
        default = HELD_BYTES if exporter.startswith("memray") else ALLOC_BYTES
        kind_of = said if said and said.unit == Unit.BYTES else default
        profile = Profile(type=kind_of)
    elif unit == "none":
        if said and said.unit in (Unit.SAMPLES, Unit.ALLOCATIONS):
            profile = Profile(type=said, sample_rate_hz=rate)
        elif exporter.startswith("memray"):
            profile = Profile(type=ALLOC_COUNT)
        else:
            profile = Profile(type=CPU, sample_rate_hz=rate)
    else:
        raise FormatError(f"unknown speedscope unit {unit!r}")
    for stack, ws in weights.items():
        profile.add(stack, round(sum(ws)))
    return profile


def _frame_out(frame: Frame) -> dict[str, Any]:
    out: dict[str, Any] = {"name": frame.name}
    if frame.file:
        out["file"] = frame.file
    if frame.line:
        out["line"] = frame.line
    return out


def _frame_in(data: Mapping[str, Any]) -> Frame:
    return Frame(str(data["name"]), str(data.get("file") or ""), int(data.get("line") or 0))


def _weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"weight {value!r} is not a number >= 0")
    if not math.isfinite(value):
        raise ValueError(f"weight {value!r} is not finite")
    return float(value)


def _sampled_in(data: Mapping[str, Any], frames: Sequence[Frame]) -> dict[Stack, list[float]]:
    samples, weights = data["samples"], data["weights"]
    if len(samples) != len(weights):
        raise ValueError(f"{len(samples)} samples but {len(weights)} weights")
    out: dict[Stack, list[float]] = defaultdict(list)
    for stack, weight in zip(samples, weights, strict=True):
        out[tuple(frames[_index(i)] for i in stack)].append(_weight(weight))
    return out


def _evented_in(data: Mapping[str, Any], frames: Sequence[Frame]) -> dict[Stack, list[float]]:
    """Time between consecutive events is charged to the stack open during it."""
    out: dict[Stack, list[float]] = defaultdict(list)
    open_stack: list[Frame] = []
    last_at = float(data["startValue"])
    for event in data["events"]:
        at = float(event["at"])
        if open_stack and at > last_at:
            out[tuple(open_stack)].append(at - last_at)
        last_at = at
        frame = frames[_index(event["frame"])]
        if event["type"] == "O":
            open_stack.append(frame)
        elif event["type"] == "C":
            if not open_stack or open_stack[-1] != frame:
                raise ValueError(f"close event at {at} does not match the open frame")
            open_stack.pop()
        else:
            raise ValueError(f"unknown event type {event['type']!r}")
    return out


def _index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"frame index {value!r} is not an integer >= 0")
    return value


FORMAT = Format(
    name="speedscope",
    media_type="application/json",
    description="speedscope JSON (py-spy --format speedscope, pyinstrument -r speedscope, "
    "memray transform speedscope)",
    sniff=sniff,
    load=load,
    dump=dump,
)
