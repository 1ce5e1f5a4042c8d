"""EventBridge ingress Lambda: Stripe's events from its partner event bus onto the same queue.

Stripe's Amazon EventBridge event destination puts each event on a partner event bus of the account;
a rule of this stack (template.yaml, StripeEventSourceName) invokes this function with the EventBridge
envelope, whose `detail` is the Stripe event. domain.ingress makes the same QueueMessage the webhook
makes (deduplication id = event id with its Connect account, group = the customer), so the worker,
the reconciler, the DLQ and the metrics see no difference, and an event delivered both ways is queued
once (the FIFO queue's deduplication) and applied once (the record's stamp) beyond that window.

Trust comes from IAM: only the stack's rule may invoke the function. Failures raise: EventBridge
invokes asynchronously, so Lambda retries twice and then sends the envelope to
StripeEventBridgeDeadLetterQueue (alarmed), where nothing is lost.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from adapters import SettingsError, required
from adapters.event_queue import QueueUnavailable, enqueue
from domain.ingress import RejectedRequest, eventbridge_event, queue_message
from handlers import emit, queued_event_fields

SERVICE = "stripe-sync-eventbridge"


class NotQueued(RuntimeError):
    """The delivery was not queued: Lambda retries it, then parks it in the dead-letter queue.
    `rejected`: it is not one of Stripe's events (a retry cannot help), else queuing failed."""

    def __init__(self, reason: str, *, rejected: bool = False) -> None:
        super().__init__(reason)
        self.rejected = rejected


@dataclass(frozen=True, slots=True)
class EventBridgeSettings:
    queue_url: str


@functools.cache
def settings() -> EventBridgeSettings:
    """Parsed once per container; SettingsError (not cached) while QUEUE_URL is not set."""
    return EventBridgeSettings(queue_url=required(os.environ, "QUEUE_URL"))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    try:
        queue_url = settings().queue_url
    except SettingsError as error:
        emit("ERROR", "eventbridge failed", service=SERVICE, metrics=("DeliveriesFailed",), reason=str(error))
        raise NotQueued(str(error)) from None
    try:
        stripe_event = eventbridge_event(event)
    except RejectedRequest as rejection:
        emit(
            "ERROR",
            "eventbridge rejected",
            service=SERVICE,
            metrics=("DeliveriesRejected",),
            request_id=request_id,
            reason=rejection.reason,
            event_id=rejection.event_id,
            event_type=rejection.event_type,
            eventbridge_id=event.get("id") if isinstance(event, dict) else None,
        )
        raise NotQueued(rejection.reason, rejected=True) from None
    message = queue_message(stripe_event)
    fields = {"request_id": request_id, **queued_event_fields(stripe_event, message)}
    try:
        message_id = enqueue(queue_url, message)
    except QueueUnavailable as error:
        emit(
            "ERROR",
            "eventbridge not queued",
            service=SERVICE,
            metrics=("DeliveriesFailed",),
            error=str(error),
            **fields,
        )
        raise NotQueued(str(error)) from error
    emit(
        "INFO",
        "eventbridge queued",
        service=SERVICE,
        metrics=("DeliveriesQueued",),
        message_id=message_id,
        **fields,
    )
    return {"queued": True, "message_id": message_id}
