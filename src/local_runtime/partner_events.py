"""The local path for the second way in: Stripe's events as its Amazon EventBridge destination sends them.

`POST /eventbridge/stripe` with an EventBridge event (what a rule hands its target: `detail` is the
Stripe event, `source` Stripe's partner event source) invokes the EventBridge ingress function as the
stack's rule would. A bare Stripe event is accepted too, and wrapped in the envelope Stripe's
destination would put around it, so that `curl -d @event.json` is enough to try it. No signature:
in AWS, trust comes from IAM (only the partner event bus's rule invokes the function).

Answers, since nothing retries locally: 200 once queued, 400 for what is not one of Stripe's events
(in AWS: parked in the dead-letter queue after Lambda's retries), 503 when queuing failed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from local_runtime.template import LOCAL_ACCOUNT_ID, LOCAL_REGION

EVENTBRIDGE_PATH = "/eventbridge/stripe"
LOCAL_EVENT_SOURCE = "aws.partner/stripe.com/ed_test_local"


class NotAnEnvelope(ValueError):
    """The body is neither an EventBridge event nor a Stripe event."""


def eventbridge_envelope(body: bytes) -> dict[str, Any]:
    """The EventBridge event to invoke the ingress function with, from what was posted."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise NotAnEnvelope("body is not JSON") from None
    if not isinstance(document, dict):
        raise NotAnEnvelope("body is not a JSON object")
    if "detail" in document:
        return document
    if document.get("object") not in ("event", "v2.core.event"):
        raise NotAnEnvelope("body is neither an EventBridge event (with a detail) nor a Stripe event")
    return envelope_of(document)


def envelope_of(stripe_event: dict[str, Any], source: str = LOCAL_EVENT_SOURCE) -> dict[str, Any]:
    """A Stripe event as Stripe's Amazon EventBridge event destination delivers it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": stripe_event.get("type"),
        "source": source,
        "account": LOCAL_ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": LOCAL_REGION,
        "resources": [],
        "detail": stripe_event,
    }
