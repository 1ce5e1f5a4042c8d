"""What the tests and the benchmarks share: a fake Stripe API, a fake Lambda context, an in-memory
store, the table fixture and the load harness.

Outside src/, so no function package can hold it (scripts/package_function.py packages src/ only);
test-only support lives in tests/support/.
"""
