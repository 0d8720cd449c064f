"""Profile formats: one module each, every one converting to and from `profiler.model.Profile`.

Each profile format a user can upload or export describes itself with one `Format` (its
module's `FORMAT`), listed once in `registry.py`: a name, a media type, `sniff` to recognise
it, `load` (bytes -> typed profiles) and `dump` (a profile -> bytes) where it can be written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hotpath.profiler.model import Profile, ProfileType


class FormatError(ValueError):
    """Input that does not parse as the format it claims to be; the message says where and why."""


# load(data, type=None): several profiles when the file holds several types, one per type.
Loader = Callable[..., list[Profile]]


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    description: str
    sniff: Callable[[bytes], bool]
    load: Loader
    # dump(profile, name=None) -> bytes; None where the format cannot be written.
    dump: Callable[..., bytes] | None = None


def choose_type(profiles: Sequence[Profile], wanted: ProfileType | None) -> list[Profile]:
    """The profiles of a file, or only the one of type `wanted`.

    A file says what it measured, but not always exactly: py-spy's "seconds" are CPU time
    unless it ran with --idle, memray's bytes are those held at the peak unless the file was
    made with --temporary-allocations. So when no profile has the wanted type, the one
    profile weighted in the wanted type's unit is taken as that type (cpu <-> wall, bytes
    held <-> bytes allocated); anything else is refused with what the file does hold.
    """
    profiles = [p for p in profiles if p.samples]
    if not profiles:
        raise FormatError("the file holds no samples")
    if wanted is None:
        return list(profiles)
    exact = [p for p in profiles if p.type == wanted]
    if exact:
        return exact
    same_unit = [p for p in profiles if p.unit == wanted.unit]
    if len(same_unit) == 1:
        same_unit[0].type = wanted
        return same_unit
    held = ", ".join(f"{p.type} ({p.unit})" for p in profiles)
    raise FormatError(f"the file holds no {wanted} profile ({wanted.unit}): it holds {held}")
