"""When an event the worker could not apply is tried again.

A failed message used to come back only when the queue's visibility timeout (720 s) ran out, holding
its customer's FIFO group that long each time. Now the worker shortens that timeout by receive count:
seconds first (a throttle, a Stripe blip), then doubling up to the queue's own timeout, which stays
the safety net for an invocation that crashed or timed out. The total of the delays before
EventQueue's maxReceiveCount (template.yaml) is what a transient failure may last before the event
is parked in the dead-letter queue.
"""

from __future__ import annotations

FIRST_RETRY_SECONDS = 2
# EventQueue's VisibilityTimeout: a retry never waits longer than a crashed invocation would.
LONGEST_RETRY_SECONDS = 720
# A failure at this receive has been retried for 2 + 4 + ... + 64 = 126 s: no longer a blip, page.
REPEATED_FAILURE_RECEIVES = 7


def retry_delay(receive_count: int, longest: int = LONGEST_RETRY_SECONDS) -> int:
    """Seconds until a message that failed at its `receive_count`-th receive is tried again."""
    tries = min(max(receive_count, 1), 32)  # 2**32 s is past any ceiling; keeps the number small
    return min(FIRST_RETRY_SECONDS << (tries - 1), max(longest, 0))


def total_retry_seconds(max_receive_count: int, longest: int = LONGEST_RETRY_SECONDS) -> int:
    """How long a message failing every time stays in the event queue (its delays, not its work)."""
    return sum(retry_delay(count, longest) for count in range(1, max_receive_count))


def failing_repeatedly(receive_count: int) -> bool:
    return receive_count >= REPEATED_FAILURE_RECEIVES
