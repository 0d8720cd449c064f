"""`hotpath demo`: a server, a simulated trading process, and an agent attached to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from hotpath.agent.attach import AttachOptions, attach


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the server at {url} did not become healthy in {timeout_s:g} s")


def run_demo(port: int, data_dir: Path, window_s: float) -> None:
    port = free_port(port)
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hotpath",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            # A demo on this machine alone (127.0.0.1): no tokens to hand out.
            "--auth",
            "off",
        ]
    )
    trader = subprocess.Popen([sys.executable, "-m", "hotpath.cli.demo_trader"])
    try:
        wait_healthy(url)
        click.echo(f"\nserver:  {url}  (SQLite in {data_dir})")
        click.echo(f"trader:  pid {trader.pid}, service 'demo-trader'")
        click.echo(f"flame graph (first window after {window_s:g} s): {url}/services/demo-trader")
        click.echo(
            "hot path (3 ms budget, p99 breaches it): "
            f"{url}/services/demo-trader/hotpaths/order_execution"
        )
        click.echo(f"alerts (after 3 breached 10 s intervals): {url}/alerts")
        click.echo("Ctrl-C stops the demo.\n")
        attach(
            AttachOptions(
                pid=trader.pid,
                service="demo-trader",
                server=url,
                window_s=window_s,
                labels={"version": "demo"},
                spool_dir=data_dir / "spool",
            )
        )
    finally:
        for process in (trader, server):
            process.terminate()
        for process in (trader, server):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
