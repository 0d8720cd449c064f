"""The public projects of the gate's real corpus: where each comes from, how its own
pytest-benchmark suite is run (as the project runs it) and where the slowdown is planted.

Each command runs in the project's checkout; `{json}` is the result file to write."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Project:
    name: str
    repo: str  # GitHub owner/name
    commit: str
    command: list[str]  # after "python -m pytest"
    plant_file: str  # the library file the slowdown is planted in ...
    plant_function: str  # ... the function ...
    plant_work: int  # ... and K of `sum(range(K))` per call
    pythonpath: str = "."
    requires: list[str] = field(default_factory=list)  # what the suite imports, from PyPI
    how: str = ""  # where the command comes from, for the README


COMMON = ["-q", "-p", "no:cacheprovider", "--benchmark-json={json}"]

PROJECTS = {
    p.name: p
    for p in [
        Project(
            name="dacite",
            repo="konradhalas/dacite",
            commit="9898ccbb783e7e6a35ae165e7deb9fa84edfe21c",
            command=["tests/performance", "-o", "addopts=", *COMMON],
            plant_file="dacite/core.py",
            plant_function="_build_value_for_union",
            plant_work=4000,
            how="pyproject.toml `addopts` (autosave and a JSON file; we name the JSON file)",
        ),
        Project(
            name="fastjsonschema",
            repo="horejsek/python-fastjsonschema",
            commit="8a7cde990f1fa5404e4d750cc4ebde28ea398f5c",
            command=[
                *("-W", "default", "--benchmark-only", "--benchmark-sort=name"),
                *("--benchmark-group-by=fullfunc", "--benchmark-disable-gc"),
                *("--benchmark-save-data", "tests/benchmarks", *COMMON),
            ],
            plant_file="fastjsonschema/exceptions.py",
            plant_function="JsonSchemaValueException.__init__",
            plant_work=40,
            how="the Makefile's `benchmark-save` target",
        ),
        Project(
            name="cattrs",
            repo="python-attrs/cattrs",
            commit="82b02c07ca535a1ba656b935767d819eac9d383b",
            command=["bench", *COMMON],
            plant_file="src/cattrs/converters.py",
            plant_function="_structure_tuple",
            plant_work=30,
            pythonpath="src",
            requires=["attrs", "msgspec", "orjson", "immutables"],
            how="docs/benchmarking.md (`pytest bench`) with pyproject.toml's benchmark `addopts`",
        ),
        Project(
            name="simple_parsing",
            repo="lebrice/SimpleParsing",
            commit="3b5bc2377817ee8ee4e5f12709b2db173320b3c1",
            command=["--benchmark-only", "test/test_performance.py", *COMMON],
            plant_file="simple_parsing/helpers/serialization/serializable.py",
            plant_function="get_extension",
            plant_work=12000,
            requires=["docstring_parser", "typing_extensions", "pyyaml"],
            how=".github/workflows/benchmark.yml (`pytest --benchmark-only`, without coverage)",
        ),
        Project(
            name="pyelftools",
            repo="pmhahn/pyelftools",
            commit="fe531c97fb76a9faebc290adcab22775045a4a98",
            command=["-n", "0", "--no-cov", "test/test_parser_perf.py", *COMMON],
            plant_file="elftools/elf/relocation.py",
            plant_function="find_relocations_for_section",
            plant_work=15000,
            requires=["pytest-cov", "pytest-xdist"],
            how=(
                "pyproject.toml `addopts`, with xdist off (pytest-benchmark disables itself "
                "under xdist) and coverage off (it would time the tracer): a single-shot "
                "suite, `benchmark.pedantic(..., rounds=1, iterations=1)` per DWARF file"
            ),
        ),
    ]
}
