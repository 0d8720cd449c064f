"""`hotpath leaks`: the functions whose held bytes grow, from a service's memory captures,
ranked by growth per minute with its interval, and the captures with the target's pauses."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from hotpath.cli.options import DEFAULT_SERVER, labels_callback, query, token_option


@click.command()
@click.option("--service", required=True)
@click.option(
    "--from",
    "start",
    default="-7d",
    show_default=True,
    help="ISO-8601, unix seconds, or relative (-24h).",
)
@click.option("--until", default="now", show_default=True)
@click.option("--label", "labels", multiple=True, callback=labels_callback, metavar="KEY=VALUE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the ranked functions as a JSON list (function, growth_bytes_per_s, "
    "held_bytes, captures, flagged, ...).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@click.option("--fail-on-leak", is_flag=True, help="Exit 1 when a function is flagged.")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@token_option
def leaks(
    service: str,
    start: str,
    until: str,
    labels: dict[str, str],
    as_json: bool,
    limit: int,
    fail_on_leak: bool,
    server: str,
) -> None:
    """Rank the functions whose held bytes grow, from the service's memory captures
    (`hotpath agent memory`): within each capture and across them, in bytes per minute
    with an interval. Flagged only when the growth is significant and above the floor.
    Exit codes: 0 answered (1 with --fail-on-leak when a function is flagged), 1 the server
    refused or could not be reached, 2 bad input."""
    response, _, _ = query(
        server, "/api/v1/leaks", service, start, until, labels, [("functions", str(limit))]
    )
    report = response.json()
    if as_json:
        click.echo(json.dumps(report["leaks"], indent=2))
    else:
        print_leaks(report, server)
    if fail_on_leak and any(leak["flagged"] for leak in report["leaks"]):
        sys.exit(1)


def print_leaks(report: dict[str, Any], server: str) -> None:
    from rich.console import Console  # only when printing: the command starts fast
    from rich.table import Table

    # Piped output (CI logs, files) gets room for whole names rather than 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    service, captures = report["service"], report["captures"]
    if not captures:
        console.print(f"{service}: no memory captures in this range")
        return
    table = Table(
        title=f"{service}: held-bytes growth, {len(captures)} capture(s), "
        f"{report['start'][:16]}..{report['end'][:16]} UTC"
    )
    table.add_column("function", overflow="fold")
    for column in ("growth/min", "interval/min", "held", "captures", "p", "flagged"):
        table.add_column(column, justify="right")
    for leak in report["leaks"]:
        p = leak["p_value"]
        table.add_row(
            f"{leak['function']} ({leak['file']})",
            per_minute(leak["growth_bytes_per_s"]),
            f"{per_minute(leak['low_bytes_per_s'])} .. {per_minute(leak['high_bytes_per_s'])}",
            size(leak["held_bytes"]),
            str(leak["captures"]),
            f"{p:.2g}" if p is not None else "-",
            "LEAK" if leak["flagged"] else "no",
            style="bold red" if leak["flagged"] else None,
        )
    console.print(table)
    top = next((leak for leak in report["leaks"] if leak["flagged"] and leak["stacks"]), None)
    if top is not None:
        console.print(
            f"heaviest stack of {top['function']} ({size(top['stacks'][0]['held_bytes'])}):"
        )
        for frame in top["stacks"][0]["frames"]:
            console.print(f"  {frame}", highlight=False)
    pauses = Table(title="captures: the target's pause at attach and detach")
    for column in ("started (UTC)", "seconds", "pid", "attach pause", "detach pause", "held"):
        pauses.add_column(column, justify="left" if column.startswith("started") else "right")
    for c in captures:
        pauses.add_row(
            c["start"][:19].replace("T", " "),
            f"{c['duration_s']:.1f}",
            str(c["pid"]),
            f"{c['pause_attach_ms']:.1f} ms",
            f"{c['pause_detach_ms']:.1f} ms",
            size(c["held_bytes"]),
        )
    console.print(pauses)
    viewer = server.rstrip("/") + report["viewer_url"]
    console.print(f"held-bytes flame graph: {viewer}", highlight=False)


def per_minute(bytes_per_s: float | None) -> str:
    if bytes_per_s is None or not math.isfinite(bytes_per_s):
        return "-"
    return size(bytes_per_s * 60)


def size(value: float) -> str:
    """Bytes in binary units, as speedscope and the page show them."""
    magnitude = abs(value)
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if magnitude >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"
