"""`hotpath gate`: pytest-benchmark runs judged in CI against their history (the statistics
live in `hotpath.profiler.analysis.gate`; this package reads, re-runs, reports and talks to
the server)."""
