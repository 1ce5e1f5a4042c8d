"""The Lambda contexts the worker tests hand the handler (one with the worker's whole Timeout left, one
whose remaining time follows a fake clock) and the EMF metrics a handler printed: time budgets tested
without real waiting."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class WorkerContext:
    """What the handler reads of LambdaContext, with the worker's whole Timeout (template.yaml) left."""

    function_name: str = "worker"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:worker"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


@dataclass
class FakeClock:
    now: float = 0.0


@dataclass
class TimedContext:
    """What the handler reads of LambdaContext; the remaining time runs out with the fake clock."""

    clock: FakeClock
    timeout_seconds: int
    function_name: str = "worker"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:worker"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.timeout_seconds - self.clock.now) * 1000), 0)


def metric_values(output: str, name: str) -> list[float]:
    documents = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [value for document in documents for value in document.get(name, [])]
