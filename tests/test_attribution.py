"""Budget attribution as pure logic: stacks inside the hot-path function, split per function."""

from __future__ import annotations

import pytest

from hotpath.profiler.analysis.attribution import (
    OWN_TIME,
    attribute,
    matches,
    parse_function,
    under_function,
)
from hotpath.profiler.model import Frame, Profile

MAIN = Frame("main", "app.py", 1)
TIMED = Frame("timed", "profiler/hotpath/recorder.py", 300)
ORDER = Frame("execute_order", "trading/engine.py", 10)
RISK = Frame("risk_check", "trading/risk.py", 5)
QUOTE = Frame("price_quote", "trading/quotes.py", 7)
SQL = Frame("query", "trading/db.py", 3)
IDLE = Frame("housekeeping", "app.py", 40)


def profile(*stacks: tuple[tuple[Frame, ...], int]) -> Profile:
    p = Profile()
    for stack, weight in stacks:
        p.add(stack, weight)
    return p


def test_shares_split_the_samples_inside_the_hot_path_only() -> None:
    p = profile(
        ((MAIN, TIMED, ORDER, RISK), 50),
        ((MAIN, TIMED, ORDER, RISK, SQL), 10),
        ((MAIN, TIMED, ORDER, QUOTE), 30),
        ((MAIN, TIMED, ORDER), 10),
        ((MAIN, IDLE), 400),  # outside the hot path: not part of its budget
    )
    split = attribute(p, "execute_order", "/srv/trading/engine.py", mean_ms=80.0)
    assert split.samples_inside == 100 and split.samples_total == 500
    children = {c.name: c for c in split.children}
    assert set(children) == {"risk_check", "price_quote", OWN_TIME}
    assert children["risk_check"].total_share == pytest.approx(0.6)
    assert children["risk_check"].self_share == pytest.approx(0.5)
    assert children["risk_check"].total_ms == pytest.approx(48.0)
    assert children["price_quote"].total_ms == pytest.approx(24.0)
    assert children[OWN_TIME].total_ms == pytest.approx(8.0)
    assert sum(c.total_share for c in split.children) == pytest.approx(1.0)
    functions = {f.name: f for f in split.functions}
    assert functions["execute_order"].total_share == pytest.approx(1.0)
    assert functions["query"].self_ms == pytest.approx(8.0)
    assert "housekeeping" not in functions and "main" not in functions


def test_recursion_and_nested_calls_count_once_in_the_outer_call() -> None:
    p = profile(((MAIN, ORDER, RISK, ORDER, QUOTE), 10), ((MAIN, ORDER, QUOTE), 10))
    split = attribute(p, "execute_order", "trading/engine.py", mean_ms=None)
    assert split.samples_inside == 20
    functions = {f.name: f for f in split.functions}
    assert functions["execute_order"].total_share == pytest.approx(1.0)
    assert functions["price_quote"].total_share == pytest.approx(1.0)
    assert functions["price_quote"].self_ms is None
    rooted = under_function(p, "execute_order", "trading/engine.py")
    assert all(stack[0] == ORDER for stack in rooted.samples) and rooted.total == 20


def test_the_frame_must_be_the_same_function_in_the_same_file() -> None:
    assert matches(ORDER, "execute_order", "/srv/app/trading/engine.py")
    assert matches(ORDER, "execute_order", "engine.py")  # the recorder cut a long path
    assert not matches(ORDER, "execute_order", "/srv/app/other/engine_v2.py")
    assert not matches(ORDER, "execute_order", "/srv/app/backtest/engine.py")
    assert not matches(ORDER, "Engine.execute_order", "trading/engine.py")
    assert matches(Frame("execute_order"), "execute_order", "trading/engine.py")


def test_no_samples_inside_gives_an_empty_split_not_an_error() -> None:
    split = attribute(profile(((MAIN, IDLE), 5)), "execute_order", "engine.py", 10.0)
    assert split.samples_inside == 0 and split.children == [] and split.functions == []


def test_function_names_with_parentheses_parse() -> None:
    assert parse_function("Book.match (trading/book (v2).py)") == (
        "Book.match",
        "trading/book (v2).py",
    )
    assert parse_function("<lambda>") == ("<lambda>", "")
