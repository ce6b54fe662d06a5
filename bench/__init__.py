"""Benchmarks: each prints a table of figures, with ratios against a reference run beside it."""
