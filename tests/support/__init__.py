"""Support only the tests use: AWS event shapes, the reconciler's in-memory ports, fault injection.

What the benchmarks use as well lives in harness/.
"""
