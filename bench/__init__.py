"""Benchmarks: each prints figures and ratios and ends with one JSON summary line."""
