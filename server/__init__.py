"""hotpath's server: HTTP API, storage, and the web pages."""
