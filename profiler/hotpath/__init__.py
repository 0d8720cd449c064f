"""Hot-path latency: mark the order path in the trading process, read its histograms outside.

In the trading process::

    from hotpath import hot_path

    @hot_path("order_execution", budget_ms=100)
    def execute(order): ...

In the agent: `profiler.hotpath.reader.read(pid)`, whose `SparseHistogram`s
(`profiler.hotpath.sparse`) need no numpy. The bucket scheme, the wire form and the mergeable
`Histogram` the server stores (numpy) are in `profiler.hotpath.histogram`.
"""

from hotpath.profiler.hotpath.recorder import HotPath, HotPathLimitError, hot_path

__all__ = ["HotPath", "HotPathLimitError", "hot_path"]
