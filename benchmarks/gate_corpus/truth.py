"""The true effect of the planted slowdown on each benchmark of the gate's real corpus,
established from all its runs (20 at one commit, 20 with the plant), not given by the plant.

    python benchmarks/gate_corpus/truth.py [--corpus DIR]   # writes <project>/truth.json

Per benchmark: effect = median over the `change` runs of log(min) minus median over the
`same` runs of log(min), with a bootstrap 95% interval (runs resampled within each side, fixed
seed). The min is the statistic least moved by a busy machine; for one-round benchmarks it is
the single time. The same figure on the median (what the gate judges) is kept beside it.

Class (on the min figure):
* "changed": effect >= log(1.15) and the interval's low end >= log(1.10);
* "unchanged": |effect| < 0.03 and the interval within +-0.05;
* "grey": the rest, a real but small or uncertain change, judged neither way by the study.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hotpath.profiler.formats.pytest_benchmark import BenchRun, load_path

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "gate_corpus"
VARIANTS = ("same", "change")
RESAMPLES = 4000
SEED = 20260
CHANGED_EFFECT = math.log(1.15)
CHANGED_LOW = math.log(1.10)
UNCHANGED_EFFECT = 0.03
UNCHANGED_BAND = 0.05


@dataclass(frozen=True)
class Truth:
    effect_min: float  # log ratio, change over same
    ci_min: tuple[float, float]
    effect_median: float
    ci_median: tuple[float, float]
    cls: str  # "changed" / "unchanged" / "grey", from the min figure
    cls_median: str  # the same rule on the median figure, to show where the two disagree
    runs: tuple[int, int]  # same, change runs the benchmark is in


def load_variant(project_dir: Path, variant: str) -> list[BenchRun]:
    """The runs of one side, in the order they were made (their file names)."""
    return [load_path(p) for p in sorted((project_dir / variant).glob("*.json"))]


def classify(effect: float, ci: tuple[float, float]) -> str:
    if effect >= CHANGED_EFFECT and ci[0] >= CHANGED_LOW:
        return "changed"
    if abs(effect) < UNCHANGED_EFFECT and ci[0] >= -UNCHANGED_BAND and ci[1] <= UNCHANGED_BAND:
        return "unchanged"
    return "grey"


def _logs(runs: list[BenchRun], name: str, statistic: str) -> np.ndarray:
    values = []
    for run in runs:
        bench = run.by_fullname().get(name)
        if bench is None:
            continue
        value = bench.median if bench.rounds <= 1 else getattr(bench, statistic)
        if value > 0:
            values.append(math.log(value))
    return np.array(values)


def _effect(
    same: np.ndarray, change: np.ndarray, rng: np.random.Generator
) -> tuple[float, tuple[float, float]]:
    """Median difference and its percentile bootstrap 95% interval."""
    effect = float(np.median(change) - np.median(same))
    a = rng.choice(same, (RESAMPLES, same.size))
    b = rng.choice(change, (RESAMPLES, change.size))
    boot = np.median(b, axis=1) - np.median(a, axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return effect, (float(low), float(high))


def project_truth(project_dir: Path) -> dict[str, Truth]:
    """Every benchmark present on both sides (in at least 2 runs each), in suite order."""
    return runs_truth(*(load_variant(project_dir, v) for v in VARIANTS))


def runs_truth(same: list[BenchRun], change: list[BenchRun]) -> dict[str, Truth]:
    """`project_truth` of runs already loaded."""
    if not same or not change:
        return {}
    names = [b.fullname for b in same[0].benchmarks]
    rng = np.random.default_rng(SEED)  # fixed per project: figures do not depend on others
    out: dict[str, Truth] = {}
    for name in names:
        figures = {}
        for statistic in ("min", "median"):
            a, b = _logs(same, name, statistic), _logs(change, name, statistic)
            if a.size < 2 or b.size < 2:
                break
            figures[statistic] = _effect(a, b, rng)
        else:
            (eff_min, ci_min), (eff_med, ci_med) = figures["min"], figures["median"]
            out[name] = Truth(
                effect_min=eff_min,
                ci_min=ci_min,
                effect_median=eff_med,
                ci_median=ci_med,
                cls=classify(eff_min, ci_min),
                cls_median=classify(eff_med, ci_med),
                runs=(int(a.size), int(b.size)),
            )
    return out


def corpus_truth(corpus: Path = CORPUS) -> dict[str, dict[str, Truth]]:
    """{project: {benchmark: Truth}} for every project folder of the corpus."""
    return {name: project_truth(corpus / name) for name in projects(corpus)}


def projects(corpus: Path = CORPUS) -> list[str]:
    """The corpus' project folders (those with both sides), by name."""
    return sorted(
        p.name for p in corpus.iterdir() if p.is_dir() and all((p / v).is_dir() for v in VARIANTS)
    )


def to_json(truth: dict[str, Truth]) -> dict:
    rows = {}
    for name, t in truth.items():
        row = asdict(t)
        row["class"] = row.pop("cls")
        row["class_median"] = row.pop("cls_median")
        rows[name] = row
    return {
        "rule": __doc__.split("Class (on the min figure):")[1].strip(),
        "resamples": RESAMPLES,
        "seed": SEED,
        "benchmarks": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    for project, truth in corpus_truth(args.corpus).items():
        path = args.corpus / project / "truth.json"
        path.write_text(json.dumps(to_json(truth), indent=1) + "\n")
        counts = {c: sum(t.cls == c for t in truth.values()) for c in ("changed", "grey")}
        runs = max((t.runs for t in truth.values()), default=(0, 0))
        print(
            f"{project}: {len(truth)} benchmarks, {counts['changed']} changed, "
            f"{counts['grey']} grey ({runs[0]} same / {runs[1]} change runs) -> {path}"
        )


if __name__ == "__main__":
    main()
