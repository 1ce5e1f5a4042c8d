"""Support only the tests use: AWS event shapes, the reconciler's in-memory ports, fault injection,
SQS's redelivery without the queue, the purchase and subscription histories the unit tests share, and
the template, moto account, event queue and running runtime the other tests drive.

What the benchmarks use as well lives in harness/.
"""
