"""The leak report of one service over a time range: its memory captures, the functions whose
held bytes grow (ranked by `profiler/analysis/leaks.py`), and each one's heaviest stacks in
the held-bytes profile of the range. One report feeds the API (`GET /api/v1/leaks`), the page
and, through the API, `hotpath leaks`."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from hotpath.profiler.analysis.leaks import LeakRank, rank_leaks
from hotpath.profiler.model import HELD_BYTES, Profile
from hotpath.server.storage import Storage
from hotpath.server.storage.captures import StoredCapture
from hotpath.server.storage.profiles import Selection

MAX_FUNCTIONS = 200  # ranked functions a report shows at most
MAX_STACKS = 5  # stacks shown per function
# Captures ranked at most (the most recent): each holds up to 500 functions x 240 points, so
# this bounds what one report decodes (50 x 120k points, ~0.7 GB at worst; real ones far less).
MAX_CAPTURES = 50


@dataclass(frozen=True)
class LeakStack:
    frames: list[str]  # root first, ending at the function (as `Frame.__str__` writes them)
    held_bytes: int


@dataclass(frozen=True)
class RankedLeak:
    rank: LeakRank
    stacks: list[LeakStack]


@dataclass(frozen=True)
class LeakReport:
    service: str
    start: datetime
    end: datetime
    leaks: list[RankedLeak]
    captures: list[StoredCapture]  # those ranked, oldest first
    held_bytes: int  # the held-bytes profile's total over the range
    profile_url: str  # the held-bytes profile of the range, as speedscope JSON
    viewer_url: str  # that profile opened in speedscope


def leak_report(
    storage: Storage,
    chosen: Selection,
    *,
    functions: int = 50,
    captures: int = 20,
) -> LeakReport:
    """The report of `chosen` (its type is ignored: always held bytes; its labels choose
    the captures and filter the profile). `UnknownService` when the tenant has no such
    service."""
    stored = storage.captures.captures(
        chosen.tenant,
        chosen.service,
        chosen.start,
        chosen.end,
        limit=min(captures, MAX_CAPTURES),
        labels=chosen.labels,
    )
    ranks = rank_leaks(stored, limit=min(functions, MAX_FUNCTIONS)) if stored else []
    held = Selection(
        chosen.tenant, chosen.service, HELD_BYTES, chosen.start, chosen.end, chosen.labels
    )
    profile = storage.profiles.profile(held)
    by_function = stacks_of(profile, [(r.function, r.file) for r in ranks])
    params = [("service", chosen.service), ("type", HELD_BYTES.id)]
    params += [("from", chosen.start.isoformat()), ("until", chosen.end.isoformat())]
    params += [("label", f"{k}={v}") for k, v in chosen.labels.items()]
    profile_url = "/api/v1/profile?" + urlencode([*params, ("format", "speedscope")])
    title = f"{chosen.service} · held bytes · {chosen.start:%Y-%m-%d %H:%M}-{chosen.end:%H:%M} UTC"
    return LeakReport(
        service=chosen.service,
        start=chosen.start,
        end=chosen.end,
        leaks=[RankedLeak(r, by_function.get((r.function, r.file), [])) for r in ranks],
        captures=[_light(c) for c in stored],
        held_bytes=profile.total,
        profile_url=profile_url,
        viewer_url=(
            f"/speedscope/index.html#profileURL={quote(profile_url, safe='')}"
            f"&title={quote(title, safe='')}&view=left-heavy"
        ),
    )


def stacks_of(
    profile: Profile, functions: list[tuple[str, str]], per_function: int = MAX_STACKS
) -> dict[tuple[str, str], list[LeakStack]]:
    """Per function (name, file), the heaviest stacks through it, cut at its innermost frame
    (what it allocated and still holds, by the callers that led there). One pass over the
    profile, whatever the number of functions."""
    wanted = set(functions)
    found: dict[tuple[str, str], Counter[tuple[str, ...]]] = {f: Counter() for f in wanted}
    for stack, weight in profile.samples.items():
        seen: set[tuple[str, str]] = set()
        for depth in range(len(stack) - 1, -1, -1):  # innermost first
            key = stack[depth].function_key
            if key in wanted and key not in seen:
                seen.add(key)
                found[key][tuple(str(f) for f in stack[: depth + 1])] += weight
    return {
        key: [
            LeakStack(list(frames), held)
            for frames, held in sorted(counts.items(), key=lambda i: (-i[1], i[0]))[:per_function]
        ]
        for key, counts in found.items()
    }


def _light(capture: StoredCapture) -> StoredCapture:
    """The capture without its series (ranked already; not shown)."""
    return dataclasses.replace(capture, functions=())


def finite(value: float | None) -> float | None:
    """A figure, or None when it has no value (NaN, infinite)."""
    return value if value is not None and math.isfinite(value) else None


def bytes_text(value: float | None) -> str:
    """Bytes in binary units, as speedscope shows them: 1.5 MB, 40 KB, 12 B."""
    if value is None or not math.isfinite(value):
        return "\N{EN DASH}"
    size = abs(value)
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"
