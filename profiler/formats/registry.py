"""The profile formats a user can upload or export, listed once.

Upload (`POST /api/v1/profiles`, `hotpath upload`), export (`GET /api/v1/profile?format=`,
`hotpath export --format`) and their choices all come from here. Adding a format is one
module with a `FORMAT` (see `hotpath.profiler.formats.Format`), one line below, and tests
with real files. The agent's wire window and pytest-benchmark results are not here: they are
not profiles a user uploads (they have their own endpoints).
"""

from __future__ import annotations

from hotpath.profiler.formats import Format, FormatError, collapsed, pprof, pyinstrument, speedscope
from hotpath.profiler.model import Profile, ProfileType, profile_type

# Detection asks in this order: the most specific signatures first, collapsed (any text of
# `frames count` lines) last.
FORMATS: tuple[Format, ...] = (
    speedscope.FORMAT,
    pyinstrument.FORMAT,
    pprof.FORMAT,
    collapsed.FORMAT,
)
_BY_NAME = {f.name: f for f in FORMATS}


def names() -> list[str]:
    return [f.name for f in FORMATS]


def writable() -> list[str]:
    return [f.name for f in FORMATS if f.dump is not None]


def get(name: str) -> Format:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise FormatError(
            f"unknown format {name!r}: known formats are {', '.join(names())}"
        ) from None


def detect(data: bytes) -> Format:
    for fmt in FORMATS:
        if fmt.sniff(data):
            return fmt
    raise FormatError(f"not a profile format we know ({', '.join(names())}): {_head(data)}")


def load(
    data: bytes, format: str | None = None, type: ProfileType | str | None = None
) -> list[Profile]:
    """The typed profiles in `data`, one per type: `format` detected when None, only
    `type`'s profile when given. FormatError naming the problem otherwise."""
    if isinstance(type, str):
        try:
            type = profile_type(type)
        except ValueError as exc:
            raise FormatError(str(exc)) from None
    if format is None:
        fmt = detect(data)
    else:
        fmt = get(format)
        if not fmt.sniff(data):
            other = next((f.name for f in FORMATS if f is not fmt and f.sniff(data)), None)
            if other:
                raise FormatError(f"the file is {other}, not {fmt.name}")
            # Not recognised as anything: let the format's own reader say what is wrong.
    try:
        return fmt.load(data, type=type)
    except FormatError as exc:
        raise FormatError(f"not a valid {fmt.name} file: {exc}") from None


def dump(profile: Profile, format: str, name: str | None = None) -> bytes:
    fmt = get(format)
    if fmt.dump is None:
        writable_ = ", ".join(writable())
        raise FormatError(f"format {fmt.name!r} cannot be written: writable are {writable_}")
    return fmt.dump(profile, name=name)


def media_type(format: str) -> str:
    return get(format).media_type


def _head(data: bytes) -> str:
    if not data:
        return "the file is empty"
    return f"it starts with {data[:24]!r}"
