"""`hotpath agent memory` on bad input, through the real command line: a clear message, a
non-zero exit, nothing stored on the server and no capture file left behind."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.memray_targets import start_planted, stop
from tests.servers import REPO, RunningServer

BARE_PYTHON = next(  # a Python without memray: the target cannot run memray's attach code
    (
        p
        for p in (
            f"/root/.pyenv/versions/{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}/bin/python3",
            "/usr/bin/python3",
        )
        if Path(p).exists()
        and subprocess.run([p, "-c", "import memray"], capture_output=True).returncode != 0
    ),
    None,
)


def _leftovers(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"hotpath-memray-{pid}-*"))


def _memory(
    pid: int,
    *extra: str,
    server: str = "http://127.0.0.1:9",
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    duration: str = "2",
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hotpath", "agent", "memory", "--pid", str(pid)]
    argv += ["--service", "svc", "--duration", duration, "--server", server, *extra]
    return subprocess.run(
        (prefix or []) + argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def _nothing_stored(server: RunningServer) -> None:
    with server.client() as client:
        answer = client.get("/api/v1/memory/captures", params={"service": "svc"})
    assert answer.status_code == 404 or answer.json() == [], answer.text


@pytest.fixture
def target(tmp_path: Path) -> Iterator[int]:
    process, _trigger = start_planted(tmp_path)
    yield process.pid
    stop(process)


def test_a_pid_that_does_not_exist() -> None:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    done = _memory(pid, "--yes")
    assert done.returncode == 1
    assert f"no running process with PID {pid}" in done.stderr


def test_a_process_that_is_not_python() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        done = _memory(sleeper.pid, "--yes")
        assert done.returncode == 1
        assert "does not look like a Python process" in done.stderr
        assert sleeper.poll() is None  # not harmed
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_no_permission_to_trace_another_users_process(target: int) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = _memory(target, "--yes", prefix=nobody)
    assert done.returncode == 1
    assert "not permitted to trace process" in done.stderr
    assert "uid 0" in done.stderr and "uid 65534" in done.stderr


def test_gdb_missing(target: int, tmp_path: Path) -> None:
    done = _memory(target, "--yes", env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 1
    assert "gdb is not installed" in done.stderr


@pytest.mark.skipif(BARE_PYTHON is None, reason="no Python without memray here")
def test_memray_missing_in_the_target(tmp_path: Path) -> None:
    assert BARE_PYTHON is not None
    script = tmp_path / "bare.py"
    script.write_text("import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.01)\n")
    bare = subprocess.Popen([BARE_PYTHON, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
        done = _memory(bare.pid, "--yes")
        assert done.returncode == 1
        assert f"process {bare.pid} cannot import memray" in done.stderr
        assert "nothing was shipped" in done.stderr
        assert bare.poll() is None  # still running after the failed attach
        assert not _leftovers(bare.pid)
    finally:
        bare.kill()
        bare.wait()


def test_the_target_exits_during_the_capture(sqlite_server: RunningServer, tmp_path: Path) -> None:
    script = tmp_path / "short.py"
    script.write_text(
        "import time\nkept = []\nprint('ready', flush=True)\nend = time.time() + 5\n"
        "while time.time() < end:\n    kept.append(bytearray(4096)); time.sleep(0.005)\n"
    )
    short = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert short.stdout is not None and short.stdout.readline().strip() == "ready"
        done = _memory(short.pid, "--yes", server=sqlite_server.url, duration="10")
        assert done.returncode == 1
        assert f"process {short.pid} exited during the capture" in done.stderr
        assert "nothing was shipped" in done.stderr
        assert not _leftovers(short.pid)
        _nothing_stored(sqlite_server)
    finally:
        short.kill()
        short.wait()


def test_without_yes_and_without_a_terminal_it_refuses(target: int) -> None:
    done = _memory(target)
    assert done.returncode == 2
    assert "pass --yes" in done.stderr
    assert "frozen about" in done.stderr  # it said what it would do first


def test_a_server_that_is_away_gets_nothing_and_the_target_is_detached(target: int) -> None:
    done = _memory(target, "--yes", server="http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach the server" in done.stderr and "Nothing was shipped" in done.stderr
    assert "detached: target paused" in done.stderr
    assert not _leftovers(target)
