"""Labels as users write them: `key=value`."""

from __future__ import annotations

from collections.abc import Iterable


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """`["version=1.4.2", "region=eu"]` -> dict; raises ValueError naming the bad pair."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {pair!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels
