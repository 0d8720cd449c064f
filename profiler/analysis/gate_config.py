"""Settings of the benchmark gate, from `[tool.hotpath.gate]` in the benchmarked project's
pyproject.toml (found from the working directory upwards) or from a TOML file given by hand.

```toml
[tool.hotpath.gate]
min_effect = "5%"        # smallest slowdown worth failing a merge for (or 0.05)
floor_ns = 10            # absolute change below which sub-microsecond benchmarks never fail
alpha = 0.05             # false-discovery rate across the benchmarks of one run
statistic = "auto"       # what a run's value is: "auto" (minimum from 5 rounds on), or "median"
control = "suite"        # "suite": alpha over the run (Benjamini-Hochberg); "benchmark": each
benchmark_alpha = 0.01   #   benchmark at this one-sided level (more found, more runs fail)

[tool.hotpath.gate.min_effect_for]   # per benchmark (fnmatch on fullname) or per group
"tests/test_io.py::*" = "10%"
"group:serialization" = 0.08
```
The most specific (longest) matching pattern wins.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

DEFAULT_MIN_EFFECT = 0.05
DEFAULT_FLOOR_NS = 10.0
DEFAULT_ALPHA = 0.05
# "auto": a benchmark's value in a run is its minimum when it has rounds enough
# (`gate_noise.MIN_ROUNDS_FOR_MIN`), else its median; "median": always the median (the gate
# before it was fitted to real suites, kept for the accuracy studies)
STATISTICS = ("auto", "median")
# what the significance level controls: "suite", the false discoveries of a whole run
# (Benjamini-Hochberg at `alpha`, so one run of an unchanged suite rarely fails); "benchmark",
# each benchmark's false alarms (one-sided p <= `benchmark_alpha`, no correction: a 40-benchmark
# suite at 1% fails about one unchanged run in four; benchmarks/gate_accuracy.py)
CONTROLS = ("suite", "benchmark")
DEFAULT_BENCHMARK_ALPHA = 0.01
_KEYS = {
    "min_effect", "floor_ns", "alpha", "min_effect_for", "statistic", "control",
    "benchmark_alpha",
}  # fmt: skip


class GateConfigError(ValueError):
    """A configuration the gate cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class GateConfig:
    min_effect: float = DEFAULT_MIN_EFFECT
    floor_ns: float = DEFAULT_FLOOR_NS
    alpha: float = DEFAULT_ALPHA
    min_effect_for: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    statistic: str = "auto"
    control: str = "suite"  # `CONTROLS`
    benchmark_alpha: float = DEFAULT_BENCHMARK_ALPHA
    # model contention (one-sided slow runs, `gate_contention`); off: the earlier gate's
    # symmetric noise alone, kept for the accuracy studies
    contention: bool = True
    source: str | None = None  # where the settings came from, for the report

    @property
    def per_benchmark(self) -> bool:
        return self.control == "benchmark"

    @property
    def level(self) -> float:
        """What a benchmark's q must reach: `alpha` over the run, or `benchmark_alpha` alone."""
        return self.benchmark_alpha if self.per_benchmark else self.alpha

    @property
    def floor_seconds(self) -> float:
        return self.floor_ns * 1e-9

    def effect_for(self, fullname: str, group: str | None) -> float:
        """The minimum effect for one benchmark: the longest matching pattern, else default."""
        best: tuple[int, float] | None = None
        for pattern, effect in self.min_effect_for:
            if pattern.startswith("group:"):
                matched = group is not None and fnmatchcase(group, pattern[len("group:") :])
            else:
                matched = fnmatchcase(fullname, pattern)
            if matched and (best is None or len(pattern) > best[0]):
                best = (len(pattern), effect)
        return self.min_effect if best is None else best[1]

    def with_min_effect(self, value: float | None) -> GateConfig:
        return self if value is None else replace(self, min_effect=value)


def parse_fraction(value: Any, where: str) -> float:
    """0.05, 5 % written as "5%", -> 0.05; must lie in [0, 10)."""
    number: float
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise GateConfigError(
                f"{where}: {value!r} is not a fraction like 0.05 or '5%'"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise GateConfigError(f"{where}: expected a fraction like 0.05 or '5%', got {value!r}")
    if not 0 <= number < 10:
        raise GateConfigError(f"{where}: {value!r} is out of range (0 to 1000%)")
    return number


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(config_file: Path | None = None, cwd: Path | None = None) -> GateConfig:
    """`config_file` if given (a pyproject.toml or a bare table), else the nearest
    pyproject.toml from `cwd`; defaults when neither has a `[tool.hotpath.gate]` table."""
    if config_file is not None:
        path = Path(config_file)
        doc = _read_toml(path)
        table = _gate_table(doc, path) if "tool" in doc else doc
        return _from_table(table, str(path))
    path_found = find_pyproject((cwd or Path.cwd()).resolve())
    if path_found is None:
        return GateConfig()
    table = _gate_table(_read_toml(path_found), path_found)
    return _from_table(table, str(path_found)) if table else GateConfig()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GateConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GateConfigError(f"{path}: not valid TOML: {exc}") from None


def _gate_table(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    table: Any = doc.get("tool", {})
    for key in ("hotpath", "gate"):
        table = table.get(key, {}) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            raise GateConfigError(f"{path}: [tool.hotpath.gate] must be a table")
    return table


def _from_table(table: dict[str, Any], source: str) -> GateConfig:
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise GateConfigError(
            f"{source}: unknown gate setting(s) {', '.join(unknown)}; known: {known}"
        )
    where = f"{source}: [tool.hotpath.gate]"
    config = GateConfig(source=source)
    if "min_effect" in table:
        config = replace(
            config, min_effect=parse_fraction(table["min_effect"], f"{where} min_effect")
        )
    if "alpha" in table:
        alpha = parse_fraction(table["alpha"], f"{where} alpha")
        if not 0 < alpha < 1:
            raise GateConfigError(f"{where} alpha: must lie strictly between 0 and 1")
        config = replace(config, alpha=alpha)
    if "benchmark_alpha" in table:
        level = parse_fraction(table["benchmark_alpha"], f"{where} benchmark_alpha")
        if not 0 < level < 1:
            raise GateConfigError(f"{where} benchmark_alpha: must lie strictly between 0 and 1")
        config = replace(config, benchmark_alpha=level)
    if "control" in table:
        if table["control"] not in CONTROLS:
            raise GateConfigError(f"{where} control: expected one of {', '.join(CONTROLS)}")
        config = replace(config, control=table["control"])
    if "floor_ns" in table:
        floor = table["floor_ns"]
        if isinstance(floor, bool) or not isinstance(floor, int | float) or floor < 0:
            raise GateConfigError(f"{where} floor_ns: expected a number of nanoseconds >= 0")
        config = replace(config, floor_ns=float(floor))
    if "statistic" in table:
        if table["statistic"] not in STATISTICS:
            raise GateConfigError(f"{where} statistic: expected one of {', '.join(STATISTICS)}")
        config = replace(config, statistic=table["statistic"])
    overrides = table.get("min_effect_for", {})
    if not isinstance(overrides, dict):
        raise GateConfigError(f"{where} min_effect_for: expected a table of pattern = fraction")
    pairs = tuple(
        (str(pattern), parse_fraction(value, f"{where} min_effect_for {pattern!r}"))
        for pattern, value in overrides.items()
    )
    return replace(config, min_effect_for=pairs)
