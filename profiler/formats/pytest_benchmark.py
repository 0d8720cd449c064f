"""pytest-benchmark result files (`--benchmark-json`, `--benchmark-autosave`), versions 2.5 to
5.x, read into plain frozen records for the gate.

Real files are untidy: old ones lack `ops`, `data`, `params`; autosaves drop `data`; trimmed
`data` arrays end in a string; some datetimes have no offset; `rounds` may be 1. Such things are
recorded as *quirks* on the run or the benchmark and never stop the load. What cannot be read
honestly (not JSON, no `benchmarks` list, a time that is not a number or is negative) raises
`BenchResultsError`, whose message names the source and the JSON path of the problem.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hotpath.profiler.formats import FormatError
from hotpath.profiler.formats.window import clean_name

_REQUIRED_TIMES = ("min", "max", "mean", "median")
# Rounds and iterations are stored as INTEGER (int4 on PostgreSQL).
_MAX_COUNT = 2**31 - 1


class BenchResultsError(FormatError):
    """A file that is not a readable pytest-benchmark result; str() names the source and why."""


@dataclass(frozen=True)
class BenchStats:
    """One benchmark in one run; times in seconds per iteration."""

    fullname: str
    name: str
    group: str | None
    params: dict[str, Any] | None
    min: float
    max: float
    mean: float
    median: float
    stddev: float
    iqr: float | None
    rounds: int
    iterations: int
    data: tuple[float, ...] | None
    quirks: tuple[str, ...]


@dataclass(frozen=True)
class BenchRun:
    source: str
    version: str | None
    datetime: datetime | None
    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    options: dict[str, Any]
    benchmarks: tuple[BenchStats, ...]
    quirks: tuple[str, ...]

    def machine_key(self) -> str:
        """What must match for timings to be comparable: OS, architecture, interpreter and its
        minor version, CPU model. Not the host name (CI runners get a new one every run) and
        not the kernel patch release."""
        info = self.machine_info
        cpu = info.get("cpu")
        brand = None
        if isinstance(cpu, dict):
            brand = cpu.get("brand_raw") or cpu.get("brand")
        version = str(info.get("python_version") or "?")
        minor = ".".join(version.split(".")[:2])
        parts = [
            str(info.get("system") or "?"),
            str(info.get("machine") or "?"),
            f"{info.get('python_implementation') or '?'} {minor}",
            str(brand or "cpu unknown"),
        ]
        return clean_name(" / ".join(parts))

    def commit_id(self) -> str | None:
        value = self.commit_info.get("id")
        return value if isinstance(value, str) and value else None

    def by_fullname(self) -> dict[str, BenchStats]:
        return {b.fullname: b for b in self.benchmarks}


def load_path(path: Path) -> BenchRun:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BenchResultsError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    return load_run(data, str(path))


def load_baselines(path: Path) -> list[BenchRun]:
    """One file, or every `*.json` under a folder (a `.benchmarks/` folder), oldest first."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise BenchResultsError(f"{path}: no pytest-benchmark *.json files in this folder")
    elif path.exists():
        files = [path]
    else:
        raise BenchResultsError(f"{path}: no such file or folder")
    runs = [load_path(f) for f in files]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(runs, key=lambda r: (r.datetime or epoch, r.source))


def load_run(data: bytes, source: str) -> BenchRun:
    """Parse one pytest-benchmark JSON document; raises BenchResultsError."""
    if not data.strip():
        raise BenchResultsError(f"{source}: empty file, expected pytest-benchmark JSON")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchResultsError(
            f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        hint = " (the file looks truncated)" if ends_early else ""
        raise BenchResultsError(
            f"{source}: not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # a number of 4,300+ digits; deep nesting
        raise BenchResultsError(f"{source}: unreadable JSON: {exc}") from None
    return _Reader(source).run(doc)


class _Reader:
    """Walks one document, collecting quirks; every error names the source and JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> BenchResultsError:
        return BenchResultsError(f"{self.source}: {where}: {what}")

    def run(self, doc: Any) -> BenchRun:
        if not isinstance(doc, dict):
            raise self.fail(
                "top level", f"expected a JSON object, got {_kind(doc)}: not pytest-benchmark JSON"
            )
        if "benchmarks" not in doc:
            raise self.fail("top level", "no 'benchmarks' key: not pytest-benchmark JSON")
        items = doc["benchmarks"]
        if not isinstance(items, list):
            raise self.fail("benchmarks", f"expected a list, got {_kind(items)}")
        quirks: list[str] = []
        version = doc.get("version")
        if version is not None and not isinstance(version, str):
            raise self.fail("version", f"expected a string, got {_kind(version)}")
        if version is None:
            quirks.append("no pytest-benchmark version recorded")
        machine_info = self.mapping(doc, "machine_info", quirks)
        commit_info = self.mapping(doc, "commit_info", quirks)
        when = self.when(doc.get("datetime"), quirks)

        benchmarks: list[BenchStats] = []
        options_seen: list[str] = []
        options_by_key: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for index, item in enumerate(items):
            bench, options = self.benchmark(item, f"benchmarks[{index}]")
            if bench.fullname in seen:
                quirks.append(f"duplicate benchmark {bench.fullname!r}: later entry ignored")
                continue
            seen.add(bench.fullname)
            benchmarks.append(bench)
            key = json.dumps(options, sort_keys=True, default=str)
            options_seen.append(key)
            options_by_key[key] = options
        if not benchmarks:
            quirks.append("no benchmarks in this run")
        options: dict[str, Any] = {}
        if options_seen:
            counts = Counter(options_seen)
            options = options_by_key[counts.most_common(1)[0][0]]
            if len(counts) > 1:
                quirks.append(
                    f"benchmarks ran with {len(counts)} different option sets; "
                    "the most common one is taken as the run's"
                )
        return BenchRun(
            source=self.source,
            version=version,
            datetime=when,
            machine_info=machine_info,
            commit_info=commit_info,
            options=options,
            benchmarks=tuple(benchmarks),
            quirks=tuple(quirks),
        )

    def mapping(self, doc: dict[str, Any], key: str, quirks: list[str]) -> dict[str, Any]:
        value = doc.get(key)
        if value is None:
            quirks.append(f"no {key}")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object, got {_kind(value)}")
        return value

    def when(self, value: Any, quirks: list[str]) -> datetime | None:
        if value is None:
            quirks.append("no datetime: run order is taken from the file names")
            return None
        if not isinstance(value, str):
            raise self.fail("datetime", f"expected an ISO-8601 string, got {_kind(value)}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            quirks.append(f"datetime {value!r} is not ISO-8601: ignored")
            return None
        if parsed.tzinfo is None:
            quirks.append("datetime has no timezone: read as UTC")
            parsed = parsed.replace(tzinfo=UTC)
        return parsed

    def benchmark(self, item: Any, where: str) -> tuple[BenchStats, dict[str, Any]]:
        if not isinstance(item, dict):
            raise self.fail(where, f"expected an object, got {_kind(item)}")
        quirks: list[str] = []
        name = item.get("name")
        fullname = item.get("fullname")
        if fullname is None and isinstance(name, str):
            fullname = name
            quirks.append("no fullname: the name is used as the key")
        if not isinstance(fullname, str) or not fullname:
            raise self.fail(
                f"{where}.fullname", f"expected a non-empty string, got {_kind(fullname)}"
            )
        where = f"{where} ({fullname})"
        if name is None:
            name = fullname.rpartition("::")[2]
        if not isinstance(name, str):
            raise self.fail(f"{where}.name", f"expected a string, got {_kind(name)}")
        group = item.get("group")
        if group is not None and not isinstance(group, str):
            raise self.fail(f"{where}.group", f"expected a string or null, got {_kind(group)}")
        params = item.get("params")
        if params is not None and not isinstance(params, dict):
            raise self.fail(f"{where}.params", f"expected an object or null, got {_kind(params)}")
        options = item.get("options")
        if options is None:
            options = {}
            quirks.append("no options recorded")
        elif not isinstance(options, dict):
            raise self.fail(f"{where}.options", f"expected an object, got {_kind(options)}")
        stats = item.get("stats")
        if not isinstance(stats, dict):
            raise self.fail(f"{where}.stats", f"expected an object, got {_kind(stats)}")

        times = {key: self.time(stats, key, where) for key in _REQUIRED_TIMES}
        if not times["min"] <= times["median"] <= times["max"] or not (
            times["min"] <= times["mean"] <= times["max"]
        ):
            raise self.fail(
                f"{where}.stats", "min <= median, mean <= max does not hold: inconsistent stats"
            )
        rounds = self.count(stats, "rounds", where, quirks)
        iterations = self.count(stats, "iterations", where, quirks)
        if rounds == 1:
            quirks.append("1 round only: no within-run spread")
        stddev = self.optional_time(stats, "stddev", where)
        if stddev is None:
            stddev = 0.0
            quirks.append("no stddev")
        iqr = self.optional_time(stats, "iqr", where)
        if "ops" not in stats:
            quirks.append("no ops (old format)")
        data = self.data(stats.get("data"), rounds, where, quirks)
        bench = BenchStats(
            # Code-generated (parametrize ids): control characters escaped, as frame names are.
            fullname=clean_name(fullname),
            name=clean_name(name),
            group=None if group is None else clean_name(group),
            params=params,
            min=times["min"],
            max=times["max"],
            mean=times["mean"],
            median=times["median"],
            stddev=stddev,
            iqr=iqr,
            rounds=rounds,
            iterations=iterations,
            data=data,
            quirks=tuple(quirks),
        )
        return bench, options

    def time(self, stats: dict[str, Any], key: str, where: str) -> float:
        if key not in stats:
            raise self.fail(f"{where}.stats.{key}", "missing")
        value = self.optional_time(stats, key, where)
        if value is None:
            raise self.fail(f"{where}.stats.{key}", "expected a number of seconds, got null")
        return value

    def optional_time(self, stats: dict[str, Any], key: str, where: str) -> float | None:
        value = stats.get(key)
        if value is None:
            return None
        if not _is_number(value):
            raise self.fail(
                f"{where}.stats.{key}", f"expected a number of seconds, got {_kind(value)}"
            )
        value = _float(value)
        if not math.isfinite(value) or value < 0:
            raise self.fail(f"{where}.stats.{key}", f"expected a finite time >= 0, got {value}")
        return value

    def count(self, stats: dict[str, Any], key: str, where: str, quirks: list[str]) -> int:
        value = stats.get(key)
        if value is None:
            quirks.append(f"no {key}: 1 assumed")
            return 1
        if not _is_number(value) or not math.isfinite(_float(value)) or value != int(value):
            raise self.fail(f"{where}.stats.{key}", f"expected a whole number, got {_kind(value)}")
        if not 1 <= value <= _MAX_COUNT:
            raise self.fail(f"{where}.stats.{key}", f"expected 1 to {_MAX_COUNT}, got {int(value)}")
        return int(value)

    def data(
        self, value: Any, rounds: int, where: str, quirks: list[str]
    ) -> tuple[float, ...] | None:
        if value is None:
            quirks.append("no raw data")
            return None
        if not isinstance(value, list):
            raise self.fail(f"{where}.stats.data", f"expected a list, got {_kind(value)}")
        numbers = [x for x in (_float(v) for v in value if _is_number(v)) if math.isfinite(x)]
        dropped = len(value) - len(numbers)
        if dropped:
            quirks.append(f"data truncated: {dropped} non-number{'s' * (dropped > 1)} dropped")
        if any(v < 0 for v in numbers):
            raise self.fail(f"{where}.stats.data", "negative timings")
        if len(numbers) != rounds:
            quirks.append(f"data holds {len(numbers)} of {rounds} rounds")
        if len(numbers) < 2:
            return None
        return tuple(numbers)


def _float(value: float) -> float:
    """`value` as a float; an int too large for one (JSON allows 1e400 written out) is inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 30 else value[:27] + "..."
        return f"a string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return type(value).__name__
