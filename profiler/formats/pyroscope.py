"""Pyroscope's HTTP ingest, `POST /ingest?name=APP{k=v,...}&format=folded|pprof`: the
application name with its labels. The bodies are the registry's collapsed and pprof formats."""

from __future__ import annotations

import re

from hotpath.profiler.formats import FormatError

_NAME = re.compile(r"^(?P<app>[^{}]+?)(?:\{(?P<labels>[^{}]*)\})?$")


def parse_app_name(name: str) -> tuple[str, dict[str, str]]:
    """`myapp.cpu{env=prod,region=eu}` -> (`myapp.cpu`, {env: prod, region: eu})."""
    match = _NAME.match(name.strip())
    if match is None:
        raise FormatError(
            f"cannot read the application name {name!r}: expected APP{{key=value,...}}"
        )
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (match["labels"] or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise FormatError(f"label {part!r} in {name!r} is not key=value")
        labels[key.strip()] = value.strip()
    return match["app"].strip(), labels
