"""The gate's three outputs: a rich table for the terminal, Markdown for a pull-request
comment, and a JSON list for machines. All three read one `Comparison`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hotpath.profiler.analysis.gate import Comparison, Verdict

_STYLE = {
    "regressed": "bold red",
    "improved": "green",
    "unchanged": "",
    "new": "cyan",
    "missing": "yellow",
    "unknown": "magenta",
}
# regressions first, then what needs a look, then the rest
_BLIND_SHOWN = 10  # blind spots named in the terminal and Markdown; JSON has all
_ORDER = {"regressed": 0, "unknown": 1, "improved": 2, "missing": 3, "new": 4, "unchanged": 5}


def ranked(comparison: Comparison) -> list[Verdict]:
    return sorted(
        comparison.verdicts, key=lambda v: (_ORDER[v.verdict], -(v.change or 0.0), v.fullname)
    )


def summary(comparison: Comparison) -> str:
    counts = comparison.counts()
    parts = [f"{n} {name}" for name, n in counts.items() if n]
    head = f"{comparison.head.source}: " + (", ".join(parts) or "no benchmarks")
    runs = len(comparison.head_sources)
    pooled = f"{runs} head runs " if runs > 1 else ""
    text = head + f" ({pooled}against {len(comparison.baseline_sources)} baseline run(s))"
    if comparison.reruns:
        confirmed = sum(v.confirmation == "confirmed" for v in comparison.verdicts)
        text += (
            f"; {len(comparison.suspects)} suspect(s) re-run in {comparison.reruns} round(s) "
            f"({comparison.benchmark_reruns} benchmark re-runs, controls included), "
            f"{confirmed} confirmed"
        )
    return text


def blind_spots(comparison: Comparison) -> list[Verdict]:
    """Benchmarks judged unchanged whose noise hides their minimum effect: the runs at hand
    would find only a larger slowdown (`Verdict.detectable`) reliably. Noisiest first."""
    hidden = [
        v
        for v in comparison.verdicts
        if v.verdict == "unchanged" and v.detectable is not None and v.detectable > v.min_effect
    ]
    return sorted(hidden, key=lambda v: (-(v.detectable or 0.0), v.fullname))


def blind_spot_line(comparison: Comparison) -> str | None:
    hidden = blind_spots(comparison)
    if not hidden:
        return None
    return (
        f"{len(hidden)} unchanged benchmark(s) too noisy for their minimum effect in the runs "
        "judged: from these runs a slowdown is found 4 times in 5 only from the size shown "
        "(more baseline runs, re-runs with --confirm N, or more rounds per run narrow it): "
        + ", ".join(f"{v.fullname} {v.detectable:.0%}" for v in hidden[:_BLIND_SHOWN])
        + (f", and {len(hidden) - _BLIND_SHOWN} more" if len(hidden) > _BLIND_SHOWN else "")
    )


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


def _interval(v: Verdict) -> str:
    if v.ci_low is None or v.ci_high is None:
        return ""
    return f"{v.ci_low:+.1%} … {v.ci_high:+.1%}"


def print_table(comparison: Comparison, profiles: dict[str, str] | None = None) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160)
    for warning in comparison.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    table = Table(title="hotpath gate", show_lines=False)
    for column in ("verdict", "benchmark", "change", "95% CI", "q", "runs head/base", "evidence"):
        table.add_column(column, overflow="fold")
    # unchanged benchmarks are counted in the summary line, not listed: runs hold hundreds
    for v in (v for v in ranked(comparison) if v.verdict != "unchanged"):
        style = _STYLE[v.verdict]
        evidence = v.evidence
        if profiles and v.fullname in profiles:
            evidence += f"; profile: {profiles[v.fullname]}"
        table.add_row(
            f"[{style}]{v.verdict}[/]" if style else v.verdict,
            v.fullname,
            _pct(v.change),
            _interval(v),
            "" if v.q_value is None else f"{v.q_value:.2g}",
            f"{v.head_runs}/{v.baseline_runs}",
            evidence,
        )
    if table.row_count:
        console.print(table)
    blind = blind_spot_line(comparison)
    if blind:
        console.print(f"[yellow]blind spots:[/] {blind}", highlight=False)
    console.print(summary(comparison), highlight=False)


def markdown(comparison: Comparison, profiles: dict[str, str] | None = None) -> str:
    counts = comparison.counts()
    status = "❌ regression" if counts["regressed"] else "✅ no regression"
    lines = [f"## hotpath gate: {status}", "", summary(comparison), ""]
    for warning in comparison.warnings:
        lines.append(f"> **warning:** {warning}")
    if comparison.warnings:
        lines.append("")
    notable = [v for v in ranked(comparison) if v.verdict != "unchanged"]
    if notable:
        lines += [
            "| verdict | benchmark | change | 95% CI | evidence |",
            "| --- | --- | --- | --- | --- |",
        ]
        for v in notable:
            evidence = v.evidence
            if profiles and v.fullname in profiles:
                evidence += f"; [profile]({profiles[v.fullname]})"
            lines.append(
                f"| **{v.verdict}** | `{_md(v.fullname)}` | {_pct(v.change)} | {_interval(v)} | "
                f"{_md(evidence)} |"
            )
        lines.append("")
    unchanged = counts["unchanged"]
    if unchanged:
        lines.append(f"{unchanged} benchmark(s) unchanged.")
    blind = blind_spot_line(comparison)
    if blind:
        lines += ["", f"**Blind spots:** {_md(blind)}"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def json_report(comparison: Comparison, profiles: dict[str, str] | None = None) -> list[dict]:
    out: list[dict[str, Any]] = []
    for v in ranked(comparison):
        out.append(
            {
                "fullname": v.fullname,
                "group": v.group,
                "verdict": v.verdict,
                "change": v.change,
                "ci_low": v.ci_low,
                "ci_high": v.ci_high,
                "p_value": v.p_value,
                "q_value": v.q_value,
                "baseline_runs": v.baseline_runs,
                "head_runs": v.head_runs,
                "confirmation": v.confirmation,
                "statistic": v.statistic,  # what a run's value was: minimum, median, one round
                "slow_episode": v.slow_episode,
                "head_seconds": v.head_seconds,
                "baseline_seconds": v.baseline_seconds,
                "min_effect": v.min_effect,
                "detectable": v.detectable,
                "mann_whitney_p": v.mann_whitney_p,
                "evidence": v.evidence,
                "quirks": list(v.quirks),
                "profile": (profiles or {}).get(v.fullname),
            }
        )
    return out


def write_reports(
    comparison: Comparison,
    report_md: Path | None,
    report_json: Path | None,
    profiles: dict[str, str] | None = None,
) -> None:
    if report_md is not None:
        report_md.write_text(markdown(comparison, profiles), encoding="utf-8")
    if report_json is not None:
        text = json.dumps(json_report(comparison, profiles), indent=2)
        report_json.write_text(text + "\n", encoding="utf-8")
