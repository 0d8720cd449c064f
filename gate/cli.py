"""`hotpath gate RESULTS.json [MORE.json ...]`: does this pytest-benchmark run regress against
its history?

Offline, the history is `--baseline` files or folders (a `.benchmarks/` folder); with
`--server`, the run is uploaded and compared with the base branch's stored runs. Several
results files are repeated runs of the same head, pooled per benchmark (the first is the one
uploaded and named). `--confirm N` re-runs the suspects of the first verdicts with real pytest
in the current directory (or `--rootdir`), round by round, up to N rounds: after each round
everything is judged again with the re-runs pooled in, and the suspects that are settled
(cleared, or confirmed beyond doubt) leave the next round (see
`hotpath.profiler.analysis.gate.confirm_sequentially`). Exit codes:
0 nothing regressed, 1 something did, 2 usage or input errors (a failed re-run included).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hotpath.cli.options import token_option
from hotpath.profiler.analysis.gate_config import (
    GateConfig,
    GateConfigError,
    load_config,
    parse_fraction,
)
from hotpath.profiler.formats.pytest_benchmark import (
    BenchResultsError,
    BenchRun,
    load_baselines,
    load_path,
)

if TYPE_CHECKING:
    from hotpath.profiler.analysis.gate import Comparison

EXIT_OK, EXIT_REGRESSED, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    """Bad usage or input: the message is printed and the exit code is 2."""


def _fraction(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_fraction(value, "--min-effect")
    except GateConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Earlier pytest-benchmark run(s): a JSON file or a folder such as .benchmarks/ "
    "(searched recursively). Repeatable.",
)
@click.option(
    "--server",
    help="hotpath server URL: upload this run (the first RESULTS file) and compare with history.",
)
@token_option
@click.option("--project", help="Project name on the server.")
@click.option("--branch", help="Branch this run belongs to.")
@click.option("--commit", help="Commit of this run (default: from the results file).")
@click.option("--base-branch", default="main", show_default=True, help="History to compare with.")
@click.option("--profile", is_flag=True, help="Re-run regressed benchmarks under pyinstrument.")
@click.option("--report-md", type=click.Path(path_type=Path), help="Write a Markdown report.")
@click.option("--report-json", type=click.Path(path_type=Path), help="Write a JSON report.")
@click.option(
    "--min-effect",
    callback=_fraction,
    help="Default minimum slowdown to fail on, e.g. 5% or 0.05 (per-benchmark settings in "
    "[tool.hotpath.gate] still apply).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML file with the gate settings (default: [tool.hotpath.gate] in pyproject.toml).",
)
@click.option(
    "--confirm",
    type=click.IntRange(0, 20),
    default=0,
    show_default=True,
    help="Re-run the suspects (changes worth a second look) up to this many times with "
    "pytest, each round a separate process, judging again after each round: settled suspects "
    "leave early. 0: off; 10 recommended, with three head runs (see benchmarks/README.md).",
)
@click.option(
    "--pytest-args",
    default="",
    help='Extra arguments for the re-runs, shell-quoted, e.g. "--benchmark-min-rounds 20": '
    "the head run's pytest-benchmark options must be given again.",
)
@click.option(
    "--rootdir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory to run pytest in for --confirm and --profile (default: the current one). "
    "Benchmark fullnames are pytest node ids relative to it.",
)
def gate(
    results: tuple[Path, ...],
    baselines: tuple[Path, ...],
    server: str | None,
    project: str | None,
    branch: str | None,
    commit: str | None,
    base_branch: str,
    profile: bool,
    report_md: Path | None,
    report_json: Path | None,
    min_effect: float | None,
    config_file: Path | None,
    confirm: int,
    pytest_args: str,
    rootdir: Path | None,
) -> None:
    """Compare pytest-benchmark RESULTS (one run, or repeated runs of the same head) with
    earlier runs; exit 1 when something regressed."""
    try:
        code = _run(
            results, baselines, server, project, branch, commit, base_branch, profile,
            report_md, report_json, min_effect, config_file,
            _Confirm(confirm, pytest_args, rootdir or Path.cwd()),
        )  # fmt: skip
    except _Usage as exc:
        click.echo(f"hotpath gate: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(code)


@dataclass(frozen=True)
class _Confirm:
    times: int
    pytest_args: str
    rootdir: Path


def _run(
    results: tuple[Path, ...],
    baselines: tuple[Path, ...],
    server: str | None,
    project: str | None,
    branch: str | None,
    commit: str | None,
    base_branch: str,
    profile: bool,
    report_md: Path | None,
    report_json: Path | None,
    min_effect: float | None,
    config_file: Path | None,
    confirm: _Confirm,
) -> int:
    if not baselines and not server:
        raise _Usage("give --baseline FILE_OR_FOLDER (offline) or --server URL (with history)")
    if baselines and server:
        raise _Usage("give either --baseline or --server, not both")
    if server and not (project and branch):
        raise _Usage("--server needs --project and --branch")
    if len({p.resolve() for p in results}) != len(results):
        raise _Usage("a results file is given twice: each head run counts once")
    try:
        extra_args = shlex.split(confirm.pytest_args)
    except ValueError as exc:
        raise _Usage(f"--pytest-args: {exc}") from None
    try:
        config = load_config(config_file).with_min_effect(min_effect)
        heads = [load_path(path) for path in results]
        history, run_url = _history(
            results, baselines, server, project, branch, commit, base_branch
        )
    except (BenchResultsError, GateConfigError) as exc:
        raise _Usage(str(exc)) from None
    head = heads[0]
    for other in heads[1:]:
        if other.machine_key() != head.machine_key() or other.options != head.options:
            raise _Usage(
                f"{other.source} is not a repeated run of {head.source}: its machine or "
                "benchmark options differ, so the two cannot be pooled"
            )

    # numpy, scipy and rich load only when gating, so other `hotpath` commands start fast
    from hotpath.gate.report import print_table, write_reports
    from hotpath.profiler.analysis.gate import compare

    comparison = compare(heads, history, config)
    if confirm.times:
        comparison = _confirmed(comparison, heads, history, config, confirm, extra_args)
    _note_quirks(comparison, head, history)
    if run_url:
        comparison.warnings.append(f"this run on the server: {run_url}")
    links: dict[str, str] = {}
    if profile and comparison.regressed:
        links = _profiles(comparison, server, project, branch, commit, base_branch, report_md,
                          report_json, confirm.rootdir)  # fmt: skip
    print_table(comparison, links)
    write_reports(comparison, report_md, report_json, links)
    if comparison.regressed:
        click.echo(f"FAIL: {len(comparison.regressed)} benchmark(s) regressed", err=True)
        return EXIT_REGRESSED
    click.echo("OK: nothing regressed", err=True)  # the counts are in the summary above
    return EXIT_OK


def _confirmed(
    comparison: Comparison,
    heads: list[BenchRun],
    history: list[BenchRun],
    config: GateConfig,
    confirm: _Confirm,
    extra_args: list[str],
) -> Comparison:
    """Re-run the suspects (and controls, to measure each re-run's own whole-run shift) round
    by round, up to `confirm.times` rounds, until each is settled; a failed re-run is bad input
    (exit 2)."""
    from hotpath.gate.rerun import RerunError, rerun_once
    from hotpath.profiler.analysis.gate import confirm_sequentially, controls, suspects

    suspected = suspects(comparison, config)
    if not suspected:
        click.echo("confirm: no suspects, nothing to re-run", err=True)
        return comparison
    control = set(controls(comparison, suspected))
    click.echo(
        f"confirm: {len(suspected)} suspect(s), re-run with {len(control)} control(s) up to "
        f"{confirm.times} time(s) in {confirm.rootdir}, until each is settled",
        err=True,
    )

    def rerun(names: list[str], index: int) -> BenchRun:
        left = sum(name not in control for name in names)
        click.echo(f"confirm: round {index}: {left} undecided suspect(s)", err=True)
        return rerun_once(
            names, index, confirm.times, confirm.rootdir, extra_args, heads[0],
            echo=lambda line: click.echo(f"confirm: {line}", err=True),
        )  # fmt: skip

    try:
        return confirm_sequentially(heads, history, config, rerun, confirm.times, first=comparison)
    except RerunError as exc:
        raise _Usage(str(exc)) from None


def _history(
    results: tuple[Path, ...],
    baselines: tuple[Path, ...],
    server: str | None,
    project: str | None,
    branch: str | None,
    commit: str | None,
    base_branch: str,
) -> tuple[list[BenchRun], str | None]:
    if not server:
        by_file = {
            Path(run.source).resolve(): run for path in baselines for run in load_baselines(path)
        }
        # a .benchmarks/ folder may hold the head files: never compare a run with itself
        for path in results:
            by_file.pop(Path(path).resolve(), None)
        runs = list(by_file.values())
        return sorted(runs, key=_run_order), None
    from hotpath.gate.exchange import GateServerError, exchange
    from hotpath.profiler.formats.pytest_benchmark import load_run

    assert project is not None and branch is not None
    try:
        history = exchange(server, project, branch, commit, base_branch, results[0])
    except GateServerError as exc:
        raise _Usage(str(exc)) from None
    runs = [load_run(data, name) for name, data in history.runs]
    return sorted(runs, key=_run_order), history.run_url


def _run_order(run: BenchRun) -> tuple[float, str]:
    return (run.datetime.timestamp() if run.datetime else float("-inf"), run.source)


def _note_quirks(comparison: Comparison, head: BenchRun, history: list[BenchRun]) -> None:
    for quirk in head.quirks:
        comparison.warnings.append(f"{head.source}: {quirk}")
    used = set(comparison.baseline_sources)
    quirky = [r for r in history if r.quirks and r.source in used]
    if quirky:
        comparison.warnings.append(
            f"{len(quirky)} baseline file(s) used have quirks (e.g. {quirky[0].source}: "
            f"{quirky[0].quirks[0]})"
        )


def _profiles(
    comparison: Comparison,
    server: str | None,
    project: str | None,
    branch: str | None,
    commit: str | None,
    base_branch: str,
    report_md: Path | None,
    report_json: Path | None,
    rootdir: Path,
) -> dict[str, str]:
    from hotpath.gate.profile import profile_flagged

    beside = report_md or report_json
    out_dir = (
        beside.resolve().parent / "hotpath-profiles"
        if beside
        else Path(tempfile.mkdtemp(prefix="hotpath-gate-"))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    found = profile_flagged(
        [v.fullname for v in comparison.regressed],
        rootdir=rootdir,
        server=server,
        project=project,
        branch=branch,
        commit=commit or comparison.head.commit_id(),
        base_branch=base_branch,
        out_dir=out_dir,
    )
    links: dict[str, str] = {}
    for name, link in found.items():
        target = link.url or (str(link.profile_path) if link.profile_path else None)
        if target:
            links[name] = target
        if link.note:
            comparison.warnings.append(f"profile of {name}: {link.note}")
    return links
