"""Benchmarks: `python -m bench` runs every module here that defines `run()` (not the `_`-prefixed ones,
which the others import); each prints its own table."""
