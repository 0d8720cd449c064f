"""The benchmark gate on real runs: the leave-one-out study of benchmarks/gate_real.py over the
committed corpus tests/data/gate_corpus (five projects' own pytest-benchmark suites, many runs
at one commit and as many with a slowdown planted), judged against truth.py's effects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.gate_corpus.truth import CORPUS, VARIANTS, corpus_truth, projects, to_json
from benchmarks.gate_real import (
    GATES,
    HISTORY,
    TODAY,
    Figures,
    Tally,
    check_bar,
    make_case,
    restricted,
    study,
)
from hotpath.profiler.formats.pytest_benchmark import load_path

# The whole bar (issue 13): --confirm 10 meets it on this corpus. One run and three pooled
# runs do not: on unchanged code they stay within it, but the single-shot pyelftools suite
# and simple_parsing's five benchmarks, run through a long busy period of the machine, hide
# most of their 15-28% changes from so few runs (benchmarks/gate_real_oracle.py: no test of
# its family reaches 90% there either).
CONFIRM = f"{TODAY} --confirm 10"
MEETS_BAR = [CONFIRM]
SHORT_OF_BAR = [TODAY, f"{TODAY}, 3 runs pooled"]
BEFORE_GATE = "hotpath before"  # the gate before it was fitted to real runs
# the projects whose runs let a change of 15% or more be told from the machine's noise
CLEAR_PROJECTS = ("cattrs", "dacite", "fastjsonschema")
MEAN_RULE = "pytest-benchmark mean:5%"
MIN_RUNS = 10  # per side: fewer make truth.py's classes and the rates too coarse to judge


def _runs_present() -> dict[str, tuple[int, int]]:
    if not CORPUS.is_dir():
        return {}
    return {
        p: tuple(len(list((CORPUS / p / v).glob("*.json"))) for v in VARIANTS)
        for p in projects(CORPUS)
    }


@pytest.fixture(scope="module")
def figures() -> Figures:
    present = _runs_present()
    if not present or min(min(n) for n in present.values()) < MIN_RUNS:
        pytest.skip(f"{CORPUS}: fewer than {MIN_RUNS} runs per side ({present})")
    return study(CORPUS)


def test_confirm_meets_the_bar(figures: Figures) -> None:
    """False alarms <= 1% per unchanged benchmark comparison, <= 1 same-commit suite run in 20
    failed, >= 90% of the changed benchmarks found each way, none the wrong way."""
    problems = check_bar(figures, MEETS_BAR)
    assert not problems, "\n".join(problems)


@pytest.mark.xfail(strict=True, reason="detection on pyelftools and simple_parsing is short")
def test_one_run_and_three_pooled_runs_meet_the_bar(figures: Figures) -> None:
    problems = check_bar(figures, SHORT_OF_BAR)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("gate", [TODAY, f"{TODAY}, 3 runs pooled", CONFIRM])
def test_unchanged_code_stays_within_the_false_alarm_bar(figures: Figures, gate: str) -> None:
    """<= 1% of unchanged benchmark comparisons flagged and <= 1 suite run in 20 failed (the
    gate before, judging medians under symmetric noise, failed 15 in 100 single runs)."""
    now = figures.gates[gate]["all"]
    assert now.false_alarms / now.unchanged <= 0.01
    assert now.suite_failures / now.same_commit <= 1 / 20


def test_the_gate_before_fails_unchanged_code_far_more_often(figures: Figures) -> None:
    now, before = figures.gates[TODAY]["all"], figures.gates[BEFORE_GATE]["all"]
    assert before.suite_failures / before.same_commit > 2 * now.suite_failures / now.same_commit
    assert before.false_alarms / before.unchanged > 2 * now.false_alarms / now.unchanged


@pytest.mark.parametrize("gate", [TODAY, f"{TODAY}, 3 runs pooled", CONFIRM])
def test_nothing_is_flagged_the_wrong_way(figures: Figures, gate: str) -> None:
    assert figures.gates[gate]["all"].wrong_direction == 0


def test_confirm_finds_the_changes_in_every_project(figures: Figures) -> None:
    """--confirm 10 in each project: >= 90% of the slowdowns of 15% or more found, >= 80% of
    the speed-ups (simple_parsing: 17 of 20, its five benchmarks' whole runs move by up to
    20% both ways, and a suite that small has no whole-run shift measured), at most 1
    same-commit suite run in 20 failing; >= 95% each way where the runs are clear."""
    for project, tally in figures.gates[CONFIRM].items():
        assert tally.found_slowdown / tally.changed_slowdown >= 0.90, project
        assert tally.found_speedup / tally.changed_speedup >= 0.80, project
        assert tally.suite_failures <= tally.same_commit / 20, project
    for project in CLEAR_PROJECTS:
        tally = figures.gates[CONFIRM][project]
        assert tally.found_slowdown / tally.changed_slowdown >= 0.95, project
        assert tally.found_speedup / tally.changed_speedup >= 0.95, project


def test_pytest_benchmark_mean_rule_raises_false_alarms_on_unchanged_code(
    figures: Figures,
) -> None:
    """A fact about real runs the study must keep showing: one baseline run and a 5% margin
    on the mean flag unchanged benchmarks far more often than 1 in 100."""
    tally = figures.gates[MEAN_RULE]["all"]
    assert tally.unchanged > 0
    assert tally.false_alarms / tally.unchanged > 0.01
    assert check_bar(figures, [MEAN_RULE])  # and so it misses the bar


def test_every_gate_is_judged_on_every_scenario(figures: Figures) -> None:
    for gate in GATES:
        tally = figures.gates[gate.name]["all"]
        assert tally.same_commit == sum(s for s, _ in figures.runs.values())
        assert tally.unchanged > 0
        assert tally.changed_slowdown > 0
        assert tally.changed_speedup > 0


def test_the_plant_changes_some_benchmarks_of_every_project() -> None:
    present = _runs_present()
    if not present or min(min(n) for n in present.values()) < MIN_RUNS:
        pytest.skip(f"{CORPUS}: fewer than {MIN_RUNS} runs per side ({present})")
    for project, truth in corpus_truth(CORPUS).items():
        assert any(t.cls == "changed" for t in truth.values()), project


def test_committed_truth_is_that_of_the_committed_runs() -> None:
    """truth.json is written by truth.py from the runs: it must not go stale when runs are
    added."""
    for project in projects(CORPUS) if CORPUS.is_dir() else []:
        path = CORPUS / project / "truth.json"
        if not path.is_file():
            pytest.skip(f"{path}: not written yet (python benchmarks/gate_corpus/truth.py)")
        committed = json.loads(path.read_text())["benchmarks"]
        fresh = to_json(corpus_truth(CORPUS)[project])["benchmarks"]
        assert {n: r["class"] for n, r in committed.items()} == {
            n: r["class"] for n, r in fresh.items()
        }
        for name, row in fresh.items():
            assert committed[name]["effect_min"] == pytest.approx(row["effect_min"], abs=1e-9)


def _bar_figures(tally: Tally, reports_speedups: bool = True) -> Figures:
    return Figures(
        gates={"g": {"all": tally}},
        runs={"p": (20, 20)},
        reports_speedups={"g": reports_speedups},
    )


def _good() -> Tally:
    return Tally(
        unchanged=1000, false_alarms=10, same_commit=20, suite_failures=1,
        changed_slowdown=100, found_slowdown=90, changed_speedup=100, found_speedup=90,
    )  # fmt: skip


def test_check_bar_passes_a_gate_at_the_bar() -> None:
    assert check_bar(_bar_figures(_good())) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"false_alarms": 11}, "false alarms"),
        ({"suite_failures": 2}, "suite failures"),
        ({"found_slowdown": 89}, "of slowdowns"),
        ({"found_speedup": 89}, "of speedups"),
        ({"wrong_direction": 1}, "wrong direction"),
        ({"changed_slowdown": 0, "found_slowdown": 0}, "no changed benchmarks"),
    ],
)
def test_check_bar_names_each_miss(change: dict[str, int], words: str) -> None:
    tally = _good()
    for key, value in change.items():
        setattr(tally, key, value)
    problems = check_bar(_bar_figures(tally))
    assert len(problems) == 1 and words in problems[0], problems


def test_check_bar_does_not_ask_a_rule_without_speedups_to_find_them() -> None:
    tally = _good()
    tally.found_speedup = tally.changed_speedup = 0
    assert check_bar(_bar_figures(tally, reports_speedups=False)) == []
    assert check_bar(_bar_figures(tally), ["missing"]) == ["missing: not measured"]


def _corpus_runs(project: str, variant: str, count: int) -> list:
    files = sorted((CORPUS / project / variant).glob("*.json"))[:count]
    if len(files) < count:
        pytest.skip(f"{CORPUS / project / variant}: fewer than {count} runs")
    return [load_path(f) for f in files]


def test_scenarios_keep_the_head_out_of_baseline_and_spare() -> None:
    n = HISTORY + 5
    same = _corpus_runs("dacite", "same", n)
    for k in (0, 7, n - 1):
        for heads in (1, 3):
            case = make_case("same-commit", k, same, None, heads)
            ids = {id(r) for r in case.heads}
            assert len(ids) == heads and case.heads[0] is same[k]
            assert len(case.baselines) == HISTORY
            assert not ids & {id(r) for r in case.baselines + case.spare}
            assert not {id(r) for r in case.baselines} & {id(r) for r in case.spare}
            assert len(case.baselines) + len(case.spare) + heads == n
            # the latest baseline run is the one nearest the head in time
            nearest = min(
                (i for i in range(n) if id(same[i]) not in ids), key=lambda i: (abs(i - k), i)
            )
            assert case.baselines[-1] is same[nearest]
    change = same[:HISTORY]  # stands in for the other side
    case = make_case("slowdown", 3, same, change, 1)
    assert case.baselines[-1] is change[3] and len(case.spare) == n - 1


def test_a_rerun_holds_only_the_benchmarks_asked() -> None:
    run = _corpus_runs("cattrs", "same", 1)[0]
    names = [b.fullname for b in run.benchmarks[:3]]
    rerun = restricted(run, names, "re-run 1")
    assert [b.fullname for b in rerun.benchmarks] == names
    assert rerun.source == "re-run 1" and rerun.options == run.options


def test_study_runs_on_a_small_corpus(tmp_path: Path) -> None:
    """The study on a copy of a few runs: every comparison is counted once."""
    for variant in VARIANTS:
        folder = tmp_path / "dacite" / variant
        folder.mkdir(parents=True)
        for f in sorted((CORPUS / "dacite" / variant).glob("*.json"))[:4]:
            (folder / f.name).write_bytes(f.read_bytes())
    if len(list((tmp_path / "dacite" / "same").glob("*.json"))) < 4:
        pytest.skip("fewer than 4 dacite runs in the corpus")
    result = study(tmp_path)
    assert result.runs == {"dacite": (4, 4)}
    truth = corpus_truth(tmp_path)["dacite"]
    classes = [t.cls for t in truth.values()]
    for gate in GATES:
        tally = result.gates[gate.name]["dacite"]
        assert tally.same_commit == 4 and tally.suite_failures <= 4
        # 4 same-commit comparisons of every benchmark, 4 slowdown and 4 speedup comparisons
        assert tally.unchanged == 4 * len(classes) + 8 * classes.count("unchanged")
        assert tally.changed_slowdown == tally.changed_speedup == 4 * classes.count("changed")
        assert tally.grey == 8 * classes.count("grey")
        assert result.gates[gate.name]["all"] == tally
