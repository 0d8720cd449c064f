"""hotpath's profiler package: the profile model, its formats, profiler adapters and analysis.

Pure and importable anywhere: no server or network code lives here.
"""
