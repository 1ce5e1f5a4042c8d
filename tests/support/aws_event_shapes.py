"""Lambda events as AWS delivers them, for the "entitlements changed" publisher, the EventBridge ingress
and the worker (an SQS FIFO message received once, an event queued by reference).

Shapes after AWS's documentation: a DynamoDB Streams record as the Lambda event source mapping hands it
over (Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB", example event), and an EventBridge
event as a rule's target receives it (EventBridge user guide, "Amazon EventBridge events": version, id,
detail-type, source, account, time, region, resources, detail). Stripe's event destination puts the
Stripe event in `detail`, its type in `detail-type`, and names its partner event source in `source`.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

from domain.ingress import parse_event, reference_body
from local_runtime.event_source import sqs_record

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
TABLE_STREAM_ARN = (
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/stripe-sync-dev-SyncTable-1ABC2DEF3GH4/stream/"
    "2026-01-01T10:00:00.000"
)
STRIPE_SOURCE = "aws.partner/stripe.com/ed_test_61RqSUSBWcCDpIVKj16RqSUS6OzXLHHCVyqBT1nSM2fM"
_sequence = itertools.count(1)


def attribute(value: Any) -> dict[str, Any]:
    """A plain value in DynamoDB's attribute-value JSON, as a stream image carries it."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {name: attribute(item) for name, item in value.items()}}
    if isinstance(value, list):
        return {"L": [attribute(item) for item in value]}
    raise TypeError(type(value))


def image(item: dict[str, Any]) -> dict[str, Any]:
    return {name: attribute(value) for name, value in item.items()}


def customer_item(customer_id: str = "cus_TgS1o8vcGmoR32", **fields: Any) -> dict[str, Any]:
    """A customer's entitlements item as the worker writes it (plain values)."""
    item: dict[str, Any] = {
        "pk": f"CUSTOMER#{customer_id}",
        "sk": "ENTITLEMENTS",
        "item_type": "entitlements",
        "customer_id": customer_id,
        "livemode": False,
        "features": {},
        "payment_issue": False,
        "updated_at": 1767261600,
        "version": 1,
        "deleted": False,
        "records_version": 1,
        "cause_event_id": "evt_1SkQ2iB7WZ01zgkW0kDj3aBc",
        "user_id": "user-42",
    }
    item.update(fields)
    return item


def stream_record(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """One record of the table's stream (NEW_AND_OLD_IMAGES), from plain items."""
    current = new or old
    assert current is not None
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1767261601.0,
        "Keys": {"pk": {"S": current["pk"]}, "sk": {"S": current["sk"]}},
        "SequenceNumber": f"{next(_sequence):021d}",
        "SizeBytes": 312,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        dynamodb["NewImage"] = image(new)
    if old is not None:
        dynamodb["OldImage"] = image(old)
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": TABLE_STREAM_ARN,
    }


def stream_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def eventbridge_event(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event as an EventBridge rule delivers it to its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": "2026-01-01T10:00:01Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def stripe_eventbridge_event(stripe_event: dict[str, Any], source: str = STRIPE_SOURCE) -> dict[str, Any]:
    """A Stripe event (snapshot or thin) as its Amazon EventBridge event destination delivers it."""
    return eventbridge_event(source, str(stripe_event["type"]), stripe_event)


EVENT_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:events.fifo"


def received_once(message_id: str, body: str) -> dict[str, Any]:
    """A message as the event source mapping hands it to the worker (received once)."""
    message = {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "MessageGroupId": "g",
            "MessageDeduplicationId": message_id,
        },
    }
    return sqs_record(message, EVENT_QUEUE_ARN, "us-east-1")


def queued_by_reference(stripe_event: dict[str, Any]) -> dict[str, Any]:
    """The message body the webhook queues for an event too large for SQS: the event's identity
    without its data (domain.ingress.reference_body), for the worker to fetch by id."""
    return dict(json.loads(reference_body(parse_event(json.dumps(stripe_event)))))
