"""The attaching agent: py-spy windows of a running process, hot-path histograms, shipping
to the server with retries and a spool."""
