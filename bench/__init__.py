"""Benchmarks: `python -m bench` runs every module here that defines `run()`; each prints its own table."""
