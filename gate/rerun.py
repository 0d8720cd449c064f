"""Confirmation re-runs for `hotpath gate --confirm N`: the undecided suspects (and a few
controls) are run again with real pytest, each re-run round a separate process in the project's
directory, and read back as pytest-benchmark runs to be pooled with the head run.

A pytest-benchmark `fullname` is the pytest node id relative to the rootdir pytest used, so
the node ids are passed to pytest as they are, from `rootdir` (the current directory unless
`--rootdir` says otherwise): run the gate where the benchmarks ran.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hotpath.profiler.analysis.gate import options_diff
from hotpath.profiler.formats.pytest_benchmark import BenchResultsError, BenchRun, load_path

# pytest's exit codes: 0 all passed, 1 some tests failed; anything else (interrupted, internal
# error, usage error, nothing collected) means the re-run did not happen as asked
PYTEST_RAN = (0, 1)
OUTPUT_TAIL = 12  # lines of pytest's output quoted when a re-run fails


class RerunError(Exception):
    """A re-run that failed or measured something else; the message says what and how to fix."""


def rerun_command(node_ids: list[str], json_path: Path, pytest_args: list[str]) -> list[str]:
    # a `--benchmark-autosave` in the project's addopts must not drop these partial runs into
    # .benchmarks/, where they would become baselines: its storage is the temporary folder
    storage = f"--benchmark-storage=file://{json_path.parent / 'storage'}"
    return [
        sys.executable, "-m", "pytest", *node_ids, f"--benchmark-json={json_path}", "-q",
        "-p", "no:cacheprovider", storage, *pytest_args,
    ]  # fmt: skip


def rerun_once(
    node_ids: list[str],
    index: int,
    times: int,
    rootdir: Path,
    pytest_args: list[str],
    head: BenchRun,
    echo: Callable[[str], None] = lambda _line: None,
) -> BenchRun:
    """Re-run `index` of up to `times`: the benchmarks `node_ids` once, in a new pytest process
    in `rootdir`, checked to measure all of them on the head run's machine with its options."""
    with tempfile.TemporaryDirectory(prefix="hotpath-confirm-") as tmp:
        json_path = Path(tmp) / f"rerun-{index}.json"
        command = rerun_command(node_ids, json_path, pytest_args)
        shown = shlex.join(["python", *command[1:]])
        echo(f"re-run {index} of up to {times}: {shown}")
        try:
            done = subprocess.run(command, cwd=rootdir, capture_output=True, text=True)
        except OSError as exc:
            raise RerunError(f"re-run {index} could not start pytest: {exc}") from None
        if done.returncode not in PYTEST_RAN or not json_path.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-OUTPUT_TAIL:])
            raise RerunError(
                f"re-run {index} of up to {times} failed: pytest exited {done.returncode} "
                f"{'without writing' if not json_path.is_file() else 'after writing'} "
                f"its benchmark JSON (in {rootdir}: {shown})\n{tail}"
            )
        try:
            run = load_path(json_path)
        except BenchResultsError as exc:
            raise RerunError(f"re-run {index}: {exc}") from None
    return _checked(replace(run, source=f"re-run {index}"), node_ids, head, rootdir)


def _checked(run: BenchRun, node_ids: list[str], head: BenchRun, rootdir: Path) -> BenchRun:
    measured = run.by_fullname()
    missing = [n for n in node_ids if n not in measured]
    if missing:
        raise RerunError(
            f"{run.source} did not measure {len(missing)} of the {len(node_ids)} benchmark(s) "
            f"asked for, e.g. {missing[0]!r}. A benchmark's fullname is its pytest node id "
            f"relative to the directory pytest ran in ({rootdir}): run hotpath gate where the "
            "benchmarks ran, or pass that directory with --rootdir"
        )
    if run.machine_key() != head.machine_key():
        raise RerunError(
            f"{run.source} ran on {run.machine_key()}, but {head.source} on "
            f"{head.machine_key()}: confirm on the machine that ran the benchmarks"
        )
    if run.options != head.options:
        raise RerunError(
            f"{run.source} ran with other benchmark options than {head.source} ("
            + ", ".join(options_diff(head.options, run.options))
            + "): pass the head run's pytest-benchmark options with --pytest-args"
        )
    return run
