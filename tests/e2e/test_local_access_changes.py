"""`make run` with the second way in and the "entitlements changed" events: Stripe's events posted to
/eventbridge/stripe are applied like webhook deliveries, and each access change reaches a rule on the
stack's bus (the runtime's example subscription) as a backend would receive it."""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

import pytest

from entitlements_reader import entitlements_from_event
from local_runtime.partner_events import envelope_of
from local_runtime.resources import subscriber_queue_name
from tests.support.running_runtime import STACK, Runtime, story, wait_until

pytestmark = pytest.mark.e2e


def post_eventbridge(runtime: Runtime, body: bytes) -> tuple[int, dict[str, Any]]:
    status, answer = runtime.request("/eventbridge/stripe", body, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def logged(runtime: Runtime, line: re.Pattern[str]) -> bool:
    return line.search(runtime.output) is not None


def test_eventbridge_deliveries_are_applied_and_each_access_change_is_published(runtime: Runtime) -> None:
    customer = "cus_E2eEventBridge1"
    events = story("purchase_refunded", customer).events
    # One at a time, each applied before the next is sent: the runtime's visibility timeout is a few
    # seconds, so on a loaded machine a batch still being applied can be received again by another
    # poller, and a refund applied before its purchase grants nothing (the same final state, but no
    # grant and no revocation to publish).
    for event in events:
        status, answer = post_eventbridge(runtime, json.dumps(envelope_of(event)).encode())
        assert status == 200, answer
        applied = re.compile(rf"worker\s+{event['id']} \(")
        wait_until(partial(logged, runtime, applied), f"the worker to apply {event['type']}", timeout=90)

    sqs = runtime.aws("sqs")
    url = sqs.get_queue_url(QueueName=subscriber_queue_name(STACK))["QueueUrl"]
    received: list[dict[str, Any]] = []

    def refunded() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            event = json.loads(message["Body"])
            if event["detail"]["customer_id"] == customer:
                received.append(event)
        return any(e["detail"]["cause_event_id"] == events[-1]["id"] for e in received)

    # Generous: the worker and the stream poller share the machine with everything else.
    wait_until(refunded, "the refund's entitlements changed event", timeout=90)
    readings = [
        entitlements_from_event(event) for event in sorted(received, key=lambda e: e["detail"]["version"])
    ]
    assert [sorted(r.features) if r else None for r in readings] == [["prod_SampleCourse1"], []]
    assert f"Customer Entitlements Changed {customer}" in runtime.output
    assert f"received {events[0]['id']} (customer.created) -> queued (group {customer})" in runtime.output


def test_what_is_not_a_stripe_event_is_refused_with_400(runtime: Runtime) -> None:
    status, answer = post_eventbridge(runtime, b'{"object": "charge"}')
    assert status == 400
    assert "neither" in answer["error"]
    envelope = {**envelope_of({"object": "event", "type": "x"}), "source": "aws.partner/other.com/x"}
    status, answer = post_eventbridge(runtime, json.dumps(envelope).encode())
    assert (status, answer["error"]) == (400, "not an event from Stripe's partner event source")
