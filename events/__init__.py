"""The one home of sample Stripe data: objects, scenarios, signing and Lambda event builders.

Used by the tests, the benchmarks, the local runtime's demo and the `sam local invoke` samples;
never packaged into a function (scripts/package_function.py packages src/ only).
"""
