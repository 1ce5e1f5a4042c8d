"""The worker's failures on moto's SQS (issue 17, item 2): retries in seconds, no poison in a group.

The queues are the template's (EventQueue: FIFO, visibility timeout 720 s, maxReceiveCount; its
DeadLetterQueue), fed to the worker by the local runtime's event source mapping, which, as Lambda's,
deletes what the response does not name and leaves failed messages to their visibility timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import stripe._http_client
from moto import mock_aws

from adapters import failed_events
from domain.retry_schedule import retry_delay
from entitlements_reader import EntitlementsReader
from events.scenarios import Scenario, build
from events.stripe import objects as s
from handlers import worker
from harness.fake_stripe import FakeStripe
from local_runtime.event_source import EventSourceMapping
from local_runtime.lambda_context import LocalLambdaContext
from local_runtime.resources import LocalResources, create_resources
from local_runtime.template import read_template
from ops.dlq import DeadLetterQueue
from tests.support.aws_event_shapes import queued_by_reference
from tests.support.faults import queue_depth, send_events
from tests.support.moto_account import forget_aws_clients, isolate_aws

API_KEY = "sk_test_failures0123456789"


@dataclass
class Observer:
    """The local runtime's console, reduced to what these tests read."""

    batch_errors: list[BaseException] = field(default_factory=list)

    def batch_failed(self, size: int, error: BaseException) -> None:
        self.batch_errors.append(error)

    def deletes_failed(self, count: int, reason: str) -> None:
        raise AssertionError(f"{count} deletes failed: {reason}")

    def moved_to_dead_letter_queue(self, message_id: str, receive_count: int) -> None:
        pass

    def dead_letter_queue_depth(self, depth: int) -> None:
        pass

    def poll_failed(self, error: BaseException) -> None:
        raise error


@dataclass
class Stack:
    sqs: Any
    dynamodb: Any
    resources: LocalResources
    esm: EventSourceMapping
    observer: Observer
    visibility_changes: list[dict[str, Any]]

    def send(self, events: list[dict[str, Any]]) -> None:
        send_events(self.sqs, self.resources.queue_url, events)

    def poll_until_idle(self, max_polls: int = 20) -> int:
        """Invoke the worker until a receive returns nothing (what failed waits for its retry)."""
        for polls in range(max_polls):
            if not self.esm.poll_once():
                return polls
        raise AssertionError(f"still receiving after {max_polls} polls")

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def parked(self) -> list[Any]:
        return DeadLetterQueue(self.sqs, self.resources.dead_letter_queue_url).browse()

    def entitlements(self, customer_id: str) -> Any:
        return EntitlementsReader(
            self.resources.table_name, livemode=False, client=self.dynamodb
        ).entitlements(customer_id)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    isolate_aws(monkeypatch, "STRIPE_SECRET_ID", "STRIPE_API_KEY", "STRIPE_API_BASE")
    forget_aws_clients()
    with mock_aws():
        sqs, dynamodb = boto3.client("sqs"), boto3.client("dynamodb")
        template = read_template(stack_name="failures")
        resources = create_resources(template, sqs, dynamodb)
        monkeypatch.setenv("TABLE_NAME", resources.table_name)
        monkeypatch.setenv("QUEUE_URL", resources.queue_url)
        monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", resources.dead_letter_queue_url)
        changes: list[dict[str, Any]] = []
        failed_events.sqs_client().meta.events.register(
            "provide-client-params.sqs.ChangeMessageVisibility",
            lambda params, **_: changes.append(dict(params)),
        )
        binding = resources.queue_binding()
        observer = Observer()
        esm = EventSourceMapping(
            sqs,
            binding,
            worker.lambda_handler,
            lambda: LocalLambdaContext.for_function("failures", template.worker),
            observer,
            wait_seconds=0,
            watch_dead_letter_queue=False,
        )
        yield Stack(sqs, dynamodb, resources, esm, observer, changes)
    forget_aws_clients()


def poisoned(scenario: Scenario, event_type: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The scenario's events with the first of `event_type` made unreadable (its object loses `status`)."""
    events = json.loads(json.dumps(scenario.events))
    poison = next(e for e in events if e["type"] == event_type)
    del poison["data"]["object"]["status"]
    return events, poison


def test_an_unreadable_event_is_parked_at_once_and_its_customer_flows_on(stack: Stack) -> None:
    events, poison = poisoned(build("signup_paid"), "customer.subscription.created")
    stack.send(events)

    stack.poll_until_idle()

    assert stack.queued() == 0, "nothing of the customer is left waiting behind the unreadable event"
    access = stack.entitlements(poison["data"]["object"]["customer"])
    assert access is not None
    assert access.features, "the events after it were applied"
    [parked] = stack.parked()
    assert parked.event["id"] == poison["id"]
    assert json.loads(parked.body) == poison, "the body is parked as it came"
    assert parked.reason is not None
    assert "status" in parked.reason
    assert parked.failure_type == "MalformedEvent"
    # FIFO: the same group and deduplication ids as in the event queue, so a redrive keeps both.
    assert parked.group_id == poison["data"]["object"]["customer"]
    assert parked.deduplication_id == poison["id"]
    assert stack.visibility_changes == [], "parked, not retried"


def test_a_body_that_is_not_json_is_parked_with_its_reason(stack: Stack) -> None:
    stack.sqs.send_message(
        QueueUrl=stack.resources.queue_url,
        MessageBody="{not json",
        MessageGroupId="cus_x",
        MessageDeduplicationId="not-json-1",
    )
    stack.poll_until_idle()
    [parked] = stack.parked()
    assert (parked.body, parked.reason, parked.deduplication_id) == (
        "{not json",
        "message body is not JSON",
        "not-json-1",
    )
    assert stack.queued() == 0


@pytest.fixture
def stripe_api(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


def test_with_an_api_key_an_unreadable_event_is_fetched_fresh_from_stripe_and_applied(
    stack: Stack, stripe_api: FakeStripe
) -> None:
    scenario = build("signup_paid")
    events, poison = poisoned(scenario, "customer.subscription.created")
    intact = next(e for e in scenario.events if e["id"] == poison["id"])
    stripe_api.load(scenario.api_objects, scenario.api_lists)
    stripe_api.put_event(intact, delivered=True)
    stack.send(events)

    stack.poll_until_idle()

    assert stripe_api.count(f"/v1/events/{poison['id']}") == 1
    assert stack.parked() == []
    assert stack.queued() == 0
    access = stack.entitlements(poison["data"]["object"]["customer"])
    assert access is not None
    assert access.features


def test_an_unreadable_event_stripe_does_not_know_is_parked_with_both_reasons(
    stack: Stack, stripe_api: FakeStripe
) -> None:
    _events, poison = poisoned(build("signup_paid"), "customer.subscription.created")
    stack.send([poison])

    stack.poll_until_idle()

    [parked] = stack.parked()
    assert parked.failure_type == "NotAtStripe"  # adapters.stripe_api's name for a 404 resource_missing
    assert parked.reason is not None
    assert parked.reason.startswith("subscription object:"), parked.reason
    assert "fetching the event from Stripe" in parked.reason
    assert stack.queued() == 0


def reference_message(event_id: str = "evt_1Reference", customer: str = "cus_ref") -> dict[str, Any]:
    """What the webhook queues for an event too large for SQS: no object; the worker must fetch it."""
    t0 = 1_767_000_000
    event = s.subscription_event(
        s.IdFactory(event_id),
        customer=customer,
        price=s.PriceSpec("price_pro", "prod_pro"),
        status="active",
        started=t0,
        period_start=t0,
        period_end=t0 + 30 * 86_400,
        at=t0,
        event_id=event_id,
    )
    return queued_by_reference(event)


def test_a_failure_retrying_can_fix_comes_back_in_seconds_not_after_the_visibility_timeout(
    stack: Stack,
) -> None:
    # Without an API key an event queued by reference cannot be fetched yet: RetryLater.
    stack.sqs.send_message(
        QueueUrl=stack.resources.queue_url,
        MessageBody=json.dumps(reference_message()),
        MessageGroupId="cus_ref",
        MessageDeduplicationId="evt_1Reference",
    )
    assert stack.resources.visibility_timeout == 720, "the template's: what a failure waited before"
    assert stack.esm.poll_once() == 1
    assert [c["VisibilityTimeout"] for c in stack.visibility_changes] == [retry_delay(1)] == [2]
    assert stack.esm.poll_once() == 0, "hidden until its retry"

    time.sleep(retry_delay(1) + 0.5)

    assert stack.esm.poll_once() == 1, "back after 2 s (the queue's own timeout is 720 s)"
    assert [c["VisibilityTimeout"] for c in stack.visibility_changes] == [2, 4]
    assert stack.parked() == [], "a failure retrying can fix is never parked by the worker"


def test_a_purchase_whose_fetch_failed_in_a_stripe_outage_is_granted_seconds_after_stripe_answers(
    stack: Stack, stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's own retries wait 0.5 s and more; the same retries, shorter, keep the test quick.
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.001)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.002)
    purchase = build("one_time_purchase")
    customer = purchase.customer_id
    assert customer is not None
    stripe_api.load(purchase.api_objects, purchase.api_lists)
    stripe_api.fail(503, times=1_000_000)  # Stripe is down
    stack.send(purchase.events)

    stack.poll_until_idle()
    assert stack.entitlements(customer) is None or not stack.entitlements(customer).features
    assert [c["VisibilityTimeout"] for c in stack.visibility_changes] == [2], "the line items' fetch failed"

    stripe_api.recover()
    time.sleep(retry_delay(1) + 0.5)
    stack.poll_until_idle()

    access = stack.entitlements(customer)
    assert access is not None
    assert access.features, "granted on the retry seconds later, not after the 720 s visibility timeout"
    assert stack.queued() == 0
    assert stack.parked() == []


def test_when_the_dead_letter_queue_refuses_the_message_stays_and_is_retried(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = stack.resources.dead_letter_queue_url.replace("dlq", "gone")
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", missing)
    _events, poison = poisoned(build("signup_paid"), "customer.subscription.created")
    stack.send([poison])

    assert stack.esm.poll_once() == 1

    assert stack.queued() == 1, "not lost: still in the event queue"
    assert [c["VisibilityTimeout"] for c in stack.visibility_changes] == [2]
    assert stack.parked() == []


def test_without_a_dead_letter_queue_url_an_unfixable_event_is_retried_not_dropped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    _, poison = poisoned(build("signup_paid"), "customer.subscription.created")
    stack.send([poison])

    assert stack.esm.poll_once() == 1

    assert stack.queued() == 1
    assert stack.parked() == []


def test_a_parked_event_redriven_once_fixable_is_applied(stack: Stack) -> None:
    scenario = build("signup_paid")
    events, poison = poisoned(scenario, "customer.subscription.created")
    stack.send(events)
    stack.poll_until_idle()
    dlq = DeadLetterQueue(stack.sqs, stack.resources.dead_letter_queue_url)
    [parked] = dlq.browse()

    # Fixed at the source: the operator sends the intact event back under the same ids (moto forgets a
    # deleted message's deduplication id, so the five-minute window does not apply here).
    intact = next(e for e in scenario.events if e["id"] == poison["id"])
    dlq.redrive(
        type(parked)(parked.message_id, parked.receipt_handle, json.dumps(intact), parked.attributes),
        stack.resources.queue_url,
    )
    stack.poll_until_idle()

    assert stack.parked() == []
    assert stack.queued() == 0
    assert queue_depth(stack.sqs, stack.resources.dead_letter_queue_url) == 0
