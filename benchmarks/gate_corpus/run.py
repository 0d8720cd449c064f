"""Make the gate's real corpus: run each project's own pytest-benchmark suite many times at
one commit, and as many times with a slowdown planted (see `plant.py`), interleaved, on this
machine while other work runs, as CI runners do.

    python benchmarks/gate_corpus/run.py setup --mirror DIR   # clones, plants, a venv
    python benchmarks/gate_corpus/run.py run --runs 12         # appends runs to the corpus

`setup` clones each project at its commit twice (`<name>-same`, `<name>-change`) under
--work, plants the slowdown in the second, and makes one venv with pytest, pytest-benchmark
and what the suites import. `run` then runs every project's suite, same and change in
alternating order, round after round, and writes the result files to
tests/data/gate_corpus/<name>/{same,change}/NN.json (raw `data` arrays dropped where huge).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from plant import plant  # noqa: E402
from projects import PROJECTS, Project  # noqa: E402

CORPUS = HERE.parent.parent / "tests" / "data" / "gate_corpus"
PINS = ["pytest==8.3.5", "pytest-benchmark==5.2.3"]
MAX_DATA = 200  # raw rounds kept per benchmark; more are dropped (the stats stay)


def setup(work: Path, mirror: str | None) -> None:
    work.mkdir(parents=True, exist_ok=True)
    venv = work / "venv"
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    needs = sorted({r for p in PROJECTS.values() for r in p.requires})
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PINS, *needs], check=True)
    for p in PROJECTS.values():
        source = (
            f"{mirror}/{p.repo.replace('/', '+')}/repo"
            if mirror
            else f"https://github.com/{p.repo}"
        )
        for variant in ("same", "change"):
            tree = work / f"{p.name}-{variant}"
            if not tree.exists():
                subprocess.run(["git", "clone", "-q", source, str(tree)], check=False)
            # a snapshot may lack a few large blobs the suites do not read: not fatal
            subprocess.run(["git", "-C", str(tree), "checkout", "-q", "-f", p.commit], check=False)
            subprocess.run(["git", "-C", str(tree), "checkout", "-q", "--", "."], check=False)
            if not (tree / p.plant_file).exists():
                raise SystemExit(f"{tree}: no {p.plant_file} after checking out {p.commit}")
            if variant == "change":
                plant(tree / p.plant_file, p.plant_function, p.plant_work)


def run_once(work: Path, p: Project, variant: str, out: Path) -> float:
    """One run of the project's suite; returns its wall time in seconds."""
    tree = work / f"{p.name}-{variant}"
    cmd = [str(work / "venv" / "bin" / "python"), "-m", "pytest"]
    cmd += [a.replace("{json}", str(out)) for a in p.command]
    env = dict(os.environ, PYTHONPATH=p.pythonpath, PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{p.name} {variant} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    _trim(out)
    return time.monotonic() - start


def _trim(path: Path) -> None:
    """Drop raw `data` arrays longer than MAX_DATA (they can be megabytes); note it."""
    doc = json.loads(path.read_text())
    for bench in doc["benchmarks"]:
        data = bench["stats"].get("data")
        if data is not None and len(data) > MAX_DATA:
            del bench["stats"]["data"]
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def run(work: Path, runs: int, names: list[str]) -> None:
    for name in names:
        for variant in ("same", "change"):
            (CORPUS / name / variant).mkdir(parents=True, exist_ok=True)
    for _ in range(runs):
        for name in names:
            p = PROJECTS[name]
            taken = len(list((CORPUS / name / "same").glob("*.json")))
            order = ("same", "change") if taken % 2 == 0 else ("change", "same")
            for variant in order:
                n = len(list((CORPUS / name / variant).glob("*.json"))) + 1
                out = CORPUS / name / variant / f"{n:02d}.json"
                partial = out.with_suffix(".partial")  # no half-written run in the corpus
                seconds = run_once(work, p, variant, partial)
                partial.rename(out)
                print(f"{name} {variant} {n:02d}: {seconds:.1f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["setup", "run"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/gate_corpus"))
    ap.add_argument("--mirror", help="folder of fetched snapshots instead of GitHub")
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--project", action="append", choices=sorted(PROJECTS))
    args = ap.parse_args()
    if args.what == "setup":
        setup(args.work, args.mirror)
    else:
        run(args.work, args.runs, args.project or sorted(PROJECTS))


if __name__ == "__main__":
    main()
