"""An empirical oracle for the gate's real corpus: how well could ANY test of a broad family
do on these runs if it knew the truth? An optimistic upper bound beside hotpath's own figures.

    .venv/bin/python benchmarks/gate_real_oracle.py [--all-variants] [--json PATH|-]
        [--misses [PROJECT ...]]

Over exactly the comparisons `gate_real.py` makes (`gate_real.cases`), per project and mode:
* head: log of a per-run statistic (`min` or `median`; one-round benchmarks: the one time) per
  benchmark, pooled over the mode's head runs: "single" = one head run; "pooled" = the three
  head runs; "confirm" = the head run and its first `CONFIRM` spare runs (nearest first) all
  at once, which is more than `--confirm` gets (it re-runs only the benchmarks it suspects,
  a round at a time, and stops once it has decided);
* residual: head minus the baseline runs' centre; pooling "median" (median of the head runs,
  median of the baselines) or "fastest" (the fastest of each: a busy machine only slows);
* shift removal: "off"; "shift" subtracts the median residual of the OTHER benchmarks of the
  comparison (a whole-run slowdown); "shift-known" takes that median over the benchmarks
  whose true effect is small (|effect| < 5%) only, which only an oracle knows;
* z: residual minus its median over the project's same-commit comparisons, over a scale
  measured there too, per benchmark: "mad" 1.4826 x MAD (floored), or "range" the largest
  same-commit deviation on that side of the median (an in-sample per-benchmark envelope);
* thresholds, per project, mode and variant, fitted in-sample so that the unchanged benchmark
  comparisons are flagged at most 1% of the time and at most 1 in 20 same-commit comparisons
  fail (z > T_up anywhere; counting as `gate_real.score` does): "sym" the smallest T with
  |z| > T, "asym" the pair (T_up, T_down) sharing that 1% that finds the most changes.
  z > T_up is "regressed", z < -T_down "improved".
The four basic variants (median pooling, mad scale, sym; min/median, shift off/on) are always
shown; BEST is the variant with the highest min(found slowdowns, found speedups) (then their
sum, then fewer wrong-way flags and false alarms), chosen per project and mode: "BEST mad" of
the 24 mad-scale variants (one threshold in robust-z units for the whole project), "BEST of
all" of all 48 (with "range", nearly a threshold per benchmark at the edge of its own
same-commit values: the loosest bound). The "all" rows add up counts, BEST rows each
project's own best.

Why it is an optimistic bound: scales and thresholds are fitted in-sample, per project, on the
very comparisons they are scored on (a real gate fixes them before it sees a run); it knows
which benchmarks are unchanged ("shift-known", the null centre); "confirm" pools all its
re-runs at once; and BEST is picked per project and mode after the fact. If even BEST finds
far fewer than 90% of a project's changed benchmarks in a mode, the bar is data-limited there.
The converse does not hold: "range" flags what lies outside 20 same-commit values, which out
of sample would be about 1 in 20 per benchmark, not 1%. One thing is not in its favour: in
"confirm" the same-commit heads have only 5 runs (4 spare), the slowdown/speedup ones 11.

`--misses` lists the changed benchmark comparisons BEST misses (default: where it is under the
bar), with their z and how busy the machine was in the head runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.formats.pytest_benchmark import BenchRun, BenchStats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.gate_real import (
    CONFIRM,
    CORPUS,
    MAX_FALSE_ALARMS,
    MAX_SUITE_FAILURES,
    MIN_FOUND,
    POOLED,
    VARIANTS,
    Case,
    Tally,
    Truth,
    cases,
    hotpath_gates,
    load_variant,
    projects,
    runs_truth,
    score,
    study,
)

MODES = ("single", "pooled", "confirm")
STATISTICS = ("min", "median")
POOLS = ("median", "fastest")
SHIFTS = ("off", "on", "known")
SCALES = ("mad", "range")
SIDES = ("sym", "asym")
SCALE_FLOOR = 0.005  # log units: no benchmark is trusted to repeat within 0.5%
SMALL_EFFECT = math.log(1.05)  # "shift-known": benchmarks the plant barely moves
TIERS = ("mad", None)  # BEST rows: of the mad-scale variants, of all
BUSY = math.log(1.15)  # a run whose benchmarks are mostly this much over its side's quiet level


@dataclass(frozen=True)
class Variant:
    statistic: str
    pool: str = "median"
    shift: str = "off"
    scale: str = "mad"
    sides: str = "sym"

    @property
    def name(self) -> str:
        parts = [
            self.statistic,
            "fastest" if self.pool == "fastest" else "",
            {"off": "", "on": "shift", "known": "shift-known"}[self.shift],
            "range" if self.scale == "range" else "",
            "asym" if self.sides == "asym" else "",
        ]
        return ", ".join(p for p in parts if p)


CORE = [Variant(s, shift=h) for s in STATISTICS for h in ("off", "on")]
FAMILY = CORE + [
    v
    for v in itertools.starmap(Variant, itertools.product(STATISTICS, POOLS, SHIFTS, SCALES, SIDES))
    if v not in CORE
]


def _log_value(bench: BenchStats | None, statistic: str) -> float:
    if bench is None:
        return math.nan
    value = bench.median if bench.rounds <= 1 else getattr(bench, statistic)
    return math.log(value) if value > 0 else math.nan


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    """Column medians ignoring NaN; NaN where a column has no value (without a warning)."""
    out = np.full(stack.shape[1], math.nan)
    present = ~np.all(np.isnan(stack), axis=0)
    out[present] = np.nanmedian(stack[:, present], axis=0)
    return out


def _nanmin(stack: np.ndarray) -> np.ndarray:
    out = np.full(stack.shape[1], math.nan)
    present = ~np.all(np.isnan(stack), axis=0)
    out[present] = np.nanmin(stack[:, present], axis=0)
    return out


class Logs:
    """Log statistic per run and benchmark, computed once per project."""

    def __init__(self, runs: list[BenchRun], names: list[str]) -> None:
        self.rows: dict[tuple[int, str], np.ndarray] = {}
        for run in runs:
            stats = run.by_fullname()
            for statistic in STATISTICS:
                self.rows[id(run), statistic] = np.array(
                    [_log_value(stats.get(n), statistic) for n in names]
                )

    def pooled(self, runs: list[BenchRun], statistic: str, pool: str) -> np.ndarray:
        stack = np.vstack([self.rows[id(r), statistic] for r in runs])
        return _nanmin(stack) if pool == "fastest" else _nanmedian(stack)


def leave_one_out_median(values: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per position i: the median of values[j] over j != i with use[j] (0 if there is none)."""
    n = values.size
    grid = np.where(use & ~np.isnan(values), values, math.nan)[None, :].repeat(n, axis=0)
    np.fill_diagonal(grid, math.nan)
    return np.nan_to_num(_nanmedian(grid.T), nan=0.0)


@dataclass
class Comparison:
    """One case under one mode, statistic and pooling: residual per benchmark (NaN: absent)."""

    case: Case
    residual: np.ndarray
    shift: np.ndarray  # median residual of the other benchmarks
    shift_known: np.ndarray  # the same over the small-effect benchmarks only
    unchanged: np.ndarray  # what gate_real.score counts as unchanged here
    changed: np.ndarray  # "changed" benchmarks (slowdown and speedup cases)


def head_runs(case: Case, mode: str) -> list[BenchRun]:
    if mode == "confirm":
        return [case.heads[0], *case.spare[:CONFIRM]]
    return case.heads  # one run in "single", POOLED in "pooled"


def masks(case: Case, names: list[str], truth: dict[str, Truth]) -> tuple[np.ndarray, ...]:
    judged = {b.fullname for b in case.heads[0].benchmarks}
    known = [n in judged and n in truth for n in names]
    if case.scenario == "same-commit":
        return np.array(known), np.zeros(len(names), dtype=bool)
    cls = [truth[n].cls if k else "" for n, k in zip(names, known, strict=True)]
    return np.array([c == "unchanged" for c in cls]), np.array([c == "changed" for c in cls])


def comparisons(
    runs: tuple[list[BenchRun], list[BenchRun]],
    logs: Logs,
    names: list[str],
    truth: dict[str, Truth],
    key: tuple[str, str, str],
) -> list[Comparison]:
    mode, statistic, pool = key
    small = np.array([abs(truth[n].effect_min) < SMALL_EFFECT for n in names])
    out = []
    for case in cases(*runs, POOLED if mode == "pooled" else 1):
        head = logs.pooled(head_runs(case, mode), statistic, pool)
        residual = head - logs.pooled(case.baselines, statistic, pool)
        unchanged, changed = masks(case, names, truth)
        out.append(
            Comparison(
                case=case,
                residual=residual,
                shift=leave_one_out_median(residual, np.ones(len(names), dtype=bool)),
                shift_known=leave_one_out_median(residual, small),
                unchanged=unchanged,
                changed=changed,
            )
        )
    return out


def adjusted(comp: Comparison, shift: str) -> np.ndarray:
    if shift == "on":
        return comp.residual - comp.shift
    if shift == "known":
        return comp.residual - comp.shift_known
    return comp.residual


def standardiser(same_commit: np.ndarray, scale: str) -> tuple[np.ndarray, ...]:
    """Per benchmark: the null centre, and the scales above and below it."""
    centre = np.nan_to_num(_nanmedian(same_commit))
    deviation = same_commit - centre
    if scale == "mad":
        mad = 1.4826 * _nanmedian(np.abs(deviation))
        up = down = np.maximum(np.nan_to_num(mad, nan=SCALE_FLOOR), SCALE_FLOOR)
    else:  # NaN (absent) compares False: it widens nothing
        up = np.maximum(np.where(deviation > 0, deviation, 0).max(axis=0), SCALE_FLOOR)
        down = np.maximum(np.where(deviation < 0, -deviation, 0).max(axis=0), SCALE_FLOOR)
    return centre, up, down


def _smallest_threshold(values: np.ndarray, allowed: int) -> float:
    """The smallest T >= 0 with at most `allowed` of `values` strictly above it."""
    ranked = np.sort(values)[::-1]
    return max(float(ranked[allowed]), 0.0) if allowed < ranked.size else 0.0


@dataclass
class Pools:
    """The z values the thresholds are fitted on, flattened."""

    unchanged: np.ndarray
    worst: np.ndarray  # per same-commit comparison: its largest z among judged benchmarks
    slow: np.ndarray  # changed benchmarks, slowdown cases
    speed: np.ndarray  # changed benchmarks, speedup cases


def pools(comps: list[Comparison], zs: list[np.ndarray]) -> Pools:
    unchanged, worst, slow, speed = [], [], [], []
    for comp, z in zip(comps, zs, strict=True):
        z = np.nan_to_num(z)
        unchanged.append(z[comp.unchanged])
        if comp.case.scenario == "same-commit":
            worst.append(z[comp.unchanged].max(initial=-math.inf))
        (slow if comp.case.scenario == "slowdown" else speed).append(z[comp.changed])
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    return Pools(cat(unchanged), np.array(worst), cat(slow), cat(speed))


def _share(hits: int, total: int) -> float:
    return hits / total if total else 1.0


def thresholds(p: Pools, sides: str) -> tuple[float, float]:
    """(T_up, T_down): the smallest meeting both false-alarm bars ("sym": one T), or the
    pair that finds the most ("asym")."""
    allowed = math.floor(MAX_FALSE_ALARMS * p.unchanged.size + 1e-9)
    suite = _smallest_threshold(p.worst, math.floor(MAX_SUITE_FAILURES * p.worst.size + 1e-9))
    if sides == "sym":
        t = max(_smallest_threshold(np.abs(p.unchanged), allowed), suite)
        return t, t
    best: tuple[tuple[float, float], tuple[float, float]] | None = None
    for used in range(allowed + 1):
        up = max(_smallest_threshold(p.unchanged, used), suite)
        spent = int(np.sum(p.unchanged > up))
        down = _smallest_threshold(-p.unchanged, allowed - spent)
        slow = _share(int(np.sum(p.slow > up)), p.slow.size)
        speed = _share(int(np.sum(p.speed < -down)), p.speed.size)
        rank = (min(slow, speed), slow + speed)
        if best is None or rank > best[0]:
            best = (rank, (up, down))
    assert best is not None
    return best[1]


@dataclass
class Result:
    tally: Tally
    up: float  # regressed: z > up
    down: float  # improved: z < -down
    z: list[np.ndarray]  # per comparison

    def label(self, sides: str) -> str:
        return f"{self.up:.2f}" if sides == "sym" else f"+{self.up:.2f}/-{self.down:.2f}"


def evaluate(
    comps: list[Comparison], names: list[str], truth: dict[str, Truth], v: Variant
) -> Result:
    residuals = [adjusted(c, v.shift) for c in comps]
    same = np.vstack(
        [r for r, c in zip(residuals, comps, strict=True) if c.case.scenario == "same-commit"]
    )
    centre, up_scale, down_scale = standardiser(same, v.scale)
    zs = []
    for r in residuals:
        d = r - centre
        zs.append(np.where(d > 0, d / up_scale, d / down_scale))
    up, down = thresholds(pools(comps, zs), v.sides)
    tally = Tally()
    for comp, z in zip(comps, zs, strict=True):
        regressed = {n for n, x in zip(names, z, strict=True) if x > up}
        improved = {n for n, x in zip(names, z, strict=True) if x < -down}
        score(comp.case, (regressed, improved, bool(regressed)), truth, tally)
    return Result(tally=tally, up=up, down=down, z=zs)


def balanced(tally: Tally) -> tuple[float, float, int, int]:
    """What BEST maximises: min(found slowdowns, found speedups), then their sum, then fewer
    flags in the wrong direction, then fewer false alarms."""
    rates = tally.rates()
    slow, speed = rates["found_slowdown"] or 0.0, rates["found_speedup"] or 0.0
    return min(slow, speed), slow + speed, -tally.wrong_direction, -tally.false_alarms


@dataclass
class ProjectOracle:
    names: list[str]
    truth: dict[str, Truth]
    busy: dict[int, float]  # id(run): its busy score (log)
    side_index: dict[int, tuple[str, int]]  # id(run): side and index
    comps: dict[tuple[str, str, str], list[Comparison]]  # (mode, statistic, pool)
    results: dict[tuple[str, Variant], Result]

    def best(self, mode: str, scale: str | None = None) -> Variant:
        """The best variant of the family (`scale`: of those with that scale only)."""
        family = [v for v in FAMILY if scale in (None, v.scale)]
        return max(family, key=lambda v: balanced(self.results[mode, v].tally))


def busy_scores(logs: Logs, sides: dict[str, list[BenchRun]]) -> dict[int, float]:
    """Per run: the upper quartile over its benchmarks of log(min) minus its side's lower
    quartile (the quiet level, even when many runs of the side were slowed). Contention
    comes in bursts within a run, so the upper quartile, not the median."""
    out = {}
    for runs in sides.values():
        stack = np.vstack([logs.rows[id(r), "min"] for r in runs])
        quiet = np.nanpercentile(stack, 25, axis=0)
        for run, row in zip(runs, stack, strict=True):
            out[id(run)] = float(np.nanpercentile(row - quiet, 75))
    return out


def project_oracle(project_dir: Path) -> ProjectOracle | None:
    same, change = (load_variant(project_dir, v) for v in VARIANTS)
    if len(same) < 2 or len(change) < 2:
        return None
    truth = runs_truth(same, change)
    names = [b.fullname for b in same[0].benchmarks if b.fullname in truth]
    logs = Logs(same + change, names)
    sides = {"same": same, "change": change}
    oracle = ProjectOracle(
        names=names,
        truth=truth,
        busy=busy_scores(logs, sides),
        side_index={id(r): (s, i) for s, runs in sides.items() for i, r in enumerate(runs)},
        comps={},
        results={},
    )
    for key in itertools.product(MODES, STATISTICS, POOLS):
        oracle.comps[key] = comparisons((same, change), logs, names, truth, key)
    for mode in MODES:
        for v in FAMILY:
            comps = oracle.comps[mode, v.statistic, v.pool]
            oracle.results[mode, v] = evaluate(comps, names, truth, v)
    return oracle


GATE_MODES = dict(zip(MODES, (g.name for g in hotpath_gates(GateConfig())), strict=True))


def gate_tallies(corpus: Path) -> dict[str, dict[str, Tally]]:
    """{mode: {project or "all": Tally}} of today's hotpath gates (gate_real.study)."""
    figures = study(corpus, gates=hotpath_gates(GateConfig()))
    return {mode: figures.gates[name] for mode, name in GATE_MODES.items()}


def _pct(a: int, b: int, digits: int = 1) -> str:
    return f"{100 * a / b:.{digits}f}% ({a}/{b})" if b else "n/a"


def _row(project: str, mode: str, label: str, t: Tally, threshold: str) -> list[str]:
    return [
        project,
        mode,
        label,
        threshold,
        _pct(t.false_alarms, t.unchanged, 2),
        _pct(t.suite_failures, t.same_commit),
        _pct(t.found_slowdown, t.changed_slowdown),
        _pct(t.found_speedup, t.changed_speedup),
        str(t.wrong_direction),
    ]


HEADER = ["project", "mode", "variant", "T", "FA", "suite fail", "found slow", "found speed",
          "wrong"]  # fmt: skip


def rows(
    oracles: dict[str, ProjectOracle], gates: dict[str, dict[str, Tally]], shown: list[Variant]
) -> list[list[str]]:
    out = []
    for project, mode in itertools.product([*oracles, "all"], MODES):
        out.append(_row(project, mode, "hotpath gate", gates[mode][project], "-"))
        for v in shown:
            if project == "all":
                t = Tally()
                for o in oracles.values():
                    t.add(o.results[mode, v].tally)
                out.append(_row(project, mode, f"oracle {v.name}", t, "-"))
            else:
                r = oracles[project].results[mode, v]
                out.append(_row(project, mode, f"oracle {v.name}", r.tally, r.label(v.sides)))
        for scale in TIERS:
            label = f"BEST {scale or 'of all'}"
            if project == "all":
                best = Tally()
                for o in oracles.values():
                    best.add(o.results[mode, o.best(mode, scale)].tally)
                out.append(_row(project, mode, f"oracle {label} (each project's)", best, "-"))
            else:
                v = oracles[project].best(mode, scale)
                r = oracles[project].results[mode, v]
                out.append(_row(project, mode, f"oracle {label}: {v.name}", r.tally,
                                r.label(v.sides)))  # fmt: skip
    return out


def render(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *table]) for i in range(len(HEADER))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    out, last = [line(HEADER), line(["-" * w for w in widths])], None
    for r in table:
        if last is not None and r[:2] != last:
            out.append("")
        out.append(line(r))
        last = r[:2]
    return "\n".join(out)


@dataclass
class Miss:
    mode: str
    scenario: str
    head: str  # side and index of the first head run
    benchmark: str
    z: float
    threshold: float
    residual: float  # log ratio, head over baseline centre, before shift removal
    case_shift: float  # median residual of the other benchmarks
    head_busy: float  # the first head run's busy score
    busy_heads: int  # head runs with a busy score over BUSY
    heads: int


def misses(oracle: ProjectOracle, mode: str) -> list[Miss]:
    v = oracle.best(mode)
    result = oracle.results[mode, v]
    out = []
    for comp, z in zip(oracle.comps[mode, v.statistic, v.pool], result.z, strict=True):
        if comp.case.scenario == "same-commit":
            continue
        slowdown = comp.case.scenario == "slowdown"
        heads = head_runs(comp.case, mode)
        scores = [oracle.busy[id(r)] for r in heads]
        side, index = oracle.side_index[id(comp.case.heads[0])]
        for i in np.flatnonzero(comp.changed):
            if (z[i] > result.up) if slowdown else (z[i] < -result.down):
                continue
            out.append(
                Miss(
                    mode=mode,
                    scenario=comp.case.scenario,
                    head=f"{side} {index:02d}",
                    benchmark=oracle.names[i].split("::")[-1],
                    z=float(z[i]),
                    threshold=result.up if slowdown else -result.down,
                    residual=float(comp.residual[i]),
                    case_shift=float(comp.shift[i]),
                    head_busy=scores[0],
                    busy_heads=sum(s > BUSY for s in scores),
                    heads=len(scores),
                )
            )
    return out


def render_misses(project: str, mode: str, oracle: ProjectOracle) -> str:
    found = misses(oracle, mode)
    pct = lambda x: f"{100 * math.expm1(x):+.0f}%"  # noqa: E731
    busy = sum(m.busy_heads > m.heads / 2 for m in found)
    z = np.array([abs(m.z / m.threshold) for m in found])
    lines = [
        f"{project} {mode}, BEST = {oracle.best(mode).name}: {len(found)} misses, "
        f"{busy} with most head runs busy; |z|/T median "
        f"{np.median(z) if z.size else math.nan:.2f}, max {z.max(initial=0):.2f}"
    ]
    for m in found:
        lines.append(
            f"  {m.scenario:8} head {m.head}  {m.benchmark[:32]:32} z {m.z:+6.2f} "
            f"(T {m.threshold:+.2f})  residual {pct(m.residual):>5}  "
            f"others {pct(m.case_shift):>5}  head busy {pct(m.head_busy):>5}  "
            f"busy heads {m.busy_heads}/{m.heads}"
        )
    return "\n".join(lines)


def to_json(oracles: dict[str, ProjectOracle], gates: dict[str, dict[str, Tally]]) -> dict:
    def tally(t: Tally) -> dict:
        return {**asdict(t), **t.rates()}

    return {
        project: {
            mode: {
                "gate": tally(gates[mode][project]),
                "best": o.best(mode).name,
                "oracle": {
                    v.name: {
                        "t_up": o.results[mode, v].up,
                        "t_down": o.results[mode, v].down,
                        **tally(o.results[mode, v].tally),
                    }
                    for v in FAMILY
                },
            }
            for mode in MODES
        }
        for project, o in oracles.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--all-variants", action="store_true", help="a row per variant (48)")
    parser.add_argument("--json", help="write the figures as JSON to this file ('-': stdout)")
    parser.add_argument("--misses", nargs="*", metavar="PROJECT",
                        help="list BEST's misses (no name: where it is under the bar)")  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    oracles = {p: o for p in projects(args.corpus) if (o := project_oracle(args.corpus / p))}
    oracle_seconds = time.perf_counter() - started
    gates = gate_tallies(args.corpus)
    seconds = time.perf_counter() - started
    if args.json:
        payload = json.dumps({"seconds": round(seconds, 1), **to_json(oracles, gates)}, indent=1)
        if args.json == "-":
            print(payload)
            return
        Path(args.json).write_text(payload + "\n")
    print(render(rows(oracles, gates, FAMILY if args.all_variants else CORE)))
    print(
        f"\nBar: FA <= {MAX_FALSE_ALARMS:.0%}, suite failures <= 1 in "
        f"{round(1 / MAX_SUITE_FAILURES)}, found >= {MIN_FOUND:.0%} each way. Oracle thresholds "
        f"fitted in-sample to the first two; 'confirm' pools the head run and its first "
        f"{CONFIRM} spare runs at once; BEST is the best of {len(FAMILY)} variants."
    )
    if args.misses is not None:
        for project, mode in itertools.product(args.misses or oracles, MODES):
            o = oracles[project]
            if args.misses or balanced(o.results[mode, o.best(mode)].tally)[0] < MIN_FOUND:
                print("\n" + render_misses(project, mode, o))
    print(f"\n{seconds:.1f} s in all ({oracle_seconds:.1f} s the oracle, the rest the gate).")


if __name__ == "__main__":
    main()
