"""Checks of a piece made from a profile file (an upload, Pyroscope's `/ingest`): what the
agent window's model and `wire.check_limits` check of an agent window, applied to the
interned form the profile store takes, so every way in keeps the same names, times and
sizes (ValueError or `wire.LimitExceeded`, which the routes answer with 422 and 413)."""

from __future__ import annotations

import re

from hotpath.profiler.formats import window as wire
from hotpath.server.storage.profiles import Piece


def check_piece(piece: Piece, limits: wire.WindowLimits) -> None:
    """What the wire window's model and `check_limits` check of an agent window, for a
    piece made from another format: names, times, sizes (ValueError or LimitExceeded)."""
    key = piece.key
    if not re.match(wire.SERVICE_NAME_PATTERN, key.service):
        raise ValueError(f"service name {key.service!r} is not {wire.SERVICE_NAME_PATTERN}")
    for label_key in key.labels:
        if not re.match(wire.LABEL_KEY_PATTERN, label_key):
            raise ValueError(f"label key {label_key!r} is not {wire.LABEL_KEY_PATTERN}")
    if piece.end < piece.start:
        raise ValueError("until is before from")

    def over(limit: str, actual: int, maximum: int) -> None:
        if actual > maximum:
            raise wire.LimitExceeded(limit, actual, maximum)

    over("max_stacks (distinct stacks per window)", len(piece.stacks), limits.max_stacks)
    over("max_frames (distinct frames per window)", len(piece.frames), limits.max_frames)
    over("max_labels (labels per window)", len(key.labels), limits.max_labels)
    over(
        "max_label_value_chars",
        max(map(len, key.labels.values()), default=0),
        limits.max_label_value_chars,
    )
    over(
        "max_frame_name_chars",
        max((len(n) + len(f) for n, f, _ in piece.frames), default=0),
        limits.max_frame_name_chars,
    )
    over(
        "max_frames_per_stack",
        max(map(len, piece.stacks), default=0),
        limits.max_frames_per_stack,
    )
    over("max_samples_per_stack", max(piece.counts, default=0), limits.max_samples_per_stack)
