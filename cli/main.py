"""The `hotpath` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from hotpath.cli.extras import require_extra
from hotpath.gate.cli import gate
from hotpath.profiler.formats import registry
from hotpath.profiler.labels import parse_labels
from hotpath.profiler.model import CPU, PROFILE_TYPES
from hotpath.profiler.timespec import parse_range

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _labels(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_labels(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class _Commands(click.Group):
    """Loads `serve` only when asked, so the agent never imports the server's dependencies;
    a command that needs an extra (`hotpath.cli.extras`) says so, with exit code 2, when the
    extra is not installed."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None:
            require_extra(name)
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "serve":
            from hotpath.server.cli import serve

            return serve
        return super().get_command(ctx, name)


F = TypeVar("F", bound=Callable[..., Any])


def type_option(
    flag: str = "--type", default: str | None = CPU.id, help: str = "Profile type."
) -> Callable[[F], F]:
    """`--type cpu|wall|alloc_bytes|...`: every read is of one profile type."""
    dest = "profile_type" if flag == "--type" else flag.removeprefix("--").replace("-", "_")
    return click.option(
        flag,
        dest,
        type=click.Choice(list(PROFILE_TYPES)),
        default=default,
        show_default=default is not None,
        help=help,
    )


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
    callback=_labels,
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
def attach(
    pid: int,
    service: str,
    server: str,
    rate: int,
    window: float,
    labels: dict[str, str],
    spool_dir: Path,
    idle: bool,
) -> None:
    """Attach to a running Python process with py-spy and ship its profile window by window."""
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
    click.echo(
        f"pid {pid} done: {summary.windows} windows, {summary.samples} samples, "
        f"{summary.shipped} shipped, {summary.spooled} spooled, {summary.rejected} refused, "
        f"{summary.left} left in {spool_dir / service}",
        err=True,
    )
    if summary.left or summary.rejected:
        raise click.ClickException(
            f"{summary.left} windows could not be delivered (they stay in {spool_dir / service} "
            f"for the next run) and {summary.rejected} were refused by the server"
        )


@cli.command()
@click.option("--service", required=True)
@click.option(
    "--from",
    "start",
    default="-1h",
    show_default=True,
    help="ISO-8601, unix seconds, or relative (-15m).",
)
@click.option("--until", default="now", show_default=True)
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="KEY=VALUE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(registry.writable()),
    default="collapsed",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: stdout].",
)
@type_option()
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
def export(
    service: str,
    start: str,
    until: str,
    labels: dict[str, str],
    fmt: str,
    output: Path | None,
    profile_type: str,
    server: str,
) -> None:
    """Write the merged profile of a service over a time range (one profile type)."""
    response, _, _ = _query(
        server,
        "/api/v1/profile",
        service,
        start,
        until,
        labels,
        [("format", fmt), ("type", profile_type)],
    )
    if output is None:
        sys.stdout.buffer.write(response.content)  # pprof is binary
    else:
        output.write_bytes(response.content)
        click.echo(
            f"wrote {output} ({response.headers.get('x-hotpath-samples', '?')} samples)", err=True
        )


@cli.command()
@click.option("--service", required=True)
@click.option(
    "--base",
    "base_spec",
    multiple=True,
    required=True,
    metavar="LABEL_OR_RANGE",
    help="key=value and/or FROM..UNTIL (repeatable).",
)
@click.option("--head", "head_spec", multiple=True, required=True, metavar="LABEL_OR_RANGE")
@click.option(
    "--threshold",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Smallest growth of a function's self share, in percentage points, to flag.",
)
@click.option(
    "--alpha",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Significance level after Benjamini-Hochberg correction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ranked functions as JSON.")
@click.option("--limit", default=20, show_default=True, help="Rows in the table.")
@type_option(help="Profile type of both sides.")
@type_option("--base-type", default=None, help="Profile type of the base [default: --type].")
@type_option("--head-type", default=None, help="Profile type of the head [default: --type].")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
def diff(
    service: str,
    base_spec: tuple[str, ...],
    head_spec: tuple[str, ...],
    threshold: float,
    alpha: float,
    as_json: bool,
    limit: int,
    profile_type: str,
    base_type: str | None,
    head_type: str | None,
    server: str,
) -> None:
    """Compare two profiles of a service; exit 1 when a function got significantly slower.

    Each side is labels (version=1.4.2), a time range (-2h..-1h, or ISO-8601 times), or both
    (--base version=1.4.2 --base -2h..-1h); a side without a range is the last hour.
    Exit codes: 0 nothing got slower, 1 a slowdown was flagged, 2 bad input or no answer.
    """
    from hotpath.cli.diff_report import fetch_diff, parse_side, print_table

    try:
        params = [
            ("service", service),
            ("alpha", str(alpha)),
            ("min_change_pp", str(threshold)),
            ("type", profile_type),
            # Sides of different types are refused by the server, with its message.
            *([("base_type", base_type)] if base_type else []),
            *([("head_type", head_type)] if head_type else []),
            *parse_side("base", base_spec),
            *parse_side("head", head_spec),
        ]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    result = fetch_diff(server, params)
    if as_json:
        click.echo(json.dumps(result["functions"], indent=2))
    else:
        print_table(result, limit)
    sys.exit(1 if any(f["flagged"] for f in result["functions"]) else 0)


@cli.command()
@click.option("--service", required=True)
@click.option("--from", "start", default="-1h", show_default=True)
@click.option("--until", default="now", show_default=True)
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="KEY=VALUE")
@click.option("--json", "as_json", is_flag=True, help="Print the hot paths as JSON.")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
def paths(
    service: str, start: str, until: str, labels: dict[str, str], as_json: bool, server: str
) -> None:
    """Latency of each hot path (p50 ... max) against its budget over a time range."""
    from hotpath.cli.paths_report import print_paths

    response, begin, end = _query(server, "/api/v1/hotpaths", service, start, until, labels)
    if as_json:
        click.echo(json.dumps(response.json(), indent=2))
    else:
        print_paths(service, begin, end, response.json())


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


class UploadRefused(click.ClickException):
    exit_code = 2  # bad input, like the other commands' 4xx


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", required=True, help="Service name the profile is stored under.")
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="KEY=VALUE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(registry.names()),
    default=None,
    help="The file's format [default: detected].",
)
@type_option(default=None, help="The profile type [default: what the file says].")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
def upload(
    file: Path,
    service: str,
    labels: dict[str, str],
    fmt: str | None,
    profile_type: str | None,
    server: str,
) -> None:
    """Store a profile file (collapsed, speedscope, pprof, pyinstrument session) on the server.

    Exit codes: 0 stored, 2 refused (the server's message says why) or no answer.
    """
    import gzip

    data = file.read_bytes()
    headers = {"Content-Type": "application/octet-stream"}
    if data[:2] != b"\x1f\x8b":  # compress in transit unless the file is gzip already
        data, headers["Content-Encoding"] = gzip.compress(data, mtime=0), "gzip"
    params = [
        ("service", service),
        *(("label", f"{k}={v}") for k, v in labels.items()),
        *([("format", fmt)] if fmt else []),
        *([("type", profile_type)] if profile_type else []),
    ]
    try:
        response = httpx.post(
            server.rstrip("/") + "/api/v1/profiles",
            params=params,
            content=data,
            headers=headers,
            timeout=120,
        )
    except httpx.TransportError as exc:
        raise UploadRefused(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code not in (200, 201):
        raise UploadRefused(_server_error(response))
    answer = response.json()
    for stored in answer["profiles"]:
        again = " (already stored)" if stored["duplicate"] else ""
        click.echo(
            f"{file.name}: {answer['format']} -> {service} {stored['type']}: "
            f"{stored['total']} {stored['unit']} in {stored['stacks']} stacks{again}",
            err=True,
        )


cli.add_command(gate)


def _query(
    server: str,
    path: str,
    service: str,
    start: str,
    until: str,
    labels: dict[str, str],
    extra: list[tuple[str, str]] | None = None,
) -> httpx.Response:
    """GET a service's time range from the server; a clear CLI error for anything but 200."""
    try:
        begin, end = parse_range(start, until)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    params = [
        ("service", service),
        ("from", begin.isoformat()),
        ("until", end.isoformat()),
        *(("label", f"{k}={v}") for k, v in labels.items()),
        *(extra or []),
    ]
    try:
        response = httpx.get(server.rstrip("/") + path, params=params, timeout=60)
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code != 200:
        raise click.ClickException(_server_error(response))
    return response, begin, end


def _server_error(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return f"server said {response.status_code}: {detail}"


def main() -> None:
    cli()
