"""pprof: a gzipped `perftools.profiles.Profile` protocol buffer (google/pprof's profile.proto).

What Go, the Pyroscope clients (`pyroscope-io`), Node's `pprof` and many others write. One file
holds one or more value columns (`sample_type`); each column we know becomes one typed profile:

    samples/count              cpu (wall when the period type is wall), counted as they are
    cpu/<time unit>            cpu, converted to samples at the file's period
    wall/<time unit>           wall, converted to samples at the file's period
    alloc_space/bytes          alloc_bytes       alloc_objects/count  alloc_count
    inuse_space/bytes          held_bytes        (inuse_objects/count: no type of ours; skipped)

Where a file has both a count and a time column of the same type (Go: samples/count and
cpu/nanoseconds) the count is used. Time columns become samples by dividing by `period` (the
sampling period, in the unit of `period_type`): pyroscope-io writes cpu/nanoseconds with a
period of 1e9/rate. Stacks are `location_id`s leaf first; a location with several lines is
inlined code, its last line the caller. String labels that every sample carries with one
value become the profile's labels (a client's static tags); labels that vary per sample
(thread ids) are not kept.

Hostile input: a gzipped file is inflated to at most MAX_INFLATED_BYTES (a 40 KB gzip bomb
would otherwise become gigabytes) and at most MAX_SAMPLES sample records are read; every index
is checked, and anything that does not add up is a FormatError naming it.
"""

from __future__ import annotations

import gzip
import zlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hotpath.profiler.formats import Format, FormatError, choose_type
from hotpath.profiler.formats.pprof_schema import profile_class
from hotpath.profiler.model import (
    ALLOC_BYTES,
    ALLOC_COUNT,
    CPU,
    HELD_BYTES,
    WALL,
    Frame,
    Profile,
    ProfileType,
    Stack,
)

MAX_INFLATED_BYTES = 64 * 1024 * 1024
MAX_SAMPLES = 2_000_000
# The rate a time column stands for when the file gives no period: py-spy's and pyroscope's.
DEFAULT_RATE_HZ = 100.0
GZIP_MAGIC = b"\x1f\x8b"

_NS_PER = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000, "seconds": 10**9}
_MEMORY = {
    ("alloc_space", "bytes"): ALLOC_BYTES,
    ("alloc_objects", "count"): ALLOC_COUNT,
    ("inuse_space", "bytes"): HELD_BYTES,
}
# What we write per type: the value columns and the period type (pprof's own names).
_OUT = {
    CPU.id: [("samples", "count"), ("cpu", "nanoseconds")],
    WALL.id: [("samples", "count"), ("wall", "nanoseconds")],
    ALLOC_BYTES.id: [("alloc_space", "bytes")],
    ALLOC_COUNT.id: [("alloc_objects", "count")],
    HELD_BYTES.id: [("inuse_space", "bytes")],
}
# The first byte of a Profile message: the tag of one of its fields (1-15).
_FIRST_TAGS = frozenset(b"\x0a\x12\x1a\x22\x2a\x32\x38\x40\x48\x50\x5a\x60\x68\x6a\x70\x78")


def sniff(data: bytes) -> bool:
    if data[:2] == GZIP_MAGIC:
        try:
            head = zlib.decompressobj(wbits=31).decompress(data[:65536], 64)
        except zlib.error:
            return False
        return bool(head) and head[0] in _FIRST_TAGS
    if not data or data[0] not in _FIRST_TAGS:
        return False
    try:  # plain protobuf has no magic: it is pprof if it parses as one
        _message(data)
    except FormatError:
        return False
    return True


def load(data: bytes, *, type: ProfileType | None = None) -> list[Profile]:
    """One profile per value column we know (see the module's table), or only `type`'s."""
    msg = _message(_inflate(data) if data[:2] == GZIP_MAGIC else data)
    strings = msg.string_table
    columns = [(_string(strings, t.type), _string(strings, t.unit)) for t in msg.sample_type]
    period_kind = _string(strings, msg.period_type.type)
    period_unit = _string(strings, msg.period_type.unit)
    period_s = msg.period / 10**9 * _NS_PER[period_unit] if period_unit in _NS_PER else 0.0
    if msg.period < 0:
        raise FormatError(f"negative period {msg.period}")

    chosen = _columns(columns, period_kind)
    if not chosen:
        found = ", ".join(f"{t}/{u}" for t, u in columns) or "none"
        raise FormatError(f"no value column of a profile type we know (the file has: {found})")
    if len(msg.sample) > MAX_SAMPLES:
        raise FormatError(f"{len(msg.sample)} samples: the limit is {MAX_SAMPLES}")

    stacks = _stacks(msg, strings)
    common = _common_labels(msg, strings)
    sums: list[dict[Stack, int]] = [defaultdict(int) for _ in chosen]
    for i, sample in enumerate(msg.sample):
        if not sample.location_id:
            continue  # no stack to charge it to (our profiles have none)
        if len(sample.value) != len(columns):
            raise FormatError(f"sample {i} has {len(sample.value)} values for {len(columns)} types")
        stack = _stack(sample.location_id, stacks, i)
        for sums_of, (_, column, _) in zip(sums, chosen, strict=True):
            value = sample.value[column]
            if value < 0:
                raise FormatError(f"sample {i}: negative value {value} ({columns[column][0]})")
            sums_of[stack] += value

    start = datetime.fromtimestamp(msg.time_nanos / 1e9, UTC) if msg.time_nanos > 0 else None
    end = start + timedelta(microseconds=msg.duration_nanos // 1000) if start else None
    profiles = []
    for sums_of, (kind, column, per_sample) in zip(sums, chosen, strict=True):
        profile = Profile(type=kind, start=start, end=end, labels=dict(common))
        if kind.unit == "samples":
            period = period_s if period_s > 0 else 1 / DEFAULT_RATE_HZ
            profile.sample_rate_hz = 1 / period
            # A time column: its unit per sample, from the period (e.g. 1e7 ns at 100 Hz).
            unit_value = period * 10**9 / _NS_PER[columns[column][1]] if per_sample else 1
            for stack, value in sums_of.items():
                if value:
                    profile.add(stack, max(1, round(value / unit_value)))
        else:
            for stack, value in sums_of.items():
                profile.add(stack, value)
        profiles.append(profile)
    return choose_type(profiles, type)


def _common_labels(msg: Any, strings: Sequence[str]) -> dict[str, str]:
    """The string labels every sample carries with one value: the process's tags (pyroscope-io
    0.8 repeats its static tags, `region=eu`, on every sample). Labels that vary per sample
    (thread ids) are not a series' labels and are dropped."""
    common: dict[str, str] | None = None
    for sample in msg.sample:
        labels = {
            _string(strings, label.key): _string(strings, label.str)
            for label in sample.label
            if label.str
        }
        if common is None:
            common = labels
        else:
            common = {k: v for k, v in common.items() if labels.get(k) == v}
        if not common:
            return {}
    return common or {}


def dump(profile: Profile, name: str | None = None) -> bytes:
    """A gzipped pprof of one profile: its type's pprof columns, functions and locations
    interned, line numbers kept, stacks leaf first."""
    msg = profile_class()()
    table: dict[str, int] = {}

    def string(text: str) -> int:
        index = table.get(text)
        if index is None:
            index = table[text] = len(table)
            msg.string_table.append(text)
        return index

    string("")
    columns = _OUT[profile.type.id]
    time_column = profile.unit == "samples"
    period_ns = round(1e9 / profile.sample_rate_hz) if profile.sample_rate_hz else 0
    if time_column and not period_ns:
        columns = columns[:1]  # no rate, no time: the sample counts alone
    for kind, unit in columns:
        msg.sample_type.add(type=string(kind), unit=string(unit))
    msg.period_type.type = string(_OUT[profile.type.id][-1][0] if time_column else "space")
    msg.period_type.unit = string("nanoseconds" if time_column else "bytes")
    msg.period = period_ns
    msg.default_sample_type = msg.sample_type[-1].type
    if name:
        msg.comment.append(string(name))

    functions: dict[tuple[str, str], int] = {}
    locations: dict[Frame, int] = {}
    for stack, weight in profile.stacks_by_weight():
        if not stack:
            continue
        ids = []
        for frame in reversed(stack):
            location = locations.get(frame)
            if location is None:
                function = functions.get(frame.function_key)
                if function is None:
                    function = functions[frame.function_key] = len(functions) + 1
                    msg.function.add(
                        id=function,
                        name=string(frame.name),
                        system_name=string(frame.name),
                        filename=string(frame.file),
                    )
                location = locations[frame] = len(locations) + 1
                msg.location.add(id=location).line.add(function_id=function, line=frame.line)
            ids.append(location)
        values = [weight, weight * period_ns] if len(columns) == 2 else [weight]
        msg.sample.add(location_id=ids, value=values)
    if profile.start is not None:
        msg.time_nanos = round(profile.start.timestamp() * 1e9)
        if profile.end is not None:
            msg.duration_nanos = round((profile.end - profile.start).total_seconds() * 1e9)
    return gzip.compress(msg.SerializeToString(), mtime=0)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise FormatError(f"not valid gzip: {exc}") from None
    if len(raw) > MAX_INFLATED_BYTES:
        raise FormatError(f"the file inflates beyond {MAX_INFLATED_BYTES} bytes (the limit)")
    if not inflater.eof:
        raise FormatError("the gzip stream is truncated")
    return raw


def _message(raw: bytes) -> Any:
    from google.protobuf.message import DecodeError

    try:
        msg = profile_class().FromString(raw)
    except DecodeError as exc:
        raise FormatError(f"not a pprof profile: {exc}") from None
    if not msg.string_table or msg.string_table[0] != "":
        raise FormatError("not a pprof profile: its string table does not start with ''")
    if not msg.sample_type:
        raise FormatError("not a pprof profile: it has no sample types")
    return msg


def _string(strings: Sequence[str], index: int) -> str:
    if not 0 <= index < len(strings):
        raise FormatError(f"string index {index} out of range (the table has {len(strings)})")
    return strings[index]


def _columns(
    columns: list[tuple[str, str]], period_kind: str
) -> list[tuple[ProfileType, int, bool]]:
    """(type, column, whether it is a time to divide by the period) per type, counts first."""
    found: dict[ProfileType, tuple[int, bool]] = {}
    time_kind = WALL if period_kind == "wall" or any(k == "wall" for k, _ in columns) else CPU
    for i, (kind, unit) in enumerate(columns):
        if kind in ("samples", "sample") and unit == "count":
            found[time_kind] = (i, False)  # counts beat times: no rounding
        elif kind in ("cpu", "wall") and unit in _NS_PER:
            found.setdefault(WALL if kind == "wall" else CPU, (i, True))
        elif (kind, unit) in _MEMORY:
            found.setdefault(_MEMORY[(kind, unit)], (i, False))
    return [(kind, i, per) for kind, (i, per) in found.items()]


def _stacks(msg: Any, strings: Sequence[str]) -> dict[int, Stack]:
    """Each location id -> its frames, root first (inlined callees after their caller)."""
    functions: dict[int, tuple[str, str]] = {}
    for function in msg.function:
        name = _string(strings, function.name) or _string(strings, function.system_name)
        functions[function.id] = (name or "<unknown>", _string(strings, function.filename))
    stacks: dict[int, Stack] = {}
    for location in msg.location:
        frames = []
        for line in reversed(location.line):
            if line.function_id not in functions:
                raise FormatError(
                    f"location {location.id} names unknown function {line.function_id}"
                )
            name, file = functions[line.function_id]
            frames.append(Frame(name, file, max(0, line.line)))
        stacks[location.id] = tuple(frames) or (Frame(f"0x{location.address:x}"),)
    return stacks


def _stack(ids: Sequence[int], stacks: dict[int, Stack], sample: int) -> Stack:
    frames: list[Frame] = []
    for location in reversed(ids):
        if location not in stacks:
            raise FormatError(f"sample {sample} refers to unknown location {location}")
        frames.extend(stacks[location])
    return tuple(frames)


FORMAT = Format(
    name="pprof",
    media_type="application/vnd.google.protobuf+gzip",
    description="gzipped pprof (profile.proto), as Go, pyroscope-io and Node's pprof write",
    sniff=sniff,
    load=load,
    dump=dump,
)
