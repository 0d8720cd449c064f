"""Shared by the pytest-benchmark suites in benchmarks/."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _benchmark_nodeid(request: pytest.FixtureRequest) -> None:
    """pytest-benchmark 5.2 reads the private `node._nodeid`, which pytest 9.2 no longer has
    (ionelmc/pytest-benchmark#321): alias the public id. Autouse fixtures are set up before
    the `benchmark` fixture a test asks for. A no-op once either side is fixed."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
