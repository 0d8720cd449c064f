"""hotpath: continuous profiling and performance regressions for latency-critical Python.

The in-process API is this module's: mark the order path and its calls are timed into a
memory-mapped histogram that the agent reads from outside (stdlib only, no thread, no I/O)::

    from hotpath import hot_path

    @hot_path("order_execution", budget_ms=100)
    def execute(order): ...

Everything else lives in subpackages: `hotpath.profiler` (the profile model, formats,
analysis), `hotpath.agent` (the attaching agent), `hotpath.cli` (the `hotpath` command),
`hotpath.gate` (`hotpath gate`), `hotpath.server` (needs `hotpath[server]`).
"""

from hotpath.profiler.hotpath.recorder import HotPath, HotPathLimitError, hot_path

__all__ = ["HotPath", "HotPathLimitError", "hot_path"]
