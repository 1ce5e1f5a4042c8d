"""Events applied as SQS hands them to the worker, retries included, without the queue itself."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from domain.sync import EventApplier, Result, RetryLater


def apply_as_sqs_delivers(
    applier: EventApplier, events: Iterable[dict[str, Any]], max_receive_count: int = 5
) -> list[Result]:
    """Each event once, in order; one that asks to be retried (a dispute before its purchase) comes
    back after the others, as its message would after its visibility timeout. Receiving one more than
    `max_receive_count` times fails the test: SQS would have parked it in the dead-letter queue."""
    results: list[Result] = []
    queue = deque((event, 1) for event in events)
    while queue:
        event, receive_count = queue.popleft()
        try:
            results.append(applier.apply(event))
        except RetryLater:
            assert receive_count < max_receive_count, f"{event['id']} would be parked in the DLQ"
            queue.append((event, receive_count + 1))
    return results
