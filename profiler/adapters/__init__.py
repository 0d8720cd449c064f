"""Adapters that run real profilers (py-spy, ...) and hand their output to the profile model."""
