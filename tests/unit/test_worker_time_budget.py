"""The worker's time budget: a slow Stripe never times out a whole batch.

The worker is driven with a batch of ten and a Lambda context whose remaining time follows a fake
clock; each event "calls Stripe", which takes as long as the SDK's worst case (a 5 s timeout, three
retries with backoff) by advancing that clock. No real waiting, so the test cannot be flaky.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from domain.sync import Outcome, Result, RetryLater
from handlers import worker
from harness.lambda_context import FakeClock, TimedLambdaContext
from tests.support.emf_metrics import metric_values

SLOW_STRIPE_CALL_SECONDS = 24.0
WORKER_TIMEOUT_SECONDS = 120


@dataclass
class SlowStripeApplier:
    """Applies every event after one Stripe call that takes SLOW_STRIPE_CALL_SECONDS."""

    clock: FakeClock
    applied: list[str] = field(default_factory=list)

    def apply(self, body: dict[str, Any]) -> Result:
        self.clock.now += SLOW_STRIPE_CALL_SECONDS
        self.applied.append(body["id"])
        return Result(Outcome.APPLIED, body["id"], body["type"], api_calls=1)


def batch(size: int) -> dict[str, Any]:
    records = [
        {
            "messageId": f"m{index}",
            "receiptHandle": f"rh{index}",
            "body": json.dumps({"id": f"evt_{index}", "type": "invoice.paid"}),
            "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "cus_1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
            "awsRegion": "us-east-1",
        }
        for index in range(size)
    ]
    return {"Records": records}


@pytest.fixture
def slow_stripe(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeClock, SlowStripeApplier]:
    clock = FakeClock()
    applier = SlowStripeApplier(clock)
    monkeypatch.setattr(worker, "event_applier", lambda: applier)
    monkeypatch.delenv("RECORD_RESERVE_SECONDS", raising=False)
    monkeypatch.setenv("TABLE_NAME", "stripe-sync-time-budget")  # the worker's settings need one
    return clock, applier


def test_records_left_when_time_runs_short_go_back_unstarted(
    slow_stripe: tuple[FakeClock, SlowStripeApplier], capsys: pytest.CaptureFixture[str]
) -> None:
    clock, applier = slow_stripe
    context = TimedLambdaContext(clock, WORKER_TIMEOUT_SECONDS)

    answer = worker.lambda_handler(batch(10), context)  # type: ignore[arg-type]

    # 120 s, 50 s reserve: records start at 0, 24 and 48 s; at 72 s only 48 s are left.
    assert applier.applied == ["evt_0", "evt_1", "evt_2"]
    failed = [item["itemIdentifier"] for item in answer["batchItemFailures"]]
    assert failed == [f"m{index}" for index in range(3, 10)]
    assert clock.now < WORKER_TIMEOUT_SECONDS, "the invocation ended before its timeout"
    output = capsys.readouterr().out
    assert sum(metric_values(output, "EventsDeferred")) == 7
    assert metric_values(output, "EventsFailed") == [], "a deferred event is not a failed one"


def test_the_first_record_is_always_started(
    slow_stripe: tuple[FakeClock, SlowStripeApplier],
) -> None:
    clock, applier = slow_stripe
    context = TimedLambdaContext(clock, timeout_seconds=30)

    answer = worker.lambda_handler(batch(3), context)  # type: ignore[arg-type]

    assert applier.applied == ["evt_0"]
    assert [item["itemIdentifier"] for item in answer["batchItemFailures"]] == ["m1", "m2"]


def test_the_reserve_is_configurable_and_a_bad_value_falls_back_to_the_default(
    slow_stripe: tuple[FakeClock, SlowStripeApplier],
    monkeypatch: pytest.MonkeyPatch,
    new_container: Callable[[], None],
) -> None:
    clock, applier = slow_stripe
    monkeypatch.setenv("RECORD_RESERVE_SECONDS", "0")
    answer = worker.lambda_handler(batch(4), TimedLambdaContext(clock, WORKER_TIMEOUT_SECONDS))  # type: ignore[arg-type]
    assert len(applier.applied) == 4
    assert answer["batchItemFailures"] == []

    monkeypatch.setenv("RECORD_RESERVE_SECONDS", "soon")
    new_container()  # the reserve is parsed once per container
    assert worker.record_reserve_ms() == worker.DEFAULT_RECORD_RESERVE_SECONDS * 1000


def test_a_fast_batch_is_applied_whole(slow_stripe: tuple[FakeClock, SlowStripeApplier]) -> None:
    clock, applier = slow_stripe
    context = TimedLambdaContext(clock, timeout_seconds=10_000)

    answer = worker.lambda_handler(batch(10), context)  # type: ignore[arg-type]

    assert len(applier.applied) == 10
    assert answer["batchItemFailures"] == []


@dataclass
class FailingApplier:
    """Fails every event as an unreachable Stripe would."""

    def apply(self, body: dict[str, Any]) -> Result:
        raise RetryLater(f"event {body['id']}: Stripe did not answer")


def test_a_batch_whose_every_event_fails_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # A raised batch is a Lambda error (WorkerErrorsAlarm pages); an ordinary failure of a one-message
    # batch must come back as a batch item failure, retried like any other.
    monkeypatch.setattr(worker, "event_applier", FailingApplier)
    monkeypatch.setenv("TABLE_NAME", "stripe-sync-time-budget")  # the worker's settings need one
    context = TimedLambdaContext(FakeClock(), WORKER_TIMEOUT_SECONDS)

    answer = worker.lambda_handler(batch(1), context)  # type: ignore[arg-type]

    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}]
