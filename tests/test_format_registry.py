"""The format registry on real files made by the real tools (tests/data/formats/README.md):
each loads with its type, unit and total; pprof and collapsed round-trip; our pprof decodes
with the public schema; bad input is refused with a message that names the problem."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from hotpath.profiler.formats import FormatError, pprof, registry, speedscope
from hotpath.profiler.formats.pprof_schema import profile_class
from hotpath.profiler.model import (
    ALLOC_BYTES,
    ALLOC_COUNT,
    CPU,
    HELD_BYTES,
    PROFILE_TYPES,
    WALL,
    Frame,
    Profile,
    Unit,
    function_stats,
)

DATA = Path(__file__).resolve().parent / "data" / "formats"
SCHEMA = DATA.parents[2] / "node_modules" / "speedscope" / "dist" / "release"
SCHEMA = SCHEMA / "file-format-schema.json"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def decode_pprof(data: bytes):
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return profile_class().FromString(raw)


def pprof_stacks(msg, column: int) -> Counter[tuple[str, ...]]:
    """Function names root first -> summed value of one column, read with the schema alone."""
    strings = msg.string_table
    names = {f.id: strings[f.name] for f in msg.function}
    frames = {loc.id: [names[line.function_id] for line in loc.line] for loc in msg.location}
    out: Counter[tuple[str, ...]] = Counter()
    for sample in msg.sample:
        stack = [n for loc in reversed(sample.location_id) for n in reversed(frames[loc])]
        out[tuple(stack)] += sample.value[column]
    return out


def names_of(profile: Profile) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for stack, weight in profile.samples.items():
        out[tuple(f.name for f in stack)] += weight
    return out


def the(profiles: list[Profile]) -> Profile:
    assert len(profiles) == 1, [p.type for p in profiles]
    return profiles[0]


def cpu_split(profile: Profile) -> float:
    """price_quotes' share of price_quotes + check_risk (workload.py: about 2/3)."""
    totals = {s.name: s.total_weight for s in function_stats(profile)}
    return totals["price_quotes"] / (totals["price_quotes"] + totals["check_risk"])


# -- every real file, through the registry --------------------------------------------------


def test_py_spy_speedscope_is_cpu_in_samples_at_its_own_rate() -> None:
    data = read("pyspy.speedscope.json")
    doc = json.loads(data)
    entries = sum(len(p["samples"]) for p in doc["profiles"])
    assert registry.detect(data).name == "speedscope"
    profile = the(registry.load(data))
    assert profile.type == CPU and profile.unit == Unit.SAMPLES
    # Every py-spy entry is one sample of one period (0.01 s): seconds did not become ns.
    assert profile.total == entries
    assert profile.sample_rate_hz == pytest.approx(1 / doc["profiles"][0]["weights"][0])
    assert 0.55 < cpu_split(profile) < 0.8


def test_py_spy_raw_is_collapsed_cpu_with_the_counts_it_wrote() -> None:
    data = read("pyspy.collapsed.txt")
    written = sum(int(line.rsplit(" ", 1)[1]) for line in data.decode().splitlines())
    assert registry.detect(data).name == "collapsed"
    profile = the(registry.load(data))
    assert profile.type == CPU and profile.total == written
    assert Frame("check_risk", "workload.py", 18) in profile.frames  # py-spy's line kept


def test_pyinstrument_files_are_wall_clock_samples_of_its_interval() -> None:
    session = read("pyinstrument.session.json")
    meta = json.loads(session)
    profile = the(registry.load(session))
    assert registry.detect(session).name == "pyinstrument"
    assert profile.type == WALL and profile.sample_rate_hz == 1 / meta["min_interval"]
    assert profile.total == pytest.approx(meta["duration"] / meta["min_interval"], rel=0.02)

    rendered = read("pyinstrument.speedscope.json")
    end = json.loads(rendered)["profiles"][0]["endValue"]  # seconds
    evented = the(registry.load(rendered))
    assert evented.type == WALL and evented.sample_rate_hz == 1000
    assert evented.total == pytest.approx(end * 1000, rel=0.02)


def test_memray_speedscope_is_bytes_held_and_allocations_not_samples() -> None:
    data = read("memray.speedscope.json")
    doc = json.loads(data)
    sums = {p["name"]: sum(p["weights"]) for p in doc["profiles"]}
    by_type = {p.type: p for p in registry.load(data)}
    assert set(by_type) == {HELD_BYTES, ALLOC_COUNT}
    assert by_type[HELD_BYTES].unit == Unit.BYTES
    assert by_type[HELD_BYTES].total == sums["Memory"]
    assert by_type[ALLOC_COUNT].total == sums["Allocations"]
    assert "build_book" in {f.name for f in by_type[HELD_BYTES].frames}
    # One type asked for: that profile alone.
    assert the(registry.load(data, type="held_bytes")).total == sums["Memory"]


def test_pyroscope_cpu_pprof_becomes_samples_at_its_period() -> None:
    data = read("pyroscope-io.cpu.pprof")
    msg = decode_pprof(data)
    assert registry.detect(data).name == "pprof"
    profile = the(registry.load(data))
    assert profile.type == CPU and profile.sample_rate_hz == 1e9 / msg.period
    assert profile.total * msg.period == sum(v for s in msg.sample for v in s.value)
    assert names_of(profile) == Counter(
        {k: v // msg.period for k, v in pprof_stacks(msg, 0).items()}
    )
    assert 0.55 < cpu_split(profile) < 0.8
    assert profile.start is not None and profile.end is not None and profile.end > profile.start


def test_pyroscope_memory_pprof_gives_one_profile_per_column() -> None:
    data = read("pyroscope-io.memory.pprof.gz")
    msg = decode_pprof(data)
    columns = [msg.string_table[t.type] for t in msg.sample_type]
    by_type = {p.type: p for p in registry.load(data)}
    # inuse_space is all zero in this capture: no held_bytes profile is made of nothing.
    assert set(by_type) == {ALLOC_BYTES, ALLOC_COUNT}
    for kind, column in ((ALLOC_BYTES, "alloc_space"), (ALLOC_COUNT, "alloc_objects")):
        expected = pprof_stacks(msg, columns.index(column))
        assert names_of(by_type[kind]) == +expected
    assert the(registry.load(data, type=ALLOC_BYTES)).unit == Unit.BYTES


# -- types chosen by the uploader ---------------------------------------------------------


def test_a_time_profile_can_be_declared_wall_and_collapsed_any_type() -> None:
    assert the(registry.load(read("pyspy.speedscope.json"), type="wall")).type == WALL
    raw = read("pyspy.collapsed.txt")
    held = the(registry.load(raw, "collapsed", "held_bytes"))
    assert held.type == HELD_BYTES and held.unit == Unit.BYTES
    assert held.total == the(registry.load(raw)).total
    # memray's bytes taken as allocated (a file made with --temporary-allocations).
    assert the(registry.load(read("memray.speedscope.json"), type="alloc_bytes")).total > 0


@pytest.mark.parametrize(
    "name, wanted, message",
    [
        ("memray.speedscope.json", "cpu", "no cpu profile .*held_bytes"),
        ("pyroscope-io.memory.pprof.gz", "wall", "no wall profile"),
        ("pyroscope-io.cpu.pprof", "alloc_bytes", "no alloc_bytes profile .*cpu"),
        ("pyspy.collapsed.txt", "bogus", "unknown profile type 'bogus'.*cpu, wall"),
    ],
)
def test_a_type_the_file_does_not_hold_is_refused_by_name(
    name: str, wanted: str, message: str
) -> None:
    with pytest.raises(FormatError, match=message):
        registry.load(read(name), type=wanted)


# -- round trips ----------------------------------------------------------------------------


def test_pprof_round_trip_keeps_stacks_totals_and_units() -> None:
    original = decode_pprof(read("pyroscope-io.cpu.pprof"))
    ours = decode_pprof(registry.dump(the(registry.load(read("pyroscope-io.cpu.pprof"))), "pprof"))
    strings = ours.string_table
    assert [(strings[t.type], strings[t.unit]) for t in ours.sample_type] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    period = (strings[ours.period_type.type], strings[ours.period_type.unit], ours.period)
    assert period == ("cpu", "nanoseconds", original.period)
    assert strings[ours.default_sample_type] == "cpu"
    assert pprof_stacks(ours, 1) == pprof_stacks(original, 0)  # same ns per stack
    assert ours.time_nanos // 1000 == original.time_nanos // 1000


def test_our_pprof_interns_functions_keeps_lines_and_reimports_every_type() -> None:
    base = the(registry.load(read("pyspy.collapsed.txt")))
    for kind in PROFILE_TYPES.values():
        profile = base.empty_like()
        profile.type = kind
        profile.sample_rate_hz = 100 if kind.unit == Unit.SAMPLES else None
        profile.samples.update(base.samples)
        data = registry.dump(profile, "pprof")
        msg = decode_pprof(data)
        keys = [(msg.string_table[f.name], msg.string_table[f.filename]) for f in msg.function]
        assert len(keys) == len(set(keys)) == len({f.function_key for f in base.frames})
        assert len(msg.location) == len(base.frames)  # one location per (function, line)
        lines = {
            (msg.string_table[msg.function[ln.function_id - 1].name], ln.line)
            for loc in msg.location
            for ln in loc.line
        }
        assert ("check_risk", 18) in lines
        again = the(registry.load(data))
        assert again.type == kind and again.samples == profile.samples


def test_collapsed_round_trip_keeps_py_spy_lines_and_totals() -> None:
    raw = read("pyspy.collapsed.txt")
    again = registry.dump(the(registry.load(raw)), "collapsed")
    assert sorted(again.decode().splitlines()) == sorted(raw.decode().splitlines())


def test_speedscope_exports_time_as_time_and_bytes_as_bytes() -> None:
    schema = json.loads(SCHEMA.read_text())
    cpu = the(registry.load(read("pyspy.speedscope.json")))
    held = the(registry.load(read("memray.speedscope.json"), type="held_bytes"))
    count = the(registry.load(read("memray.speedscope.json"), type="alloc_count"))
    for profile, unit, per in (
        (cpu, "nanoseconds", 10_000_000),
        (held, "bytes", 1),
        (count, "none", 1),
    ):
        data = registry.dump(profile, "speedscope")
        doc = json.loads(data)
        jsonschema.validate(doc, schema)
        assert doc["profiles"][0]["unit"] == unit
        assert sum(doc["profiles"][0]["weights"]) == profile.total * per
        again = the(registry.load(data))
        assert (again.type, again.samples) == (profile.type, profile.samples)
    assert the(registry.load(speedscope.dumps(cpu).encode())).sample_rate_hz == 100


# -- bad input ------------------------------------------------------------------------------


def test_registry_lists_formats_and_refuses_unknown_ones() -> None:
    assert set(registry.names()) >= {"collapsed", "speedscope", "pprof", "pyinstrument"}
    assert "pyinstrument" not in registry.writable() and "pprof" in registry.writable()
    with pytest.raises(FormatError, match=r"unknown format .jfr.*pprof"):
        registry.load(b"a;b 1\n", format="jfr")
    with pytest.raises(FormatError, match="cannot be written"):
        registry.dump(Profile(), "pyinstrument")


@pytest.mark.parametrize(
    "data, format, message",
    [
        (b"", None, "not a profile format we know.*empty"),
        (b"\x00\x01garbage", None, "not a profile format we know"),
        (b'{"hello": 1}', None, "not a profile format we know"),
        ("speedscope", "pprof", "is speedscope, not pprof"),
        ("pyroscope-io.cpu.pprof", "collapsed", "is pprof, not collapsed"),
        (b"a;b 1\n", "speedscope", "is collapsed, not speedscope"),
        (b"\x1f\x8b\x08\x00garbage", "pprof", "not a valid pprof file: .*gzip"),
        ("truncated", "pprof", "not a valid pprof file"),
        (b'{"profiles": [], "shared": {"frames": []}}', None, "holds no profile"),
        (b"a;b x\n", "collapsed", "not a valid collapsed file: line 1"),
    ],
)
def test_bad_files_are_refused_with_the_problem_named(
    data: bytes | str, format: str | None, message: str
) -> None:
    if data == "speedscope":
        data = read("pyspy.speedscope.json")
    elif data == "truncated":
        data = gzip.compress(read("pyroscope-io.cpu.pprof")[:200])
    elif isinstance(data, str):
        data = read(data)
    with pytest.raises(FormatError, match=message):
        registry.load(data, format=format)


def _pprof_with(mutate) -> bytes:
    msg = decode_pprof(read("pyroscope-io.cpu.pprof"))
    mutate(msg)
    return msg.SerializeToString()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: setattr(m.function[0], "name", 999), "string index 999 out of range"),
        (lambda m: m.sample[0].location_id.append(77), "unknown location 77"),
        (lambda m: m.sample[0].value.__setitem__(0, -5), "negative value -5"),
        (lambda m: m.sample[0].value.append(1), "2 values for 1 types"),
        (lambda m: m.location[0].line[0].__setattr__("function_id", 55), "unknown function 55"),
        (lambda m: m.string_table.__setitem__(0, "x"), "string table"),
    ],
)
def test_pprof_that_does_not_add_up_is_refused(mutate, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        registry.load(_pprof_with(mutate), format="pprof")


def test_a_gzip_bomb_is_refused_within_the_inflate_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pprof, "MAX_INFLATED_BYTES", 1 << 20)
    bomb = gzip.compress(b"\x0a" + b"\x00" * (8 << 20), mtime=0)  # 8 MiB in about 8 KB
    assert len(bomb) < 20_000 and registry.detect(bomb).name == "pprof"
    with pytest.raises(FormatError, match="inflates beyond 1048576 bytes"):
        registry.load(bomb)


@pytest.mark.parametrize("weights", [[1, float("nan")], [1, float("inf")], [1, -1], [1, "x"]])
def test_speedscope_weights_must_be_finite_numbers(weights: list[object]) -> None:
    doc = {
        "shared": {"frames": [{"name": "a"}]},
        "profiles": [
            {"type": "sampled", "unit": "bytes", "samples": [[0], [0]], "weights": weights}
        ],
    }
    with pytest.raises(FormatError, match="weight"):
        registry.load(json.dumps(doc).encode())
