"""How a repair travels: never written directly, the object fetched from Stripe goes into the
customer's FIFO group as a synthetic `sync.fetched` event stamped with the fetch time, and the worker
applies it through the same `EventApplier` as any webhook, so an older webhook arriving later cannot
undo it. Events Stripe could not deliver are queued exactly as the webhook queues them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from domain.ingress import QueueMessage, StripeEvent, parse_event, queue_message
from domain.reconcile.drift import customer_of_object

Json = Mapping[str, Any]

FETCHED_EVENT_TYPE = "sync.fetched"


class ObjectTooLarge(ValueError):
    """A fetched object whose synthetic event exceeds an SQS message: it cannot travel by reference
    (the worker could not fetch a synthetic event back from Stripe)."""


def fetched_event(obj: Json, fetched_at_ms: int, account: str | None = None) -> dict[str, Any]:
    """The synthetic event that carries an object fetched from Stripe into the queue (contract:
    CONVENTIONS.md). Its `created` is the fetch time, which orders it against webhooks."""
    object_id = obj.get("id")
    if obj.get("object") == "entitlements.active_entitlement_summary":
        object_id = f"summary_{customer_of_object(obj)}"  # one summary per customer, and no id of its own
    if not isinstance(object_id, str) or not object_id:
        raise ValueError("a fetched object without an id cannot be queued")
    event: dict[str, Any] = {
        "object": "event",
        "id": f"sync_{object_id}_{fetched_at_ms}",
        "type": FETCHED_EVENT_TYPE,
        "created": fetched_at_ms // 1000,
        "livemode": bool(obj.get("livemode")),
    }
    if account is not None:
        event["account"] = account
    event["data"] = {"object": dict(obj)}
    event["fetched"] = True
    return event


def fetched_message(obj: Json, fetched_at_ms: int, account: str | None = None) -> QueueMessage:
    """The message for an object fetched from Stripe at `fetched_at_ms` (epoch milliseconds)."""
    document = fetched_event(obj, fetched_at_ms, account)
    text = json.dumps(document, separators=(",", ":"))
    event = StripeEvent(
        id=document["id"],
        type=document["type"],
        livemode=document["livemode"],
        account=account,
        thin=False,
        document=document,
        text=text,
    )
    message = queue_message(event)
    if message.by_reference:
        raise ObjectTooLarge(f"{obj.get('object')} {obj.get('id')} is too large for one SQS message")
    return message


def event_message(event: Json) -> QueueMessage:
    """A Stripe event read from the API, queued exactly as the webhook queues it when Stripe delivers
    it (RejectedRequest when it is not an event)."""
    return queue_message(parse_event(json.dumps(event, separators=(",", ":"))))
