"""Comparing profiles: flags what got slower, nothing else; the diff tree adds up."""

from __future__ import annotations

import random

import pytest

from hotpath.profiler.analysis.diff import compare, estimate_dispersion
from hotpath.profiler.analysis.difftree import diff_tree
from hotpath.profiler.formats import collapsed
from hotpath.profiler.model import Profile

SPLIT = {
    "main;handle;risk_check": 40,
    "main;handle;price_quote": 30,
    "main;handle;route": 20,
    "main;handle": 5,
    "main;log": 5,
}


def sampled(weights: dict[str, float], n: int, seed: int) -> Profile:
    """n samples drawn from a known split, as a sampler would see it."""
    rng = random.Random(seed)
    stacks, probabilities = zip(*weights.items(), strict=True)
    profile = Profile()
    for stack, count in zip(stacks, _multinomial(rng, n, probabilities), strict=True):
        profile.add(collapsed.loads(f"{stack} 1").samples.popitem()[0], count)
    return profile


def _multinomial(rng: random.Random, n: int, weights) -> list[int]:  # type: ignore[no-untyped-def]
    counts = [0] * len(weights)
    for i in rng.choices(range(len(weights)), weights=weights, k=n):
        counts[i] += 1
    return counts


def slower(weights: dict[str, float], stack: str, factor: float) -> dict[str, float]:
    return {s: w * factor if s == stack else w for s, w in weights.items()}


@pytest.mark.parametrize("seed", range(5))
def test_the_function_that_got_slower_is_flagged_and_nothing_else(seed: int) -> None:
    base = sampled(SPLIT, 6000, seed)
    head = sampled(slower(SPLIT, "main;handle;price_quote", 1.5), 4000, seed + 100)
    result = compare(base, head)
    assert [f.function for f in result.flagged] == ["price_quote"]
    top = result.functions[0]
    assert top.function == "price_quote" and 8 < top.change_pp < 16  # 30/100 -> 45/115
    assert top.ms_per_cpu_s == pytest.approx(10 * top.change_pp)
    handle = next(f for f in result.functions if f.function == "handle")
    assert handle.total_change_pp > 0 and not handle.flagged  # grew only through its callee


@pytest.mark.parametrize("seed", range(5))
def test_a_profile_compared_with_a_sample_of_itself_flags_nothing(seed: int) -> None:
    base, head = sampled(SPLIT, 5000, seed), sampled(SPLIT, 3000, seed + 50)
    assert compare(base, head).flagged == []
    assert compare(base, base).flagged == []


def test_comparing_an_empty_profile_is_an_error() -> None:
    with pytest.raises(ValueError, match="base profile has no samples"):
        compare(Profile(), sampled(SPLIT, 10, 1))


def test_diff_tree_columns_add_up() -> None:
    base = collapsed.loads("main;a;b 3\nmain;a 1\nmain;c 2\n")
    head = collapsed.loads("main;a;b 5\nmain;d 4\n")
    tree = diff_tree(base, head)
    names = [f["name"] for f in tree["functions"]]
    nodes = tree["nodes"]
    by_path = {}
    for i in range(1, len(nodes["fn"])):
        path, j = [], i
        while j > 0:
            path.append(names[nodes["fn"][j]])
            j = nodes["parent"][j]
        by_path[";".join(reversed(path))] = (
            nodes["base"][i],
            nodes["head"][i],
            nodes["base_self"][i],
            nodes["head_self"][i],
        )
    assert by_path == {
        "main": (6, 9, 0, 0),
        "main;a": (4, 5, 1, 0),
        "main;a;b": (3, 5, 3, 5),
        "main;c": (2, 0, 2, 0),
        "main;d": (0, 4, 0, 4),
    }
    assert nodes["base"][0] == 6 and nodes["head"][0] == 9


def test_inner_functions_count_as_their_outer_functions_self_time() -> None:
    genexpr = "main (a.py:1);price (a.py:5);price.<locals>.<genexpr> (a.py:6)"
    torn = "price.<locals>.<genexpr> (a.py:6)"  # a non-blocking read that missed the callers
    base = collapsed.loads(
        f"{genexpr} 200\n{torn} 10\nmain (a.py:1);price (a.py:5) 90\n"
        "main (a.py:1);risk (a.py:9) 700\n"
    )
    head = collapsed.loads(
        f"{genexpr} 400\n{torn} 20\nmain (a.py:1);price (a.py:5) 180\n"
        "main (a.py:1);risk (a.py:9) 700\n"
    )
    result = compare(base, head)
    assert [f.function for f in result.flagged] == ["price"]
    assert "price.<locals>.<genexpr>" not in {f.function for f in result.functions}
    assert result.functions[0].base_share == pytest.approx(0.3)


def test_dispersion_is_about_one_for_sampling_noise_and_larger_for_a_drifting_process() -> None:
    steady = [sampled(SPLIT, 1000, seed) for seed in range(20)]
    assert estimate_dispersion(steady) < 1.6
    rng = random.Random(5)  # every function's speed wanders from window to window
    drifting = [
        sampled({s: w * rng.uniform(0.6, 1.4) for s, w in SPLIT.items()}, 1000, seed)
        for seed in range(20)
    ]
    assert estimate_dispersion(drifting) > 3
    assert estimate_dispersion(steady[:1]) == 1.0


def test_a_drifting_process_needs_a_larger_change_to_be_flagged() -> None:
    base = sampled(SPLIT, 6000, 1)
    head = sampled(slower(SPLIT, "main;handle;route", 1.15), 6000, 2)
    assert [f.function for f in compare(base, head).flagged] == ["route"]
    assert compare(base, head, dispersion=8.0).flagged == []
