"""The `hotpath` command line: the group, `agent attach`, `demo`, and the commands of the
other modules (`reads`: export, diff, paths; `upload`; `gate`; `serve`, loaded lazily)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from hotpath.cli.extras import require_extra
from hotpath.cli.leaks_report import leaks
from hotpath.cli.options import DEFAULT_SERVER, labels_callback
from hotpath.cli.reads import diff, export, paths
from hotpath.cli.upload import upload
from hotpath.gate.cli import gate


class _Commands(click.Group):
    """Loads `serve` and `token` only when asked, so the agent never imports the server's
    dependencies; a command that needs an extra (`hotpath.cli.extras`) says so, with exit
    code 2, when the extra is not installed."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None:
            require_extra(name)
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve", "token"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "serve":
            from hotpath.server.cli import serve

            return serve
        if name == "token":
            from hotpath.server.token_cli import token

            return token
        return super().get_command(ctx, name)


@click.group(cls=_Commands)
@click.option("-v", "--verbose", is_flag=True, help="Log what the agent does.")
def cli(verbose: bool) -> None:
    """hotpath: continuous profiling for latency-critical Python processes."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.group()
def agent() -> None:
    """Sample running processes and ship their profiles to the server."""


@agent.command()
@click.option("--pid", required=True, type=int, help="Process to sample.")
@click.option("--service", required=True, help="Service name the profiles are stored under.")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@click.option(
    "--rate",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Samples per second.",
)
@click.option(
    "--window",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 600),
    help="Seconds per shipped window.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    callback=labels_callback,
    metavar="KEY=VALUE",
    help="Extra label (repeatable); host and pid are always added.",
)
@click.option(
    "--spool-dir",
    type=click.Path(path_type=Path),
    default=Path("data/spool"),
    show_default=True,
    help="Where windows wait while the server is away.",
)
@click.option(
    "--idle",
    is_flag=True,
    help="Sample waiting threads too: the wall profile type (wall-clock time) instead of cpu. "
    "Hot-path attribution of wall profiles counts time spent waiting on sockets, locks and "
    "sleeps.",
)
@click.option(
    "--token",
    envvar="HOTPATH_TOKEN",
    show_envvar=True,
    help="Sent as 'Authorization: Bearer TOKEN'. A refused token keeps windows spooled.",
)
@click.option(
    "--spool-max-bytes",
    default=256 * 2**20,
    show_default="268435456 = 256 MiB",
    type=click.IntRange(min=1),
    help="Cap on the spool's size in bytes; when full, the oldest windows are deleted first.",
)
@click.option(
    "--spool-max-files",
    default=10_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Cap on the windows in the spool; when full, the oldest are deleted first.",
)
@click.option(
    "--max-server-errors",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="A window answered with the same 5xx (except 503) this many times in a row is moved "
    "to the spool's quarantine/ folder, so the windows behind it go on.",
)
def attach(
    pid: int,
    service: str,
    server: str,
    rate: int,
    window: float,
    labels: dict[str, str],
    spool_dir: Path,
    idle: bool,
    token: str | None,
    spool_max_bytes: int,
    spool_max_files: int,
    max_server_errors: int,
) -> None:
    """Attach to a running Python process with py-spy and ship its profile window by window.

    The spool is capped and never stops the agent: a full or read-only disk means windows
    are sent directly from a small in-memory queue; windows the server refuses for good are
    set aside in SPOOL_DIR/SERVICE/quarantine/ with a .reason file."""
    from hotpath.agent.attach import AttachOptions
    from hotpath.agent.attach import attach as run_attach
    from hotpath.profiler.adapters.pyspy import PySpyError, check_target

    options = AttachOptions(
        pid=pid,
        service=service,
        server=server,
        rate_hz=rate,
        window_s=window,
        labels=labels,
        spool_dir=spool_dir,
        idle=idle,
        token=token or None,
        max_spool_bytes=spool_max_bytes,
        max_spool_files=spool_max_files,
        max_server_errors=max_server_errors,
    )
    try:
        check_target(pid)
        click.echo(
            f"attached to pid {pid} as {service!r}: {rate} Hz, {window:g} s windows -> {server}",
            err=True,
        )
        summary = run_attach(options)
    except PySpyError as exc:
        raise click.ClickException(str(exc)) from None
    folder = spool_dir / service
    click.echo(
        f"pid {pid} done: {summary.windows} windows, {summary.samples} samples, "
        f"{summary.shipped} shipped, {summary.spooled} spooled, {summary.quarantined} refused "
        f"(set aside in {folder / 'quarantine'}), {summary.sent_direct} sent directly, "
        f"{summary.dropped_full} dropped (spool full), {summary.dropped_memory} dropped "
        f"(memory queue full), {summary.left} left in {folder}",
        err=True,
    )
    dropped = summary.dropped_full + summary.dropped_memory
    if summary.left or summary.quarantined or dropped:
        raise click.ClickException(
            f"{summary.left} windows could not be delivered (they stay in {folder} for the "
            f"next run), {summary.quarantined} were refused by the server and {dropped} were "
            "dropped"
        )


@agent.command()
@click.option("--pid", required=True, type=int, help="Python process to capture.")
@click.option("--service", required=True, help="Service name the capture is stored under.")
@click.option(
    "--duration",
    required=True,
    type=click.FloatRange(1, 3600),
    help="Seconds to record allocations for.",
)
@click.option("--yes", is_flag=True, help="Attach without asking.")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@click.option(
    "--token",
    envvar="HOTPATH_TOKEN",
    show_envvar=True,
    help="Sent as 'Authorization: Bearer TOKEN' (ingest scope).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    callback=labels_callback,
    metavar="KEY=VALUE",
    help="Extra label (repeatable); host and pid are always added.",
)
@click.option(
    "--small-objects",
    is_flag=True,
    help="Trace every Python object, those of 512 B or less too (memray's "
    "--trace-python-allocators): finds leaks of many small objects, which are otherwise "
    "seen only as whole new pymalloc pools; slows the target more while captured.",
)
def memory(
    pid: int,
    service: str,
    duration: float,
    yes: bool,
    server: str,
    token: str | None,
    labels: dict[str, str],
    small_objects: bool,
) -> None:
    """Capture a running Python process's allocations with memray for DURATION seconds and
    ship them: bytes and allocations made, bytes still held at the end, and which functions'
    held bytes grew. memray attaches through gdb, which freezes the target briefly at the
    start and at the end; both pauses are measured and shown. The target's environment
    needs memray too (`pip install 'hotpath[memory]'`). Exit 0 when shipped; nothing is
    shipped on any failure."""
    from hotpath.cli.memory_report import run_memory

    run_memory(pid, service, duration, yes, server, token or None, labels, small_objects)


@cli.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path("data/demo"), show_default=True
)
@click.option("--window", default=5.0, show_default=True, type=float)
def demo(port: int, data_dir: Path, window: float) -> None:
    """Run a server, a simulated trading process and an agent attached to it."""
    from hotpath.cli.demo import run_demo

    run_demo(port=port, data_dir=data_dir, window_s=window)


for command in (export, diff, paths, leaks, upload, gate):
    cli.add_command(command)


def main() -> None:
    cli()
