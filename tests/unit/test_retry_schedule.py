"""The retry schedule of failed events, and the worker's page for an event that keeps failing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain.retry_schedule import (
    LONGEST_RETRY_SECONDS,
    REPEATED_FAILURE_RECEIVES,
    failing_repeatedly,
    retry_delay,
    total_retry_seconds,
)
from domain.sync import Result, RetryLater
from handlers import worker
from harness.lambda_context import FakeClock, TimedLambdaContext
from tests.support.emf_metrics import metric_values


def test_retries_start_in_seconds_double_and_stop_at_the_visibility_timeout() -> None:
    assert [retry_delay(n) for n in range(1, 12)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 720, 720]
    assert retry_delay(10_000) == LONGEST_RETRY_SECONDS
    assert retry_delay(0) == retry_delay(-3) == 2, "a missing receive count is a first try"
    assert retry_delay(5, longest=10) == 10


def test_a_thirty_second_outage_is_retried_within_a_minute_of_its_end() -> None:
    # The gap between two tries never exceeds the time spent failing so far (plus the first delay):
    # an outage of 30 s ends at most ~32 s before the next try.
    elapsed = 0
    for count in range(1, 8):
        delay = retry_delay(count)
        assert delay <= elapsed + 2
        elapsed += delay
    assert total_retry_seconds(12) == 2462


def test_failing_repeatedly_starts_after_two_minutes_of_retries() -> None:
    assert not failing_repeatedly(REPEATED_FAILURE_RECEIVES - 1)
    assert failing_repeatedly(REPEATED_FAILURE_RECEIVES)
    assert 60 <= total_retry_seconds(REPEATED_FAILURE_RECEIVES) <= 180


class FailingApplier:
    def apply(self, body: dict[str, Any]) -> Result:
        raise RetryLater("Stripe is not answering")


def one_record(receive_count: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "rh1",
                "body": json.dumps({"id": "evt_1", "type": "checkout.session.completed"}),
                "attributes": {"ApproximateReceiveCount": str(receive_count), "MessageGroupId": "cus_1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
                "awsRegion": "us-east-1",
            }
        ]
    }


@pytest.mark.parametrize(
    ("receive_count", "pages"),
    [(1, False), (REPEATED_FAILURE_RECEIVES - 1, False), (REPEATED_FAILURE_RECEIVES, True)],
)
def test_only_an_event_that_keeps_failing_counts_for_the_page(
    receive_count: int, pages: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(worker, "event_applier", FailingApplier)
    monkeypatch.delenv("QUEUE_URL", raising=False)  # no queue to set a retry delay on: the timeout applies
    monkeypatch.setenv("TABLE_NAME", "stripe-sync-retry-schedule")  # the worker's settings need one

    answer = worker.lambda_handler(one_record(receive_count), TimedLambdaContext(FakeClock(), 120))  # type: ignore[arg-type]

    assert answer["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    output = capsys.readouterr().out
    assert sum(metric_values(output, "EventsFailed")) == 1
    assert sum(metric_values(output, "EventsFailingRepeatedly")) == (1 if pages else 0)
