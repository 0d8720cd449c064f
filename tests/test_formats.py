"""Formats convert to and from the one profile model without losing anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from hotpath.profiler.formats import FormatError, collapsed, pyroscope, speedscope
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import ALLOC_BYTES, Frame, Profile, Unit, function_stats, merge

SCHEMA = (
    Path(__file__).resolve().parent.parent
    / "node_modules"
    / "speedscope"
    / "dist"
    / "release"
    / "file-format-schema.json"
)

PY_SPY_RAW = (
    "<module> (trading.py:1);main (trading.py:40);handle_order (trading.py:30);"
    "risk_check (trading.py:12) 41\n"
    "<module> (trading.py:1);main (trading.py:40);handle_order (trading.py:30);"
    "price_quote (trading.py:20);fetch_quotes (trading.py:9) 25\n"
    "<module> (trading.py:1);main (trading.py:40);handle_order (trading.py:30) 4\n"
    "<module> (trading.py:1);main (trading.py:40);fib (trading.py:50);fib (trading.py:50);"
    "fib (trading.py:50) 30\n"
)


def test_collapsed_reads_py_spy_frames() -> None:
    profile = collapsed.loads(PY_SPY_RAW)
    assert profile.total == 100
    leaf = max(profile.samples, key=profile.samples.__getitem__)[-1]
    assert leaf == Frame("risk_check", "trading.py", 12)


def test_collapsed_round_trips() -> None:
    profile = collapsed.loads(PY_SPY_RAW)
    again = collapsed.loads(collapsed.dumps(profile))
    assert again.samples == profile.samples
    assert collapsed.dumps(again) == collapsed.dumps(profile)


def test_collapsed_sums_repeated_stacks_and_keeps_odd_names() -> None:
    text = "a;b 1\na;b 2\n<listcomp> (f.py:3);x 1\nlambda (/p (1)/f.py:7) 4\n"
    profile = collapsed.loads(text)
    assert profile.samples[(Frame("a"), Frame("b"))] == 3
    assert (Frame("<listcomp>", "f.py", 3), Frame("x")) in profile.samples
    assert profile.samples[(Frame("lambda", "/p (1)/f.py", 7),)] == 4


def test_collapsed_sanitises_separators_inside_frames() -> None:
    profile = Profile()
    profile.add([Frame("python -c 'a;b'\nx"), Frame("leaf")], 2)
    text = collapsed.dumps(profile)
    assert text.count("\n") == 1 and text.count(";") == 1
    assert collapsed.loads(text).total == 2


@pytest.mark.parametrize(
    "bad, where", [("a;b", "line 1"), ("a;b 1\nc;d x", "line 2"), ("a;b -3", "negative")]
)
def test_collapsed_errors_say_where(bad: str, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        collapsed.loads(bad)


def test_function_stats_count_recursion_once() -> None:
    stats = {s.name: s for s in function_stats(collapsed.loads(PY_SPY_RAW))}
    assert stats["main"].total_weight == 100 and stats["main"].self_weight == 0
    assert stats["fib"].total_weight == 30 and stats["fib"].self_weight == 30
    assert stats["handle_order"].total_weight == 70 and stats["handle_order"].self_weight == 4
    assert stats["price_quote"].total_weight == 25


def test_merge_sums_and_spans() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    a = collapsed.loads("x;y 2\n", Profile(start=t0, end=t0 + timedelta(seconds=10)))
    b = collapsed.loads(
        "x;y 3\nx 1\n", Profile(start=t0 + timedelta(seconds=10), end=t0 + timedelta(seconds=20))
    )
    merged = merge([a, b])
    assert merged.total == 6 and (merged.start, merged.end) == (a.start, b.end)
    with pytest.raises(ValueError, match="cannot merge"):
        merge([a, Profile(type=ALLOC_BYTES)])


def test_speedscope_export_validates_against_speedscopes_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    doc = speedscope.to_document(collapsed.loads(PY_SPY_RAW), "trader")
    jsonschema.validate(doc, schema)
    # The schema is strict about nulls; the check above must be able to fail.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "activeProfileIndex": None}, schema)


def test_speedscope_round_trips() -> None:
    profile = collapsed.loads(PY_SPY_RAW)
    assert speedscope.loads(speedscope.dumps(profile)).samples == profile.samples


def test_speedscope_reads_evented_profiles() -> None:
    doc = {
        "$schema": speedscope.SCHEMA_URL,
        "shared": {"frames": [{"name": "a"}, {"name": "b"}]},
        "profiles": [
            {
                "type": "evented",
                "name": "p",
                "unit": "milliseconds",
                "startValue": 0,
                "endValue": 10,
                "events": [
                    {"type": "O", "frame": 0, "at": 0},
                    {"type": "O", "frame": 1, "at": 2},
                    {"type": "C", "frame": 1, "at": 7},
                    {"type": "C", "frame": 0, "at": 10},
                ],
            }
        ],
    }
    profile = speedscope.loads(json.dumps(doc))
    # Time becomes samples: an evented file has no period, so pyinstrument's 1 ms is used.
    assert profile.unit == Unit.SAMPLES and profile.sample_rate_hz == 1000
    assert profile.samples[(Frame("a"),)] == 5
    assert profile.samples[(Frame("a"), Frame("b"))] == 5


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{",
        '{"profiles": []}',
        '{"profiles": [{"type": "sampled"}], "shared": {"frames": []}}',
    ],
)
def test_speedscope_rejects_garbage_clearly(text: str) -> None:
    with pytest.raises(FormatError):
        speedscope.loads(text)


def test_wire_window_round_trips_and_checks_limits() -> None:
    profile = collapsed.loads(PY_SPY_RAW)
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    window = wire.from_profile(
        profile,
        service="trader",
        idempotency_key="k" * 16,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels={"host": "a"},
    )
    again = wire.Window.model_validate_json(window.model_dump_json())
    assert wire.to_profile(again).samples == profile.samples
    wire.check_limits(again, wire.WindowLimits())
    with pytest.raises(wire.LimitExceeded, match="max_frames_per_stack is 4, got 5"):
        wire.check_limits(again, wire.WindowLimits(max_frames_per_stack=4))


def test_pyroscope_app_names() -> None:
    assert pyroscope.parse_app_name("app.cpu{env=prod, region = eu}") == (
        "app.cpu",
        {"env": "prod", "region": "eu"},
    )
    assert pyroscope.parse_app_name("app") == ("app", {})
    with pytest.raises(FormatError):
        pyroscope.parse_app_name("app{env}")


def test_the_hot_path_wrapper_frames_are_folded_away_on_the_way_in() -> None:
    """`@hot_path`'s wrapper (sync and async, by short name or qualname, wherever hotpath is
    installed) leaves every stack; stacks that become equal merge; a stack of nothing else
    stays as it is."""
    from datetime import UTC, datetime, timedelta

    from hotpath.profiler.formats import window as wire

    now = datetime.now(UTC)
    SITE = "/venv/site-packages/hotpath/profiler"
    window = wire.Window(
        service="s",
        idempotency_key="fold-test-1",
        start=now - timedelta(seconds=1),
        end=now,
        sample_rate_hz=100,
        frames=[
            ("main", "app.py", 1),
            ("timed", "/repo/profiler/hotpath/recorder.py", 237),
            ("execute_order", "app.py", 10),
            ("HotPath.__call__.<locals>.timed_async", f"{SITE}/hotpath/recorder.py", 227),
            ("risk_check", "app.py", 20),
            ("timed", "my_app/timing.py", 5),  # someone else's `timed`: kept
        ],
        stacks=[[0, 1, 2], [0, 2], [0, 3, 2, 4], [1], [0, 5]],
        counts=[5, 3, 2, 1, 4],
    )
    named = [[window.frames[i][0] for i in stack] for stack in window.stacks]
    assert named == [
        ["main", "execute_order"],
        ["main", "execute_order", "risk_check"],
        ["timed"],
        ["main", "timed"],
    ]
    assert window.counts == [8, 2, 1, 4]
    assert [f[1] for f in window.frames].count("my_app/timing.py") == 1
