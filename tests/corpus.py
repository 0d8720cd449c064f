"""Where the real pytest-benchmark result files (the corpus of /work/shared, see its SOURCES.md)
are: `$HOTPATH_BENCH_CORPUS`, else `shared/corpus/pytest-benchmark` beside the checkout (the
workplace's layout), else the workplace's fixed path, which a clean clone elsewhere (CI) still
finds on this machine."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    Path(os.environ["HOTPATH_BENCH_CORPUS"]) if os.environ.get("HOTPATH_BENCH_CORPUS") else None,
    REPO.parent / "shared" / "corpus" / "pytest-benchmark",
    Path("/work/shared/corpus/pytest-benchmark"),
]


def _find() -> Path:
    for candidate in _CANDIDATES:
        if candidate is not None and any(candidate.glob("*.json")):
            return candidate
    return _CANDIDATES[1]  # absent: tests that need it skip, saying where it was looked for


CORPUS = _find()
