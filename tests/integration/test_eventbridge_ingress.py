"""The EventBridge ingress under moto: Stripe's events from its partner event bus reach the same FIFO
queue as webhook deliveries, grouped and deduplicated alike, and an event delivered both ways once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from adapters.event_queue import MAX_ATTEMPTS, queue_client
from handlers import webhook
from handlers.eventbridge import NotQueued, lambda_handler
from tests.support.aws_event_shapes import eventbridge_event, stripe_eventbridge_event
from tests.support.faults import AwsWire, ServiceError

EventFactory = Callable[..., dict[str, Any]]
WebhookFifoQueue = Any  # tests/integration/conftest.py
WEBHOOK_SECRET = "whsec_integration_eventbridge_0123"

pytestmark = pytest.mark.usefixtures("webhook_fifo_queue")


class LambdaContext:
    aws_request_id = "5b2c1e3f-0d4e-4a8f-9c1e-2f3a4b5c6d7e"


def queued(queue: WebhookFifoQueue) -> list[tuple[dict[str, Any], str, str]]:
    return [
        (
            json.loads(m["Body"]),
            m["Attributes"]["MessageGroupId"],
            m["Attributes"]["MessageDeduplicationId"],
        )
        for m in queue.drain()
    ]


@pytest.mark.parametrize("livemode", [False, True])
def test_a_snapshot_event_is_queued_in_its_customers_group_by_its_id(
    webhook_fifo_queue: WebhookFifoQueue, stripe_event_factory: EventFactory, livemode: bool
) -> None:
    document = stripe_event_factory("customer.subscription.created", livemode=livemode)

    assert lambda_handler(stripe_eventbridge_event(document), LambdaContext())["queued"] is True

    [(body, group, deduplication)] = queued(webhook_fifo_queue)
    assert body == document
    assert (group, deduplication) == ("cus_QXg1o8vcGmoR32", document["id"])


def test_a_connect_event_is_deduplicated_with_its_account(
    webhook_fifo_queue: WebhookFifoQueue, stripe_event_factory: EventFactory
) -> None:
    document = stripe_event_factory("invoice.paid", account="acct_1Nv0FGQ9RKHgCVdK")
    lambda_handler(stripe_eventbridge_event(document), LambdaContext())
    [(body, _, deduplication)] = queued(webhook_fifo_queue)
    assert body["account"] == "acct_1Nv0FGQ9RKHgCVdK"
    assert deduplication == f"{document['id']}:acct_1Nv0FGQ9RKHgCVdK"


def test_a_thin_event_is_queued_grouped_by_the_object_it_points_at(
    webhook_fifo_queue: WebhookFifoQueue, stripe_thin_event_factory: EventFactory
) -> None:
    document = stripe_thin_event_factory()
    lambda_handler(stripe_eventbridge_event(document), LambdaContext())
    [(body, group, deduplication)] = queued(webhook_fifo_queue)
    assert body == document
    assert (group, deduplication) == ("mtr_test_61Rb1Y", document["id"])


def test_an_event_delivered_by_webhook_and_by_eventbridge_is_queued_once(
    webhook_fifo_queue: WebhookFifoQueue,
    stripe_event_factory: EventFactory,
    webhook_http_event_factory: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    document = stripe_event_factory("invoice.paid")

    response = webhook.lambda_handler(
        webhook_http_event_factory(document, secret=WEBHOOK_SECRET), LambdaContext()
    )
    assert response["statusCode"] == 200
    lambda_handler(stripe_eventbridge_event(document), LambdaContext())

    [(body, group, deduplication)] = queued(webhook_fifo_queue)
    assert body == document
    assert (group, deduplication) == ("cus_QXg1o8vcGmoR32", document["id"])


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (
            eventbridge_event("aws.partner/other.com/x", "invoice.paid", {"id": "evt_1"}),
            "partner event source",
        ),
        ({"detail-type": "invoice.paid", "source": "aws.partner/stripe.com/ed_1"}, "with a detail"),
        (stripe_eventbridge_event({"object": "charge", "id": "ch_1", "type": "x"}), "not a Stripe event"),
        (
            stripe_eventbridge_event(
                {"object": "event", "type": "invoice.paid", "created": 1, "livemode": False}
            ),
            "no id",
        ),
    ],
)
def test_what_is_not_a_stripe_event_is_refused_and_queued_nowhere(
    webhook_fifo_queue: WebhookFifoQueue,
    envelope: dict[str, Any],
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(NotQueued, match=reason):
        lambda_handler(envelope, LambdaContext())
    assert queued(webhook_fifo_queue) == []
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["message"], line["DeliveriesRejected"]) == ("eventbridge rejected", 1)


def test_a_detail_type_that_is_not_the_events_type_is_refused(
    webhook_fifo_queue: WebhookFifoQueue, stripe_event_factory: EventFactory
) -> None:
    envelope = {
        **stripe_eventbridge_event(stripe_event_factory("invoice.paid")),
        "detail-type": "invoice.voided",
    }
    with pytest.raises(NotQueued, match="detail-type"):
        lambda_handler(envelope, LambdaContext())
    assert queued(webhook_fifo_queue) == []


def test_when_the_queue_fails_the_invocation_fails_so_lambda_retries_it(
    webhook_fifo_queue: WebhookFifoQueue, stripe_event_factory: EventFactory
) -> None:
    envelope = stripe_eventbridge_event(stripe_event_factory())
    with AwsWire(queue_client()) as wire:
        wire.inject("SendMessage", ServiceError("InternalError", status=500), times=MAX_ATTEMPTS)
        with pytest.raises(NotQueued, match="InternalError"):
            lambda_handler(envelope, LambdaContext())
    assert queued(webhook_fifo_queue) == []
    lambda_handler(envelope, LambdaContext())
    assert len(queued(webhook_fifo_queue)) == 1, "Lambda's retry queues it"


def test_without_a_queue_the_invocation_fails(
    webhook_fifo_queue: WebhookFifoQueue, stripe_event_factory: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUEUE_URL")
    with pytest.raises(NotQueued, match="QUEUE_URL"):
        lambda_handler(stripe_eventbridge_event(stripe_event_factory()), LambdaContext())
