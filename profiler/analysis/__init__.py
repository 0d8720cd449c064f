"""Analyses over the profile model: differences between profiles, and (later) hot-path
histograms and benchmark statistics."""
