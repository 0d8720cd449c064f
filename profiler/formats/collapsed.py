"""Collapsed ("folded") stacks: `root;child;leaf count` per line.

The format py-spy writes with `--format raw`, flamegraph.pl reads, and Pyroscope ingests as
`format=folded`. Frames look like py-spy's `name (file:line)`; bare names are accepted too.
The weights carry no unit: the file is of the type its sender names (CPU samples by default),
and memory profiles are written as whole bytes or allocations.
"""

from __future__ import annotations

import re

from hotpath.profiler.formats import Format, FormatError
from hotpath.profiler.model import CPU, Frame, Profile, ProfileType

# py-spy frame: "fetch_quotes (trading.py:9)"; the file may itself contain spaces or parens.
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
_FRAME_NO_LINE = re.compile(r"^(?P<name>[^ ]+) \((?P<file>[^()]+)\)$")
_RECORD = re.compile(rb"^[^\x00-\x08\x0e-\x1f{\[][^\x00-\x08\x0e-\x1f]* \d+\r?$")
# py-spy's default rate: the time a sample stands for when the sender does not say.
DEFAULT_RATE_HZ = 100.0


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is not None:
        return Frame(match["name"], match["file"], int(match["line"]))
    # `name (file)`: how a frame without a line is written (str(Frame), py-spy builtins).
    match = _FRAME_NO_LINE.match(text)
    if match is not None:
        return Frame(match["name"], match["file"])
    return Frame(text)


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


def sniff(data: bytes) -> bool:
    """The first record (blank lines and # comments skipped) is `frames count`."""
    for line in data[:4096].splitlines():
        line = line.strip()
        if line and not line.startswith(b"#"):
            return _RECORD.match(line) is not None
    return False


def load(data: bytes, *, type: ProfileType | None = None) -> list[Profile]:
    """One profile of `type` (CPU samples by default: what py-spy --format raw records)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"collapsed stacks must be UTF-8 text: {exc}") from None
    kind = type or CPU
    rate = DEFAULT_RATE_HZ if kind.unit == "samples" else None
    profile = loads(text, Profile(type=kind, sample_rate_hz=rate))
    if not profile.samples:
        raise FormatError("the file holds no samples")
    return [profile]


def dump(profile: Profile, name: str | None = None) -> bytes:
    del name  # the format has no place for a title
    return dumps(profile).encode()


FORMAT = Format(
    name="collapsed",
    media_type="text/plain; charset=utf-8",
    description="collapsed stacks, one `frame;frame;... weight` per line (py-spy --format raw)",
    sniff=sniff,
    load=load,
    dump=dump,
)
