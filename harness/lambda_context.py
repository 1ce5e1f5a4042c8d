"""The Lambda context the tests and the benchmarks hand a handler in-process: what Powertools and the
handlers read of LambdaContext, with a remaining time that is fixed or runs out with a fake clock, so
time budgets are tested without real waiting."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass


@dataclass
class FakeLambdaContext:
    """A worker's context; by default the worker's whole Timeout (template.yaml) is left."""

    _: KW_ONLY
    function_name: str = "worker"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:worker"
    aws_request_id: str = "req-1"
    remaining_millis: int = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@dataclass
class FakeClock:
    now: float = 0.0


@dataclass
class TimedLambdaContext(FakeLambdaContext):
    """The remaining time is the Timeout less what the fake clock has advanced."""

    clock: FakeClock
    timeout_seconds: int

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.timeout_seconds - self.clock.now) * 1000), 0)
