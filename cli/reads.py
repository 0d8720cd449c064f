"""The commands that read from the server: `export` (a merged profile in any writable
format), `diff` (what got slower) and `paths` (hot-path latency against its budget)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hotpath.cli.options import (
    DEFAULT_SERVER,
    labels_callback,
    query,
    token_option,
    type_option,
)
from hotpath.profiler.formats import registry


@click.command()
@click.option("--service", required=True)
@click.option(
    "--from",
    "start",
    default="-1h",
    show_default=True,
    help="ISO-8601, unix seconds, or relative (-15m).",
)
@click.option("--until", default="now", show_default=True)
@click.option("--label", "labels", multiple=True, callback=labels_callback, metavar="KEY=VALUE")
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
@token_option
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
    response, _, _ = query(
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


@click.command()
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
@token_option
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


@click.command()
@click.option("--service", required=True)
@click.option("--from", "start", default="-1h", show_default=True)
@click.option("--until", default="now", show_default=True)
@click.option("--label", "labels", multiple=True, callback=labels_callback, metavar="KEY=VALUE")
@click.option("--json", "as_json", is_flag=True, help="Print the hot paths as JSON.")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@token_option
def paths(
    service: str, start: str, until: str, labels: dict[str, str], as_json: bool, server: str
) -> None:
    """Latency of each hot path (p50 ... max) against its budget over a time range."""
    from hotpath.cli.paths_report import print_paths

    response, begin, end = query(server, "/api/v1/hotpaths", service, start, until, labels)
    if as_json:
        click.echo(json.dumps(response.json(), indent=2))
    else:
        print_paths(service, begin, end, response.json())
