"""pyinstrument sessions (`Session.to_json()`, `pyinstrument --renderer session`).

A session is a list of frame records: (stack, seconds). pyinstrument merges consecutive
identical samples into one record, so a record's weight is its time, not one sample; the model
gets sample counts at the session's interval (time / interval, at least 1), which keeps the
profile comparable with a sampler's and lets the diff's count statistics apply. Each frame is
"function\\0file\\0first line" followed by attributes ("\\x01l<line now>", "\\x01c<class>");
the synthetic root frame of the thread ("<thread>") is dropped. pyinstrument measures wall-clock
time (it samples the running stack on a timer, idle or not): a session is a WALL profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hotpath.profiler.formats import Format, FormatError, choose_type
from hotpath.profiler.model import WALL, Frame, Profile, ProfileType

_IDENTIFIER_SEP = "\x00"
_ATTRIBUTES_SEP = "\x01"


def loads(text: str | bytes) -> Profile:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, deep nesting
        raise FormatError(f"not JSON: {exc}") from None
    return from_session(doc)


def sniff(data: bytes) -> bool:
    return data[:256].lstrip().startswith(b"{") and b'"frame_records"' in data


def load(data: bytes, *, type: ProfileType | None = None) -> list[Profile]:
    """The session as one WALL profile (or `type`, which must be a time type)."""
    return choose_type([loads(data)], type)


def from_session(doc: Mapping[str, Any]) -> Profile:
    """The model of one pyinstrument session, in samples at the session's interval."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("frame_records"), list):
        raise FormatError("not a pyinstrument session: no 'frame_records' list")
    try:
        interval = float(doc.get("min_interval") or 0.001)
        start = datetime.fromtimestamp(float(doc["start_time"]), UTC)
        duration = float(doc["duration"])
        profile = Profile(
            type=WALL,
            sample_rate_hz=1 / interval,
            start=start,
            end=start + timedelta(seconds=duration),
        )
        cache: dict[str, Frame | None] = {}
        for stack, seconds in doc["frame_records"]:
            frames = [f for f in (_frame(info, cache) for info in stack) if f is not None]
            if frames:
                profile.add(frames, max(1, round(float(seconds) / interval)))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise FormatError(f"malformed pyinstrument session: {type(exc).__name__}: {exc}") from None
    return profile


def _frame(info: str, cache: dict[str, Frame | None]) -> Frame | None:
    if info in cache:
        return cache[info]
    identifier, _, attributes = info.partition(_ATTRIBUTES_SEP)
    name, file, line = [*identifier.split(_IDENTIFIER_SEP), "", ""][:3]
    frame: Frame | None = None
    if file != "<thread>":
        cls = next((a[1:] for a in attributes.split(_ATTRIBUTES_SEP) if a.startswith("c")), "")
        qualified = f"{cls}.{name}" if cls and "." not in name else name
        frame = Frame(qualified, file, int(line) if line.isdigit() else 0)
    cache[info] = frame
    return frame


def focus(profile: Profile, function: str) -> Profile:
    """Only the stacks through `function` (its bare name, any class), each cut to start at its
    outermost call: the time of one test, without the test runner around it. The profile
    unchanged if no stack passes through it."""
    focused = Profile(
        type=profile.type,
        sample_rate_hz=profile.sample_rate_hz,
        start=profile.start,
        end=profile.end,
        labels=dict(profile.labels),
    )
    for stack, weight in profile.samples.items():
        for i, frame in enumerate(stack):
            if frame.name.rpartition(".")[2] == function:
                focused.add(stack[i:], weight)
                break
    return focused if focused.samples else profile


FORMAT = Format(
    name="pyinstrument",
    media_type="application/json",
    description="a pyinstrument session (pyinstrument -r session, Session.to_json())",
    sniff=sniff,
    load=load,
)
