"""One package that does not pollute its users: the wheel, installed plain into a fresh venv.

`pip install hotpath` is what a trading process (`from hotpath import hot_path`) and the agent
need, and nothing of the server or the statistics stack; `hotpath[server]` and `hotpath[gate]`
add those. The slow half builds the wheel of the checkout once per module, installs it without
extras into a new virtualenv (its dependencies from the package index, through pip's cache),
and runs the in-process API, the command line and the agent there. The cheap half checks the
layout in pyproject.toml against the folders of the repository and what the development venv
imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import venv
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import zstandard

from hotpath.cli.extras import extra_packages, missing
from hotpath.profiler.formats.window import Window
from hotpath.profiler.hotpath.histogram import Histogram
from tests.servers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Folders of the repository that are not part of the package.
NOT_SHIPPED = {"tests", "benchmarks", "node_modules", "build", "dist", "data", "artifacts"}
# What a plain install must not bring (distribution names).
SERVER_AND_STATISTICS = ["fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg", "scipy", "numpy"]


def package_roots(repo: Path = REPO) -> dict[str, Path]:
    """Import name -> folder, from pyproject's `package-dir`."""
    return {name: repo / folder for name, folder in SETUPTOOLS["package-dir"].items()}


def repository_packages() -> dict[str, Path]:
    """Every folder of the repository with an `__init__.py` that is meant to ship, by the dotted
    name pyproject's `package-dir` gives it ("?folder" when no root maps it)."""
    roots = sorted(package_roots().items(), key=lambda item: len(item[1].parts), reverse=True)
    found: dict[str, Path] = {}
    for init in REPO.rglob("__init__.py"):
        folder = init.parent
        relative = folder.relative_to(REPO)
        if relative.parts[0] in NOT_SHIPPED or any(p.startswith(".") for p in relative.parts):
            continue
        for name, root in roots:
            if folder == root or root in folder.parents:
                found[".".join([name, *folder.relative_to(root).parts])] = folder
                break
        else:
            found[f"?{relative.as_posix()}"] = folder
    return found


def shipped_files(repo: Path) -> dict[str, Path]:
    """Every file the wheel must hold, by its path in the wheel: the modules and the package
    data (templates, static files, migrations ...) under the package folders."""
    expected: dict[str, Path] = {}
    for name, root in package_roots(repo).items():
        prefix = name.replace(".", "/")
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                expected[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return expected


# --- cheap: no build -----------------------------------------------------------------------


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(SETUPTOOLS["packages"])
    found = repository_packages()
    assert not [name for name in found if name.startswith("?")], (
        "package folders that no `package-dir` root maps (add one, or list the folder as not "
        f"shipped here): {sorted(n for n in found if n.startswith('?'))}"
    )
    missing = sorted(set(found) - listed)
    assert not missing, f"package folders missing from pyproject's `packages`: {missing}"
    gone = sorted(listed - set(found))
    assert not gone, f"pyproject lists packages that have no folder: {gone}"


def test_the_image_copies_every_package_folder_and_installs_the_server() -> None:
    # No docker engine here: read the Dockerfile for what the build would need.
    lines = (REPO / "Dockerfile").read_text().splitlines()
    copied = {
        line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line
    }
    folders = {Path(f).parts[0] for f in SETUPTOOLS["package-dir"].values()}
    assert folders <= copied, f"the Dockerfile does not copy {sorted(folders - copied)}"
    installs = [line for line in lines if "pip install" in line]
    assert installs and all("'.[server]'" in line for line in installs), installs


def test_the_extras_commands_need_are_read_from_hotpaths_metadata() -> None:
    server, gate = extra_packages("server"), extra_packages("gate")
    assert set(SERVER_AND_STATISTICS) <= set(server)
    assert {"numpy", "scipy", "pyinstrument"} <= set(gate)
    assert missing(server + gate) == []  # the development venv has everything
    assert missing(["fastapi", "hotpath-no-such-distribution"]) == ["hotpath-no-such-distribution"]
    assert extra_packages("no-such-extra") == []


def test_the_in_process_api_and_the_agent_import_nothing_heavy() -> None:
    # In the development venv, where all of these are installed: importing them is a choice.
    code = textwrap.dedent(
        """
        import sys
        import hotpath
        from hotpath import hot_path
        assert "numpy" not in sys.modules, "import hotpath imported numpy"
        import hotpath.agent.attach, hotpath.agent.hotpaths, hotpath.cli.main
        import hotpath.profiler.formats.window, hotpath.profiler.hotpath.reader
        heavy = {"numpy", "scipy", "fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg"}
        print(sorted(heavy & {name.split(".")[0] for name in sys.modules}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- slow: the wheel in a fresh venv -------------------------------------------------------


class PlainInstall:
    def __init__(self, source: Path, wheel: Path, prefix: Path) -> None:
        # `source`: the copy of the checkout the wheel was built from.
        self.source, self.wheel, self.prefix = source, wheel, prefix
        self.python = prefix / "bin" / "python"
        self.hotpath = prefix / "bin" / "hotpath"

    def run(self, *argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        # Outside the checkout, so that only the installed package can be imported.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            cwd=self.prefix,
            env=env,
            timeout=120,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> PlainInstall:
    work = tmp_path_factory.mktemp("packaging")
    # Build from a copy of the checkout's package files: an in-tree build would leave build/
    # and reuse a stale egg-info, and two test runs would share them.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {Path(f).parts[0] for f in SETUPTOOLS["package-dir"].values()}:
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    quiet = ["-q", "--disable-pip-version-check"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *quiet, source, "-w", work / "wheel"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "wheel").glob("hotpath-*.whl")
    prefix = work / "venv"
    venv.EnvBuilder(with_pip=True).create(prefix)
    install = PlainInstall(source, wheel, prefix)
    installed = install.run(install.python, "-m", "pip", "install", *quiet, wheel)
    assert installed.returncode == 0, installed.stderr
    return install


def test_the_wheel_installs_one_top_level_name(plain: PlainInstall) -> None:
    with zipfile.ZipFile(plain.wheel) as wheel:
        names = wheel.namelist()
        top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        (info,) = {n.split("/")[0] for n in names} - top_level
        declared = wheel.read(f"{info}/top_level.txt").decode().split()
    assert top_level == {"hotpath"}
    assert declared == ["hotpath"]


def test_the_wheel_holds_every_module_and_data_file(plain: PlainInstall) -> None:
    with zipfile.ZipFile(plain.wheel) as wheel:
        names = set(wheel.namelist())
    # What was copied when the wheel was built (others may be adding files meanwhile).
    expected = shipped_files(plain.source)
    assert {"hotpath/server/templates/base.html", "hotpath/cli/main.py"} <= set(expected)
    missing = sorted(set(expected) - names)
    assert not missing, f"files of the checkout missing from the wheel: {missing}"


def test_a_plain_install_brings_nothing_of_the_server_or_the_statistics(
    plain: PlainInstall,
) -> None:
    code = textwrap.dedent(
        """
        import importlib.metadata as md, json, sys
        present = {}
        for name in sys.argv[1:]:
            try:
                present[name] = md.version(name)
            except md.PackageNotFoundError:
                pass
        print(json.dumps({"present": present, "hotpath": md.version("hotpath")}))
        """
    )
    out = plain.run(plain.python, "-c", code, *SERVER_AND_STATISTICS)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["hotpath"] == PYPROJECT["project"]["version"]
    assert found["present"] == {}


def test_import_hotpath_and_time_a_function_without_numpy(plain: PlainInstall) -> None:
    code = textwrap.dedent(
        """
        import importlib.util, sys
        import hotpath
        from hotpath import hot_path

        @hot_path("packaging.timed", budget_ms=5)
        def double(x):
            return 2 * x

        assert [double(i) for i in range(3)] == [0, 2, 4]
        print(hotpath.__file__)
        print("numpy" in sys.modules, importlib.util.find_spec("numpy") is not None)
        """
    )
    out = plain.run(plain.python, "-c", code)
    assert out.returncode == 0, out.stderr
    where, numpy_state = out.stdout.splitlines()
    assert Path(where).is_relative_to(plain.prefix)  # the installed copy, not the checkout
    assert numpy_state == "False False"


def test_the_command_line_runs_and_names_the_missing_extras(plain: PlainInstall) -> None:
    helped = plain.run(plain.hotpath, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("agent", "export", "diff", "paths", "serve", "gate"):
        assert f"  {command} " in helped.stdout, command
    for argv in (["agent", "attach"], ["export"], ["diff"], ["paths"]):
        shown = plain.run(plain.hotpath, *argv, "--help")
        assert shown.returncode == 0 and "Usage:" in shown.stdout, (argv, shown.stderr)
    # The client commands run through to the network, their imports all there.
    for argv in (["export"], ["paths"], ["diff", "--base", "v=1", "--head", "v=2"]):
        unreachable = plain.run(
            plain.hotpath, *argv, "--service", "s", "--server", "http://127.0.0.1:9"
        )
        assert unreachable.returncode in (1, 2), (argv, unreachable.stderr)
        assert "cannot reach the server" in unreachable.stderr, (argv, unreachable.stderr)
    for command, extra in (("serve", "server"), ("gate", "gate")):
        refused = plain.run(plain.hotpath, command, *(["results.json"] * (command == "gate")))
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert f"hotpath {command} needs the {extra} extra" in refused.stderr
        assert f"pip install 'hotpath[{extra}]'" in refused.stderr
        assert "Traceback" not in refused.stderr


# The target times a decorated function and records known durations; the agent, in the same
# plain venv, takes its baseline, lets the target run, and prints what it would ship.
TARGET = """
import os, sys
from hotpath import hot_path

@hot_path("packaging.work", budget_ms=50)
def work(n):
    return sum(range(n))

known = hot_path("packaging.known")
work(10)  # before the agent's baseline: not in its window
print("ready", flush=True)
os.read(0, 1)
for _ in range(250):
    work(1_000)
for ns in [int(x) for x in sys.argv[1:]]:
    known.record(ns)
print("done", flush=True)
os.read(0, 1)
"""

AGENT = """
import json, subprocess, sys
from hotpath.agent.hotpaths import HotPathTracker

target = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
try:
    assert target.stdout.readline() == "ready\\n"
    tracker = HotPathTracker(target.pid)
    target.stdin.write("x"); target.stdin.flush()
    assert target.stdout.readline() == "done\\n"
    window = tracker.window()
    tracker.close()
finally:
    target.stdin.write("x"); target.stdin.close()
    target.wait(timeout=30)
print(json.dumps({
    "window": [w.model_dump() for w in window],
    "numpy": "numpy" in sys.modules,
}))
"""


def test_the_plain_agent_reads_the_hot_paths_of_a_real_process(plain: PlainInstall) -> None:
    known = [0, 700, 1_000, 1_500, 45_000, 45_100, 2_000_000, 7 * 10**9, 3 * 10**11]
    out = plain.run(plain.python, "-c", AGENT, TARGET, *map(str, known))
    assert out.returncode == 0, out.stderr
    shipped = json.loads(out.stdout)
    assert shipped["numpy"] is False
    windows = {w["name"]: w for w in shipped["window"]}
    assert set(windows) == {"packaging.work", "packaging.known"}
    work = windows["packaging.work"]
    assert work["histogram"]["count"] == 250  # the call before the baseline is not in it
    assert work["budget_ns"] == 50_000_000 and work["function"].startswith("work (")
    # Exactly what the server's numpy histogram of the same durations ships.
    expected = Histogram()
    for ns in known:
        expected.record(ns)
    assert windows["packaging.known"]["histogram"] == expected.to_wire()
    assert Histogram.from_wire(work["histogram"]).count == 250


class _Receiver(BaseHTTPRequestHandler):
    """Stands in for the server (which the plain install has not): keeps what is posted."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


SPINNER = """
import sys, time
from hotpath import hot_path

@hot_path("packaging.order", budget_ms=1)
def order(n):
    return sum(i * i for i in range(n))

deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    order(2_000)
"""


def test_the_plain_agent_attaches_with_py_spy_and_ships_windows(
    plain: PlainInstall, tmp_path: Path
) -> None:
    bodies: list[bytes] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as receiver:
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{receiver.server_address[1]}"
        target = subprocess.Popen([plain.python, "-c", SPINNER, "3"], cwd=plain.prefix)
        try:
            time.sleep(0.5)  # let it register its hot path
            attach = ["agent", "attach", "--pid", str(target.pid), "--service", "plain"]
            options = ["--server", url, "--window", "1", "--spool-dir", tmp_path]
            agent = plain.run(plain.hotpath, *attach, *options)
        finally:
            target.kill()
            target.wait()
        receiver.shutdown()
    assert agent.returncode == 0, agent.stderr
    windows = [Window.model_validate_json(zstandard.decompress(body)) for body in bodies]
    assert windows, agent.stderr
    assert sum(sum(w.counts) for w in windows) > 0  # py-spy's samples
    calls = [hp for w in windows for hp in w.hot_paths]
    assert {hp.name for hp in calls} == {"packaging.order"}
    assert sum(Histogram.from_wire(hp.histogram).count for hp in calls) > 100
