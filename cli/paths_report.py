"""`hotpath paths`: the terminal table of hot-path latency against budget."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def print_paths(service: str, begin: datetime, end: datetime, rows: list[dict[str, Any]]) -> None:
    # Piped output (CI logs, files) gets room for whole names rather than 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not rows:
        console.print(f"{service}: no hot-path calls in this range")
        return
    table = Table(title=f"{service}: hot paths {begin:%Y-%m-%d %H:%M}..{end:%H:%M} UTC")
    for column in (
        "hot path",
        "calls",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "budget ms",
        "over budget",
    ):
        if column == "hot path":
            table.add_column(column, overflow="fold")  # a name is never cut short
        else:
            table.add_column(column, justify="right")
    for row in rows:
        over, budget = row["over_budget_share"], row["budget_ms"]
        breach = budget is not None and row["p99_ms"] > budget
        table.add_row(
            row["name"],
            f"{row['count']:,}",
            *(f"{row[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")),
            f"{budget:g}" if budget is not None else "-",
            f"{100 * over:.2f}%" if over is not None else "-",
            style="bold red" if breach else None,
        )
    console.print(table)
