"""`hotpath diff`: the sides as users write them, the request, and the terminal table."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from hotpath.cli.options import auth_headers
from hotpath.profiler.labels import parse_labels
from hotpath.profiler.timespec import parse_time


class DiffFailed(click.ClickException):
    exit_code = 2  # 1 means "a slowdown was found"


def parse_side(name: str, specs: Iterable[str]) -> list[tuple[str, str]]:
    """`version=1.4.2`, `-2h..-1h`, `2026-11-22T10:00Z..2026-11-22T11:00Z`, or several of
    them (repeated, or comma-separated) -> query parameters `{name}_label/_from/_until`."""
    params: list[tuple[str, str]] = []
    ranges = 0
    for spec in specs:
        for piece in filter(None, (p.strip() for p in spec.split(","))):
            if "=" in piece.split("..")[0]:
                key, value = next(iter(parse_labels([piece]).items()))
                params.append((f"{name}_label", f"{key}={value}"))
            elif ".." in piece:
                start, _, until = piece.partition("..")
                for text in (start, until):
                    parse_time(text)  # a clear error now rather than a 422 later
                params += [(f"{name}_from", start), (f"{name}_until", until)]
                ranges += 1
            else:
                raise ValueError(f"--{name} {piece!r}: expected key=value or FROM..UNTIL")
    if ranges > 1:
        raise ValueError(f"--{name} has {ranges} time ranges; give at most one")
    return params


def fetch_diff(server: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        response = httpx.get(
            server.rstrip("/") + "/api/v1/diff",
            params=params,
            timeout=120,
            headers=auth_headers(),
        )
    except httpx.TransportError as exc:
        raise DiffFailed(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise DiffFailed(f"server said {response.status_code}: {detail}")
    return response.json()


def print_table(result: dict[str, Any], limit: int) -> None:
    # Piped output (CI logs, files) gets room for whole names rather than 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    base, head = result["base"], result["head"]
    console.print(f"[bold]{result['service']}[/]: base {_side(base)}  vs  head {_side(head)}")
    table = Table(show_lines=False)
    for column, justify in (
        ("function", "left"),
        ("base %", "right"),
        ("head %", "right"),
        ("change pp", "right"),
        ("ms/CPU s", "right"),
        ("p-value", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    rows = [f for f in result["functions"] if f["change_pp"] > 0][:limit]
    for f in rows:
        style = "bold red" if f["flagged"] else None
        table.add_row(
            f["function"],
            f"{100 * f['base_share']:.2f}",
            f"{100 * f['head_share']:.2f}",
            f"{f['change_pp']:+.2f}",
            f"{f['ms_per_cpu_s']:+.1f}",
            f"{f['p_value']:.2g}",
            "SLOWER" if f["flagged"] else "",
            style=style,
        )
    console.print(table)
    flagged = [f["function"] for f in result["functions"] if f["flagged"]]
    threshold = result["min_change_pp"]
    console.print(
        f"{len(flagged)} function(s) got significantly slower (self share +"
        f"{threshold:g} pp or more, p < {result['alpha']:g} after BH, window-to-window "
        f"variability {result['dispersion']:.2f}x sampling noise): {', '.join(flagged) or 'none'}"
    )


def _side(side: dict[str, Any]) -> str:
    labels = ",".join(f"{k}={v}" for k, v in side["labels"].items())
    span = f"{side['start'][:19]}..{side['until'][:19]}"
    return f"{labels or 'all'} {span} ({side['samples']:,} samples)"
