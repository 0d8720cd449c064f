"""Checks of a piece made from a profile file (an upload, Pyroscope's `/ingest`): what the
agent window's model and `wire.check_limits` check of an agent window, applied to the
interned form the profile store takes, so every way in keeps the same names, times and
sizes (ValueError or `wire.LimitExceeded`, which the routes answer with 422 and 413)."""

from __future__ import annotations

import re

from hotpath.profiler.formats import window as wire
from hotpath.server.storage.profiles import Piece


def check_piece(piece: Piece, limits: wire.WindowLimits) -> None:
    """Names and times as the wire window's model checks them (ValueError), then its sizes
    (`wire.check_sizes`, LimitExceeded)."""
    key = piece.key
    if not re.match(wire.SERVICE_NAME_PATTERN, key.service):
        raise ValueError(f"service name {key.service!r} is not {wire.SERVICE_NAME_PATTERN}")
    for label_key in key.labels:
        if not re.match(wire.LABEL_KEY_PATTERN, label_key):
            raise ValueError(f"label key {label_key!r} is not {wire.LABEL_KEY_PATTERN}")
    if piece.end < piece.start:
        raise ValueError("until is before from")

    wire.check_sizes(
        limits,
        frames=piece.frames,
        stacks=piece.stacks,
        counts=piece.counts,
        labels=key.labels,
        hot_paths=len(piece.hot_paths),
    )
