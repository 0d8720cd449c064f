"""The leak ranking on series whose truth is known: growth in most captures is flagged; a
step, churn, growth in one capture of two, and growth under the floor are not."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hotpath.profiler.analysis.leaks import FLOOR_BYTES_PER_S, rank_leaks
from hotpath.profiler.formats.memory_capture import HeldSeries

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Capture:
    start: datetime
    end: datetime
    functions: list[HeldSeries] = field(default_factory=list)


def series(name: str, values: list[int], duration: float = 10.0) -> HeldSeries:
    times = [i * duration / (len(values) - 1) for i in range(len(values))]
    return HeldSeries(
        function=name,
        file="app.py",
        held_bytes=values[-1],
        allocations_held=1,
        points=list(zip(times, values, strict=True)),
    )


def capture(index: int, *functions: HeldSeries) -> Capture:
    start = START + timedelta(minutes=10 * index)
    return Capture(start, start + timedelta(seconds=10), list(functions))


def leak(rate: float, rng: random.Random) -> list[int]:
    return [int(rate * i * 10 / 199 + rng.uniform(0, 3000)) for i in range(200)]


def test_growth_in_every_capture_is_flagged_and_ranked_first() -> None:
    rng = random.Random(1)
    captures = [
        capture(
            i,
            series("leaks", leak(20_000, rng)),
            series("churn", [rng.choice([0, 50_000]) for _ in range(200)]),
        )
        for i in range(3)
    ]
    ranks = rank_leaks(captures)
    assert ranks[0].function == "leaks" and ranks[0].flagged and ranks[0].captures == 3
    assert ranks[0].low_bytes_per_s <= 20_000 <= ranks[0].high_bytes_per_s
    assert not next(r for r in ranks if r.function == "churn").flagged


def test_a_step_is_not_flagged() -> None:
    step = [0] * 20 + [2_000_000] * 180  # a cache filled early in the capture
    ranks = rank_leaks([capture(0, series("cache", step))])
    assert not ranks[0].flagged


def test_growth_in_one_capture_of_two_is_not_flagged() -> None:
    rng = random.Random(2)
    ranks = rank_leaks([capture(0, series("warmup", leak(50_000, rng))), capture(1)])
    assert ranks[0].function == "warmup" and ranks[0].captures == 1
    assert not ranks[0].flagged
    assert ranks[0].growth_bytes_per_s < 30_000  # zero in the capture it was absent from


def test_significant_growth_under_the_floor_is_not_flagged() -> None:
    slow = [int(i * FLOOR_BYTES_PER_S / 2 * 10 / 199) for i in range(200)]
    ranks = rank_leaks([capture(0, series("slow", slow)), capture(1, series("slow", slow))])
    assert ranks[0].p_value < 1e-6 and not ranks[0].flagged


def test_growth_in_most_captures_is_flagged() -> None:
    # A leak that pauses while the process is quiet (one capture in three): still flagged;
    # warm-up growth in one capture of three: not.
    rng = random.Random(3)
    flat = [1000] * 200
    ranks = rank_leaks(
        [
            capture(0, series("leaks", leak(20_000, rng)), series("warmup", leak(50_000, rng))),
            capture(1, series("leaks", flat), series("warmup", flat)),
            capture(2, series("leaks", leak(20_000, rng)), series("warmup", flat)),
        ]
    )
    found = {r.function: r for r in ranks}
    assert found["leaks"].flagged and found["leaks"].p_value < 0.001
    assert not found["warmup"].flagged


def test_bytes_held_from_the_start_are_not_growth() -> None:
    # A structure built as the capture began holds 5 MB throughout: not growth, ranked below
    # a slow leak (an unfitted series' rate is its change, not held bytes / duration).
    rng = random.Random(4)
    ranks = rank_leaks(
        [capture(0, series("built", [5_000_000] * 200), series("slow", leak(3_000, rng)))]
    )
    assert [r.function for r in ranks] == ["slow", "built"]
    assert ranks[1].growth_bytes_per_s == 0 and not ranks[1].flagged


def test_no_captures_no_ranks_and_limit() -> None:
    assert rank_leaks([]) == []
    rng = random.Random(3)
    many = capture(0, *(series(f"f{i}", leak(1000 * (i + 1), rng)) for i in range(5)))
    assert [r.function for r in rank_leaks([many], limit=2)] == ["f4", "f3"]
