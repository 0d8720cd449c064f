"""Accuracy of `hotpath gate` against pytest-benchmark's `--benchmark-compare-fail` rules, on
the same synthetic benchmark histories with regressions of known size planted at known places.

    .venv/bin/python benchmarks/gate_accuracy.py [--trials 200] [--benchmarks 40] [--history 30]
        [--sizes 5,10,20] [--per-size 2] [--seed 1] [--confirm 2] [--rerun-shift fresh|shared]
        [--noise-scale 1] [--scale-spread S] [--confirm-head-runs 3] [--noise real|shared]
        [--max-sigma 0.05]

The defaults are the README's CI workflow: 30 runs of main kept, the suite run three times,
`--confirm 10` (`--history 10 --confirm-head-runs 1`: a young history and a single run).
Each trial builds a suite of benchmarks, `--history` baseline runs and the head runs, in which
two benchmarks per regression size are made slower (every round x (1 + size)); the others
are unchanged. Printed side by side: the share of planted regressions found per size, and the
false-alarm rate per benchmark-run (unchanged benchmarks flagged as regressed) for
* hotpath's gate with the whole history, and with only the latest run (its low-confidence mode),
* the gate given 3 head runs (the CI job runs the benchmarks three times: two more full runs,
  each with its own whole-run shift and fresh noise),
* the gate with `--confirm N` for N = `--confirm` (2), a cheaper 6 and the recommended 10,
  starting from `--confirm-head-runs` full head runs (3): exactly as `hotpath gate --confirm N`
  does (`confirm_sequentially`), the suspects of the first verdicts and 10 controls are
  re-run round by round (fresh draws of the same benchmarks, every round as slow as in head)
  and judged again after each round with the re-runs pooled in; settled suspects leave, the
  rest run again, up to N rounds. Its cost is printed beside it: benchmark re-runs (suspects
  and controls over all rounds) per CI run (`--per-size 0`: CI runs without regressions); the
  recommended line is summed up last,
* pytest-benchmark's `mean:5%` and `min:5%`: the first head run against the ONE latest
  baseline run, failing when the statistic is more than 5% worse (`--benchmark-compare-fail`).

Re-runs happen on the same machine shortly after the head run. Whether they share its whole-run
shift is not known from the corpus (its only runs minutes apart, dynamo-bench 0002/0003, also
changed `max_time`), so by default each re-run draws its own shift (`--rerun-shift fresh`, the
harder case: the gate measures each re-run's shift on the controls and assumes nothing);
`--rerun-shift shared` gives it the head run's shift.

Noise model. By default (`--noise real`) FITTED to the real corpus, tests/data/gate_corpus, by
benchmarks/gate_noise_fit.py (run-to-run noise of the minimum, whole-run shifts, calm tails,
slow episodes, contended runs; printed with the results). An oracle that knows that model
(centres and scales from 200 runs without a change, the shifts, tails and contention) is
printed first, once with the gate's suite-level control (Benjamini-Hochberg) and once with each
benchmark at p <= 1%. `--max-sigma` caps each benchmark's noise (0.05: the single-run bar).

The earlier model (`--noise shared`), MEASURED from the real files in
../shared/corpus/pytest-benchmark/ when the script starts (printed with the results):
* run-to-run noise per benchmark (log scale): the robust s.d. of log(median) ratios of the
  near-A/A pairs, after removing the whole-run shift, divided by sqrt(2) - karlicoss/cachew
  0008 vs 0009 (same machine, 208 benchmarks) and guilhermeleobas/dynamo-bench 0002 vs 0003
  (same commit, 102 benchmarks). Their mean is the median scale;
* spread of that scale between benchmarks (log-normal, s.d. in log): matched to the cachew
  series 0007/0008/0009 (208 common benchmarks, 2 degrees of freedom each): the variance across
  benchmarks of log(s^2) is reproduced by simulating t(4) noise with a grid of spreads. Those
  runs include real code changes, so this is an upper estimate;
* outlier rounds (1.5-3x slower): their share is the corpus' share of rounds that
  pytest-benchmark counts as `iqr_outliers` (cachew 0008, dynamo 0002) minus the share a
  log-normal run without outliers has (simulated); the model's own share is printed beside it;
* within a run: per-round times log-normal with the benchmark's coefficient of variation (median
  of the corpus' stddev/mean, cachew and dynamo), 5 to 500 rounds (cachew: 50, dynamo: 1-1316).
ASSUMED (printed as such):
* tails: Student t with 4 degrees of freedom: the cachew pair puts 4.3% of benchmarks beyond
  4 robust s.d. (a normal law: 0.006%); the script prints that share for the corpus and for the
  model, which includes the spread of scales;
* no skew (slow side as wide as the fast side);
* whole-run shift: normal, s.d. 3%. The corpus' consecutive same-machine runs are printed:
  cachew's are within 1%, the dynamo pair's +6.4% is confounded by its changed max_time, and
  three values cannot measure a spread.
Benchmarks take 1 us to 10 ms, above the sub-microsecond floor, so the floor plays no part.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats as sps

from hotpath.profiler.analysis.gate import (
    CONTROLS,
    Comparison,
    benjamini_hochberg,
    compare,
    confirm_sequentially,
)
from hotpath.profiler.analysis.gate_config import GateConfig
from hotpath.profiler.analysis.gate_noise import robust_scale, t_unit
from hotpath.profiler.formats.pytest_benchmark import BenchRun, BenchStats, load_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.gate_noise_fit import fit_real
from tests.corpus import CORPUS

OPTIONS = {"min_rounds": 5, "max_time": 1.0, "min_time": 5e-06, "timer": "perf_counter"}
MACHINE = {"system": "Linux", "machine": "x86_64", "python_implementation": "CPython",
           "python_version": "3.12.3", "cpu": {"brand_raw": "synthetic"}}  # fmt: skip
T_DF = 4  # assumed
SHIFT_SD = 0.03  # assumed
ROUNDS = (5, 50, 500)
HEAD_RUNS = 3
RECOMMENDED_CONFIRM = 10  # `hotpath gate --confirm 10`, the README's CI workflow
CHEAPER_CONFIRM = 6


@dataclass(frozen=True)
class NoiseModel:
    sigma: float  # median run-to-run robust s.d. (log)
    scale_spread: float  # s.d. of log(scale) across benchmarks
    cv: float  # median within-run coefficient of variation
    outlier_rounds: float  # share of rounds 1.5-3x slower
    notes: tuple[str, ...]
    shift_sd: float = SHIFT_SD  # whole-run shift s.d.
    tail_df: float = T_DF  # Student t of the run-to-run noise
    episode_rate: float = 0.0  # share of benchmark-runs with a slow episode ...
    episode_jump: float = 0.0  # ... the median's log jump in one (exponential, this mean) ...
    episode_min_move: float = 0.0  # ... and the minimum's (exponential, this mean)
    max_sigma: float | None = None  # cap on a benchmark's run-to-run noise
    contended_rate: float = 0.0  # share of benchmark-runs contended: every round slower ...
    contended_mu: float = 0.0  # ... by exp(Exponential(this mean)), minimum included


def real_model(rng: np.random.Generator) -> NoiseModel:
    """The noise model fitted to the real corpus (`gate_noise_fit`)."""
    fit = fit_real(rng)
    return NoiseModel(
        sigma=fit.sigma, scale_spread=fit.scale_spread, cv=fit.cv, outlier_rounds=0.0,
        notes=fit.notes, shift_sd=fit.shift_sd, tail_df=fit.tail_df,
        episode_rate=fit.episode_rate, episode_jump=fit.episode_jump,
        episode_min_move=fit.episode_min_move, contended_rate=fit.contended_rate,
        contended_mu=fit.contended_mu,
    )  # fmt: skip


def _file(prefix: str) -> Path:
    return next(CORPUS.glob(prefix + "*"))


def _pair(first: str, second: str) -> tuple[np.ndarray, float]:
    a = load_path(_file(first)).by_fullname()
    b = load_path(_file(second)).by_fullname()
    common = sorted(set(a) & set(b))
    if not common:
        return np.zeros(0), math.nan
    ratios = np.log([b[k].median / a[k].median for k in common])
    return ratios - np.median(ratios), float(np.median(ratios))


def _heavy(rng: np.random.Generator, size: int | tuple[int, ...], df: float = T_DF) -> np.ndarray:
    """Unit robust-s.d. Student t (`df` degrees of freedom; the MAD of a t is its 75% point)."""
    return rng.standard_t(df, size) / t_unit(df)


def _log_var_spread(logs: np.ndarray) -> float:
    """Variance across benchmarks of log(s^2) of each benchmark's runs (whole-run shifts out)."""
    resid = logs - np.median(logs - logs[:, :1], axis=0)[None, :]
    resid = resid - resid.mean(axis=1, keepdims=True)
    s2 = (resid**2).sum(axis=1) / (logs.shape[1] - 1)
    return float(np.log(s2[s2 > 0]).var())


def _scale_spread(rng: np.random.Generator) -> tuple[float, float]:
    """Spread of noise scales across benchmarks matched to the cachew series 0007/0008/0009."""
    runs = [load_path(_file(f"karlicoss__cachew__000{k}")).by_fullname() for k in (7, 8, 9)]
    common = sorted(set(runs[0]) & set(runs[1]) & set(runs[2]))
    measured = _log_var_spread(np.log([[r[k].median for r in runs] for k in common]))
    grid = np.arange(0.0, 1.01, 0.05)
    simulated = [
        np.mean(
            [
                _log_var_spread(
                    np.exp(rng.normal(0, s, (len(common), 1)))
                    * _heavy(rng, (len(common), 3))
                    * 0.03
                )
                for _ in range(100)
            ]
        )
        for s in grid
    ]
    return float(np.interp(measured, simulated, grid)), measured


def _iqr_outlier_share(data: np.ndarray) -> float:
    """pytest-benchmark's `iqr_outliers` per round: beyond 1.5 IQR of the quartiles."""
    q1, q3 = np.nanpercentile(data, [25, 75], axis=1)
    iqr = q3 - q1
    low, high = (q1 - 1.5 * iqr)[:, None], (q3 + 1.5 * iqr)[:, None]
    out = ((data < low) | (data > high)) & np.isfinite(data)
    return float(out.sum() / np.isfinite(data).sum())


def _corpus_outlier_share() -> float:
    outliers = rounds = 0
    for prefix in ("karlicoss__cachew__0008", "guilhermeleobas__dynamo-bench__0002"):
        for bench in json.loads(_file(prefix).read_bytes())["benchmarks"]:
            stats = bench["stats"]
            if stats["rounds"] >= 5 and "iqr_outliers" in stats:
                outliers += stats["iqr_outliers"]
                rounds += stats["rounds"]
    return outliers / rounds


def _consecutive_shifts() -> list[str]:
    pairs = [
        ("karlicoss__cachew__0003", "karlicoss__cachew__0007"),
        ("karlicoss__cachew__0007", "karlicoss__cachew__0008"),
        ("karlicoss__cachew__0008", "karlicoss__cachew__0009"),
        ("guilhermeleobas__dynamo-bench__0002", "guilhermeleobas__dynamo-bench__0003"),
    ]
    out = []
    for a, b in pairs:
        ratios, shift = _pair(a, b)
        if ratios.size:
            out.append(f"{a.split('__')[1]} {a[-4:]}->{b[-4:]} {math.expm1(shift):+.1%}")
    return out


def noise_from_corpus(rng: np.random.Generator) -> NoiseModel:
    cachew, cachew_shift = _pair("karlicoss__cachew__0008", "karlicoss__cachew__0009")
    dynamo, dynamo_shift = _pair(
        "guilhermeleobas__dynamo-bench__0002", "guilhermeleobas__dynamo-bench__0003"
    )
    sig_c, sig_d = robust_scale(cachew) / math.sqrt(2), robust_scale(dynamo) / math.sqrt(2)
    tail = float(np.mean(np.abs(cachew) > 4 * robust_scale(cachew)))
    cvs = [
        b.stddev / b.mean
        for name in ("karlicoss__cachew__0008", "guilhermeleobas__dynamo-bench__0002")
        for b in load_path(_file(name)).benchmarks
        if b.rounds > 1 and b.mean > 0
    ]
    cv = float(np.median(cvs))
    spread, log_var = _scale_spread(rng)
    corpus_outliers = _corpus_outlier_share()
    clean = _iqr_outlier_share(np.exp(cv * rng.standard_normal((400, 200))))
    outlier_rounds = max(corpus_outliers - clean, 0.0)
    sigma = (sig_c + sig_d) / 2
    # the model's own pair tail share, with its spread of scales
    scales = np.exp(rng.normal(0, spread, 20000))
    model_pair = scales * (_heavy(rng, 20000) - _heavy(rng, 20000))
    model_tail = float(np.mean(np.abs(model_pair) > 4 * robust_scale(model_pair)))
    notes = (
        f"measured: cachew 0008/0009 run-to-run {sig_c:.1%} per run (shift {cachew_shift:+.1%}); "
        f"dynamo 0002/0003 (A/A) {sig_d:.1%} (shift {dynamo_shift:+.1%}); median {sigma:.1%}",
        f"measured: spread of scales across benchmarks {spread:.2f} (log s.d.; cachew "
        f"0007/0008/0009 var log s^2 = {log_var:.2f}, matched under t({T_DF}) noise)",
        f"measured: within-run cv median {cv:.1%} over {len(cvs)} corpus benchmarks; "
        f"iqr_outliers {corpus_outliers:.1%} of rounds (no-outlier model {clean:.1%}) -> "
        f"{outlier_rounds:.1%} outlier rounds",
        f"assumed: t({T_DF}) tails: share of pairs beyond 4 robust s.d. {tail:.1%} in the cachew "
        f"pair, {model_tail:.1%} in the model",
        f"assumed: whole-run shift s.d. {SHIFT_SD:.0%}; corpus consecutive runs: "
        + ", ".join(_consecutive_shifts()),
    )
    return NoiseModel(sigma, spread, cv, outlier_rounds, notes)


@dataclass
class Suite:
    log_mu: np.ndarray
    sigma: np.ndarray
    cv: np.ndarray
    rounds: np.ndarray


def make_suite(rng: np.random.Generator, n: int, model: NoiseModel) -> Suite:
    sigma = model.sigma * np.exp(rng.normal(0, model.scale_spread, n))
    return Suite(
        log_mu=rng.uniform(math.log(1e-6), math.log(1e-2), n),
        sigma=sigma if model.max_sigma is None else np.minimum(sigma, model.max_sigma),
        cv=model.cv * np.exp(rng.normal(0, 0.5, n)),
        rounds=rng.choice(ROUNDS, n),
    )


def make_run(
    rng: np.random.Generator,
    suite: Suite,
    model: NoiseModel,
    source: str,
    slowdown: np.ndarray,
    shift: float | None = None,
    only: set[int] | None = None,
) -> BenchRun:
    """One run of the suite (or of the benchmarks in `only`): its own whole-run shift unless
    given, fresh run-to-run noise, per-round times with outlier rounds, and slow episodes
    (a share of the rounds much slower, every round a little)."""
    n = suite.log_mu.size
    shift = rng.normal(0, model.shift_sd) if shift is None else shift
    level = suite.log_mu + shift + suite.sigma * _heavy(rng, n, model.tail_df)
    if model.contended_rate:
        contended = rng.random(n) < model.contended_rate
        level = level + np.where(contended, rng.exponential(model.contended_mu, n), 0.0)
    width = int(suite.rounds.max())
    data = np.exp(level[:, None] + suite.cv[:, None] * rng.standard_normal((n, width)))
    outliers = rng.random((n, width)) < model.outlier_rounds
    data = np.where(outliers, data * rng.uniform(1.5, 3.0, (n, width)), data)
    if model.episode_rate:
        episode = rng.random(n) < model.episode_rate
        share = rng.uniform(0.3, 0.9, n)
        jump = np.exp(rng.exponential(max(model.episode_jump, 1e-9), n))
        low = np.exp(rng.exponential(max(model.episode_min_move, 1e-9), n))
        slowed = episode[:, None] & (rng.random((n, width)) < share[:, None])
        data = data * np.where(episode, low, 1.0)[:, None] * np.where(slowed, jump[:, None], 1.0)
    data *= 1 + slowdown[:, None]
    q1, median, q3, mean, low, high, stddev = np.empty((7, n))
    for count in np.unique(suite.rounds):  # one vectorised pass per number of rounds
        rows = suite.rounds == count
        part = data[rows, :count]
        q1[rows], median[rows], q3[rows] = np.percentile(part, [25, 50, 75], axis=1)
        mean[rows], low[rows], high[rows] = part.mean(axis=1), part.min(axis=1), part.max(axis=1)
        stddev[rows] = part.std(axis=1, ddof=1)
    benches = tuple(
        BenchStats(
            fullname=bench_name(b),
            name=f"test_{b}",
            group=None,
            params=None,
            min=float(low[b]),
            max=float(high[b]),
            mean=float(mean[b]),
            median=float(median[b]),
            stddev=float(stddev[b]),
            iqr=float(q3[b] - q1[b]),
            rounds=int(suite.rounds[b]),
            iterations=1,
            data=None,
            quirks=(),
        )
        for b in range(n)
        if only is None or b in only
    )
    return BenchRun(
        source=source,
        version="5.2.3",
        datetime=None,
        machine_info=MACHINE,
        commit_info={},
        options=OPTIONS,
        benchmarks=benches,
        quirks=(),
    )


def bench_name(b: int) -> str:
    return f"tests/test_suite.py::test_{b}"


ORACLE = "oracle (knows the noise model)"
ORACLE_EACH = "oracle, each benchmark at 1%"
ORACLE_NULL_RUNS = 200


def oracle(
    rng: np.random.Generator,
    suite: Suite,
    model: NoiseModel,
    head: BenchRun,
    head_shift: float,
    config: GateConfig,
) -> tuple[set[str], set[str]]:
    """The best test that knows the noise model, on the gate's own statistic (the minimum):
    each benchmark's centre and run-to-run scale from `ORACLE_NULL_RUNS` runs without a change
    and with their whole-run shifts known, the head run's shift known too, the tails' t and
    the share and size of contended runs known (its p is the mixture's tail at the head);
    Benjamini-Hochberg across the suite at the gate's alpha and its minimum effect, as the gate
    (first set: the same control of a suite's false alarms as the gate's), and each benchmark
    at p <= 1% (second set: the bar's "1% of benchmark comparisons", which lets about one
    suite run in three fail on unchanged code with 40 benchmarks). It has no history to
    estimate: what it misses, no test on these runs can find."""
    zero = np.zeros(suite.log_mu.size)
    shifts = rng.normal(0, model.shift_sd, ORACLE_NULL_RUNS)
    null = np.array(
        [
            [math.log(b.min) - shifts[k] for b in make_run(rng, suite, model, "null", zero,
                                                             float(shifts[k])).benchmarks]
            for k in range(ORACLE_NULL_RUNS)
        ]
    )  # fmt: skip
    centre = np.median(null, axis=0)
    scale = 1.4826 * np.median(np.abs(null - centre), axis=0)
    values = np.array([math.log(b.min) for b in head.benchmarks]) - head_shift
    unit = t_unit(model.tail_df)  # a t's robust s.d. in units of its scale
    excess = values - centre
    calm = sps.t.sf(excess / scale * unit, model.tail_df)
    busy = np.exp(-np.maximum(excess, 0.0) / max(model.contended_mu, 1e-9))
    p = (1 - model.contended_rate) * calm + model.contended_rate * np.where(excess > 0, busy, 1.0)
    q = benjamini_hochberg(p)
    change = np.expm1(values - centre)
    big = change >= config.min_effect
    names = [b.fullname for b in head.benchmarks]
    suite = {n for i, n in enumerate(names) if q[i] <= config.alpha and big[i]}
    each = {n for i, n in enumerate(names) if p[i] <= 0.01 and big[i]}
    return suite, each


GATE_EACH = "hotpath gate, each benchmark at 1%"
# the single-run rows the bar compares (issue 13), side by side with a bootstrap interval
SIDE_BY_SIDE = (ORACLE, ORACLE_EACH, "hotpath gate", GATE_EACH)
BOOTSTRAP = 2000


def side_by_side(
    per_trial: dict[str, list[tuple[int, int, bool]]],
    size: float,
    planted: int,
    clean: int,
    rng: np.random.Generator,
) -> str:
    """The single-run bar's table: found of the largest size, false alarms per benchmark-run
    and unchanged suite runs failed (any unchanged benchmark flagged), each with its 95%
    bootstrap interval over the trials (trials resampled whole: a suite's benchmarks share
    its history and shifts)."""
    trials = len(next(iter(per_trial.values())))
    picks = rng.integers(0, trials, (BOOTSTRAP, trials))
    per_size, per_clean = planted / max(trials, 1), clean / max(trials, 1)
    lines = [
        f"\nSingle run, side by side (95% bootstrap intervals over {trials} trials; suites "
        "failed: trials with an unchanged benchmark flagged):",
        f"{'method':<42}{f'found {size:.0%}':>22}{'false alarms':>22}{'suites failed':>22}",
    ]
    for method, rows in per_trial.items():
        data = np.array(rows, dtype=float)
        found = data[picks, 0].sum(axis=1) / (per_size * trials)
        wrong = data[picks, 1].sum(axis=1) / (per_clean * trials)
        failed = data[picks, 2].mean(axis=1)
        cells = [
            (data[:, 0].sum() / max(planted, 1), found),
            (data[:, 1].sum() / max(clean, 1), wrong),
            (data[:, 2].mean(), failed),
        ]
        line = f"{method:<42}"
        for value, boot in cells:
            low, high = np.percentile(boot, [2.5, 97.5])
            line += f"{f'{value:.1%} ({low:.1%}-{high:.1%})':>22}"
        lines.append(line)
    return "\n".join(lines)


def pytest_benchmark_rule(head: BenchRun, base: BenchRun, stat: str, limit: float) -> set[str]:
    """`--benchmark-compare-fail=STAT:5%`: worse than the one baseline by more than limit
    (benchmarks the baseline lacks are not compared)."""
    base_map = base.by_fullname()
    return {
        b.fullname
        for b in head.benchmarks
        if b.fullname in base_map
        and getattr(b, stat) > getattr(base_map[b.fullname], stat) * (1 + limit)
    }


@dataclass
class Cost:
    reruns: int = 0  # benchmark re-runs (suspects and controls, all rounds)
    rounds: int = 0  # pytest re-run processes
    trials: int = 0


def confirmed(
    rng: np.random.Generator,
    suite: Suite,
    model: NoiseModel,
    head: list[BenchRun],
    head_shift: float,
    history: list[BenchRun],
    slowdown: np.ndarray,
    config: GateConfig,
    shared_shift: bool,
    times: int,
    cost: Cost,
    first: Comparison,
) -> Comparison:
    """What `hotpath gate HEAD --confirm TIMES` judges: screen, re-run the undecided suspects and
    the controls round by round (up to TIMES rounds), judge again."""
    index = {bench_name(b): b for b in range(suite.log_mu.size)}
    rerun_shift = head_shift if shared_shift else None

    def rerun(names: list[str], look: int) -> BenchRun:
        cost.rounds += 1
        only = {index[name] for name in names}
        return make_run(rng, suite, model, f"rerun-{look}", slowdown, rerun_shift, only)

    final = confirm_sequentially(head, history, config, rerun, times, first=first)
    cost.trials += 1
    cost.reruns += final.benchmark_reruns
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--benchmarks", type=int, default=40)
    parser.add_argument("--history", type=int, default=30)
    parser.add_argument("--sizes", default="5,10,20", help="regression sizes in percent")
    parser.add_argument(
        "--per-size", type=int, default=2,
        help="regressions planted per size (0: CI runs without regressions, for the cost)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--noise", choices=("real", "shared"), default="real",
        help="noise model: fitted to the real corpus (tests/data/gate_corpus), or the earlier "
        "one measured on ../shared/corpus/pytest-benchmark files",
    )  # fmt: skip
    parser.add_argument(
        "--max-sigma", type=float,
        help="cap each benchmark's run-to-run noise (0.05: the single-run bar's 'noise <= 5%%')",
    )  # fmt: skip
    parser.add_argument(
        "--noise-scale", type=float, default=1.0,
        help="multiply the corpus' run-to-run noise (sensitivity: 0.5 for a quiet machine)",
    )  # fmt: skip
    parser.add_argument("--confirm", type=int, default=2, help="re-runs of the suspects")
    parser.add_argument(
        "--confirm-head-runs", type=int, default=HEAD_RUNS,
        help="full head runs the --confirm rows start from (1: the gate on a single run)",
    )  # fmt: skip
    parser.add_argument(
        "--scale-spread", type=float,
        help="override the measured spread of noise scales across benchmarks (sensitivity)",
    )  # fmt: skip
    parser.add_argument(
        "--rerun-shift", choices=("fresh", "shared"), default="fresh",
        help="confirmation re-runs draw their own whole-run shift, or share the head run's",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = [float(s) / 100 for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    model = real_model(rng) if args.noise == "real" else noise_from_corpus(rng)
    spread = model.scale_spread if args.scale_spread is None else args.scale_spread
    model = replace(
        model, sigma=model.sigma * args.noise_scale, scale_spread=spread, max_sigma=args.max_sigma
    )
    config = GateConfig()
    each_config = GateConfig(control="benchmark")  # each benchmark at 1%, no correction
    confirms = sorted({args.confirm, CHEAPER_CONFIRM, RECOMMENDED_CONFIRM})
    sequential = (CHEAPER_CONFIRM, RECOMMENDED_CONFIRM)
    heads_note = f", {args.confirm_head_runs} heads" if args.confirm_head_runs > 1 else ""
    confirm_rows = {
        n: f"hotpath gate + confirm {'up to ' if n in sequential else ''}{n}" + heads_note
        for n in confirms
    }
    methods = [
        ORACLE,
        ORACLE_EACH,
        "hotpath gate",
        GATE_EACH,
        "hotpath gate, 1 baseline",
        f"hotpath gate, {HEAD_RUNS} head runs",
        *confirm_rows.values(),
        "mean:5%",
        "min:5%",
    ]
    found = {m: {s: 0 for s in sizes} for m in methods}
    false_alarms = dict.fromkeys(methods, 0)
    planted = dict.fromkeys(sizes, 0)
    clean = 0
    costs = {n: Cost() for n in confirms}
    # planted regressions of the recommended row, by whether its `detectable` said it can
    # find one of that size: found or not
    calibration: dict[bool, list[bool]] = {True: [], False: []}
    # per trial and single-run method: (found of the largest size, false alarms, failed)
    per_trial: dict[str, list[tuple[int, int, bool]]] = {m: [] for m in SIDE_BY_SIDE}
    started = time.perf_counter()
    for _ in range(args.trials):
        suite = make_suite(rng, args.benchmarks, model)
        zero = np.zeros(args.benchmarks)
        shifts = rng.normal(0, model.shift_sd, args.history)
        history = [
            make_run(rng, suite, model, f"run-{k}", zero, float(shifts[k]))
            for k in range(args.history)
        ]
        slowdown = zero.copy()
        where = rng.choice(args.benchmarks, len(sizes) * args.per_size, replace=False)
        for j, b in enumerate(where):
            slowdown[b] = sizes[j // args.per_size]
        head_shift = float(rng.normal(0, model.shift_sd))
        head = make_run(rng, suite, model, "head", slowdown, head_shift)
        extra = max(HEAD_RUNS, args.confirm_head_runs) - 1
        more = [make_run(rng, suite, model, f"head-{r}", slowdown) for r in range(1, extra + 1)]
        single = compare(head, history, config)
        confirm_heads = [head, *more[: args.confirm_head_runs - 1]]
        confirm_first = (
            single if len(confirm_heads) == 1 else compare(confirm_heads, history, config)
        )
        by_suite, by_each = oracle(rng, suite, model, head, head_shift, config)
        flagged = {
            ORACLE: by_suite,
            ORACLE_EACH: by_each,
            "hotpath gate": {v.fullname for v in single.regressed},
            GATE_EACH: {v.fullname for v in compare(head, history, each_config).regressed},
            "hotpath gate, 1 baseline": {
                v.fullname for v in compare(head, history[-1:], config).regressed
            },
            f"hotpath gate, {HEAD_RUNS} head runs": {
                v.fullname
                for v in compare([head, *more[: HEAD_RUNS - 1]], history, config).regressed
            },
            "mean:5%": pytest_benchmark_rule(head, history[-1], "mean", 0.05),
            "min:5%": pytest_benchmark_rule(head, history[-1], "min", 0.05),
        }
        for n, row in confirm_rows.items():
            final = confirmed(
                rng, suite, model, confirm_heads, head_shift, history, slowdown, config,
                args.rerun_shift == "shared", n, costs[n], confirm_first,
            )  # fmt: skip
            flagged[row] = {v.fullname for v in final.regressed}
            if n == RECOMMENDED_CONFIRM:
                verdicts = {v.fullname: v for v in final.verdicts}
                for b in np.flatnonzero(slowdown):
                    v = verdicts[bench_name(b)]
                    said = v.detectable is not None and v.detectable <= slowdown[b]
                    calibration[said].append(v.verdict == "regressed")
        unchanged = {bench_name(b) for b in range(args.benchmarks) if not slowdown[b]}
        largest = {bench_name(b) for b in np.flatnonzero(slowdown == max(sizes))}
        for method in SIDE_BY_SIDE:
            wrong = len(flagged[method] & unchanged)
            per_trial[method].append((len(flagged[method] & largest), wrong, wrong > 0))
        for b in range(args.benchmarks):
            name = bench_name(b)
            size = float(slowdown[b])
            if size:
                planted[size] += 1
            else:
                clean += 1
            for method in methods:
                if name in flagged[method]:
                    if size:
                        found[method][size] += 1
                    else:
                        false_alarms[method] += 1
    elapsed = time.perf_counter() - started

    print(
        "Noise model ("
        + ("fitted to the real corpus" if args.noise == "real" else "../shared/corpus")
        + "):"
    )
    for note in model.notes:
        print(f"  {note}")
    print(
        f"  model: run-to-run {model.sigma:.1%} median (x log-normal {model.scale_spread:.2f} "
        f"spread{'' if model.max_sigma is None else f', capped at {model.max_sigma:.0%}'}), "
        f"t({model.tail_df:.1f}) tails, whole-run shift s.d. {model.shift_sd:.1%}, "
        f"slow episodes {model.episode_rate:.1%}, contended runs {model.contended_rate:.1%} "
        f"(+{math.expm1(model.contended_mu):.0%} mean), within-run cv "
        f"{model.cv:.1%}, {model.outlier_rounds:.1%} outlier rounds, {ROUNDS} rounds; "
        f"re-runs: {args.rerun_shift} whole-run shift"
    )
    print(
        f"{args.trials} trials x {args.benchmarks} benchmarks, {args.history} baseline runs, "
        f"{args.per_size} regressions planted per size per trial, seed {args.seed}, "
        f"noise scale {args.noise_scale:g}"
        + ("" if args.scale_spread is None else f", scale spread set to {args.scale_spread:g}")
        + " "
        f"({elapsed:.1f} s)\n"
    )
    header = f"{'method':<42}" + "".join(f"{f'found {s:.0%}':>11}" for s in sizes)
    print(header + f"{'false alarms':>14}{'re-runs/CI run':>16}")
    rows = {row: n for n, row in confirm_rows.items()}
    for method in methods:
        shares = [found[method][s] / max(planted[s], 1) for s in sizes]
        row = f"{method:<42}" + "".join(f"{share:>11.1%}" for share in shares)
        row += f"{false_alarms[method] / clean:>14.2%}"
        if method in rows:
            row += f"{costs[rows[method]].reruns / max(costs[rows[method]].trials, 1):>16.1f}"
        print(row)
    best = confirm_rows[RECOMMENDED_CONFIRM]
    cost = costs[RECOMMENDED_CONFIRM]
    print(
        f"\nfalse alarms: unchanged benchmarks flagged as regressed, per benchmark-run "
        f"({clean} benchmark-runs); found: of {planted[sizes[0]]} planted per size."
        f"\nre-runs/CI run: benchmark re-runs (suspects and {CONTROLS} controls, all rounds) "
        f"per head run of {args.benchmarks} benchmarks."
        f"\nRECOMMENDED `--confirm {RECOMMENDED_CONFIRM}`: {best}: found "
        + ", ".join(f"{found[best][s] / max(planted[s], 1):.1%} of {s:.0%}" for s in sizes)
        + f", {false_alarms[best] / clean:.2%} false alarms, "
        f"{cost.reruns / max(cost.trials, 1):.1f} benchmark re-runs in "
        f"{cost.rounds / max(cost.trials, 1):.1f} pytest processes per CI run."
        "\nGoal: >= 95% of >= 10% regressions found with <= 1% false alarms."
    )
    print(side_by_side(per_trial, max(sizes), planted[max(sizes)], clean, rng))
    yes, no = calibration[True], calibration[False]
    print(
        f"`detectable` (the report's blind spots) with `--confirm {RECOMMENDED_CONFIRM}`: of "
        f"the planted regressions at least as large as it said, found {np.mean(yes or [0]):.1%} "
        f"({len(yes)}); of the others, found {np.mean(no or [0]):.1%} ({len(no)}); it aims at "
        "80% or more."
    )


if __name__ == "__main__":
    main()
