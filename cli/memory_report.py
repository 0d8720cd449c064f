"""`hotpath agent memory`: say what the capture costs, ask, capture, ship, show what was found."""

from __future__ import annotations

import sys

import click

from hotpath.profiler.adapters.memray import Pause


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(200).replace(b"\0", b" ").decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


def run_memory(
    pid: int,
    service: str,
    duration: float,
    yes: bool,
    server: str,
    token: str | None,
    labels: dict[str, str],
    small_objects: bool = False,
) -> None:
    from hotpath.agent.memory import (
        TYPICAL_PAUSE_MS,
        TYPICAL_SLOWDOWN,
        MemoryOptions,
        ShipError,
        capture,
        ship,
    )
    from hotpath.profiler.adapters.memray import MemrayError, check_target
    from hotpath.profiler.analysis.leaks import rank_leaks
    from hotpath.profiler.formats.memray import MemrayFileError

    try:
        check_target(pid)
    except MemrayError as exc:
        raise click.ClickException(str(exc)) from None
    low, high = TYPICAL_PAUSE_MS
    click.echo(
        f"hotpath will attach memray to process {pid} ({_process_name(pid)}) through gdb, "
        f"record its allocations for {duration:g} s, detach, and ship the capture to {server} "
        f"as {service!r}.\nCost to the target: it is frozen about {low}-{high} ms when memray "
        f"attaches and again when it detaches (both measured and shown), and {TYPICAL_SLOWDOWN}.",
        err=True,
    )
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("not attaching without confirmation: pass --yes to proceed")
        click.confirm("Attach now?", abort=True, err=True)

    def attached(pause: Pause) -> None:
        click.echo(f"attached: target paused {pause}; recording {duration:g} s ...", err=True)

    options = MemoryOptions(pid, service, duration, server, token, labels, small_objects)
    try:
        captured = capture(options, on_attached=attached)
    except (MemrayError, MemrayFileError) as exc:
        raise click.ClickException(f"{exc} (nothing was shipped)") from None
    click.echo(f"detached: target paused {captured.file.detach}", err=True)
    try:
        status = ship(captured.capture, server, token)
    except ShipError as exc:
        raise click.ClickException(
            f"the capture was not stored: {exc}. Nothing was shipped; run the capture again "
            "once the server is reachable."
        ) from None
    profiles, sent = captured.profiles, captured.capture
    again = " (it was already stored)" if status == 200 else ""
    click.echo(
        f"shipped{again}: {profiles.duration_s:.1f} s, {profiles.alloc_count.total:,} "
        f"allocations, {profiles.alloc_bytes.total:,} bytes allocated, "
        f"{profiles.held_bytes.total:,} bytes still held at the end; pauses: attach "
        f"{sent.pause_attach_ms:.0f} ms, detach {sent.pause_detach_ms:.0f} ms",
        err=True,
    )
    ranks = rank_leaks([captured.capture], limit=10)
    if ranks:
        click.echo("functions holding the most bytes allocated during the capture:")
        for rank in sorted(ranks, key=lambda r: -r.held_bytes)[:10]:
            mark = "  LEAK?" if rank.flagged else ""
            click.echo(
                f"  {rank.held_bytes:>12,} B  {rank.growth_bytes_per_s * 60:>12,.0f} B/min  "
                f"{rank.function} ({rank.file}){mark}"
            )
