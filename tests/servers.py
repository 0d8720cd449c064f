"""Running real processes for tests and benchmarks: `hotpath serve` on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log
        self.token: str | None = None  # a token with every scope, when auth is required

    def client(self, token: str | None = None) -> httpx.Client:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


ALL_SCOPES = "ingest,read,admin,metrics,publish"


def make_token(db: str, scopes: str = ALL_SCOPES, tenant: str = "default") -> str:
    """A token made by the real `hotpath token create` on database `db` (its last line)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotpath",
            "token",
            "create",
            "--db",
            db,
            "--tenant",
            tenant,
            "--scope",
            scopes,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def start_server(
    db: str,
    data_dir: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    auth: str = "off",
) -> RunningServer:
    """`hotpath serve` on `port` (a free one by default); `env` adds environment variables
    (e.g. `HOTPATH_ALERT_*` settings). Tests whose subject is not authentication run it with
    `--auth off` (it binds 127.0.0.1); with `auth="required"` the server gets a token with
    every scope (`RunningServer.token`), which its `client()` sends."""
    port = port or free_port()
    log = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hotpath",
            "serve",
            "--port",
            str(port),
            "--db",
            db,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            "--auth",
            auth,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, **env} if env else None,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                running = RunningServer(url, process, log)
                if auth == "required":
                    running.token = make_token(db)
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def attach_agent(
    pid: int,
    server: str,
    service: str,
    *extra: str,
    spool_dir: Path | None = None,
    **popen: object,
) -> subprocess.Popen[str]:
    """The real `hotpath agent attach` on `pid`, its stderr piped (the summary is there).

    Each agent gets a spool folder of its own unless one is given.
    """
    spool = spool_dir or Path(tempfile.mkdtemp(prefix="hotpath-spool-"))
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(  # type: ignore[call-overload]
        [
            sys.executable,
            "-m",
            "hotpath",
            "agent",
            "attach",
            "--pid",
            str(pid),
            "--server",
            server,
            "--service",
            service,
            "--spool-dir",
            str(spool),
            *extra,
        ],
        cwd=REPO,
        text=True,
        **popen,
    )
