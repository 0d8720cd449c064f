"""Collapsed ("folded") stacks: `root;child;leaf count` per line.

The format py-spy writes with `--format raw`, flamegraph.pl reads, and Pyroscope ingests as
`format=folded`. Frames look like py-spy's `name (file:line)`; bare names are accepted too.
"""

from __future__ import annotations

import re

from hotpath.profiler.formats import FormatError
from hotpath.profiler.model import Frame, Profile

# py-spy frame: "fetch_quotes (trading.py:9)"; the file may itself contain spaces or parens.
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*):(?P<line>\d+)\)$")


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text)
    return Frame(match["name"], match["file"], int(match["line"]))


def format_frame(frame: Frame) -> str:
    # ';' separates frames and a newline ends a record: neither may survive inside a frame.
    return str(frame).replace(";", ":").replace("\n", " ").replace("\r", " ")


def loads(text: str, profile: Profile | None = None) -> Profile:
    """Parse collapsed stacks into `profile` (a new one by default); repeated stacks add up."""
    profile = profile if profile is not None else Profile()
    cache: dict[str, Frame] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        if not sep or not stack_text:
            raise FormatError(f"line {number}: expected 'frame;frame;... count', got {raw[:80]!r}")
        try:
            count = int(count_text)
        except ValueError:
            raise FormatError(
                f"line {number}: the sample count {count_text[:20]!r} is not an integer"
            ) from None
        if count < 0:
            raise FormatError(f"line {number}: negative sample count {count}")
        stack: list[Frame] = []
        for part in stack_text.split(";"):
            frame = cache.get(part)
            if frame is None:
                frame = cache[part] = parse_frame(part)
            stack.append(frame)
        profile.add(stack, count)
    return profile


def dumps(profile: Profile) -> str:
    """One line per distinct stack, heaviest first."""
    return "".join(
        f"{';'.join(format_frame(f) for f in stack)} {count}\n"
        for stack, count in profile.stacks_by_weight()
        if stack
    )
