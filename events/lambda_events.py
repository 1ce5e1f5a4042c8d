"""What Lambda receives: a signed webhook request (API Gateway HTTP API, payload 2.0), an SQS FIFO
batch as the webhook queues it, and the reconcile schedule's EventBridge event.

The one signer of `Stripe-Signature` headers and the one builder of these events: the tests, the
benchmarks, the demo and the `sam local invoke` samples (events/generate.py) all draw from here.
The API Gateway request's envelope (`requestContext` and the rest up to the body) is the local
runtime's (local_runtime.apigateway.request_envelope), which translates real HTTP requests with it:
one shape, and of src/ only the demo imports events/. What this module adds is the sample's own: fixed
AWS ids, header names as given (the tests vary their case), a base64 body on request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from local_runtime.apigateway import request_envelope

# The documented test secret; never a real one.
SAMPLE_SECRET = "whsec_local_sample_secret"  # noqa: S105
WEBHOOK_PATH = "/webhooks/stripe"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "abcdef1234"
QUEUE_NAME = "stripe-sync-dev-events.fifo"
SCHEDULE_RULE = "stripe-sync-dev-ReconcileFunctionSchedule-1A2B3C"
STRIPE_SOURCE_IP = "54.187.174.169"  # one of Stripe's webhook addresses
TRACE_ROOT = "Root=1-6956472a-1f2e3d4c5b6a79880a1b2c3d"

# What every delivery carries besides its signature, as payload 2.0 names them (lower case).
STRIPE_HEADERS = {"content-type": "application/json; charset=utf-8", "user-agent": "Stripe/1.0"}

Json = dict[str, Any]


def v1_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The `v1` value of scheme v1: HMAC-SHA256 of `"{t}.{payload}"`, hex."""
    return hmac.new(secret.encode(), b"%d." % timestamp + payload, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str | Sequence[str], timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload`, as Stripe computes it; one `v1` per secret given
    (one `t`, then the `v1` of every secret: the header Stripe sends while a secret is being rolled)."""
    at = int(time.time()) if timestamp is None else timestamp
    secrets = (secret,) if isinstance(secret, str) else tuple(secret)
    return f"t={at}," + ",".join(f"v1={v1_signature(payload, s, at)}" for s in secrets)


def http_api_event(
    raw: bytes,
    *,
    headers: Mapping[str, str],
    method: str = "POST",
    path: str = WEBHOOK_PATH,
    base64_body: bool = False,
    at: int | None = None,
) -> Json:
    """An API Gateway HTTP API (payload format 2.0) request carrying `raw` as sent.

    `headers` are given as the request arrives (payload 2.0 lower-cases their names); `base64_body`
    encodes the body as API Gateway does for binary media (a body that is not UTF-8 can only travel
    that way); `at` is the request time, epoch seconds (default now).
    """
    event = request_envelope(
        method=method,
        path=path,
        query="",
        headers=dict(headers),
        route_key=f"{method} {path}",
        source_ip=STRIPE_SOURCE_IP,
        protocol="HTTP/1.1",
        account_id=ACCOUNT_ID,
        api_id=API_ID,
        domain=f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        request_id="XyZ1aBcDeFgHiJk=",
        now=int(time.time()) if at is None else at,
    )
    event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode("utf-8")
    event["isBase64Encoded"] = base64_body
    return event


def webhook_event(
    raw: bytes,
    secret: str | Sequence[str],
    *,
    timestamp: int | None = None,
    base64_body: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Json:
    """`raw` posted to the webhook signed with `secret`, as Stripe posts it through API Gateway."""
    at = int(time.time()) if timestamp is None else timestamp
    sent = dict(headers) if headers is not None else dict(STRIPE_HEADERS)
    sent["stripe-signature"] = signature_header(raw, secret, at)
    return http_api_event(raw, headers=dict(sorted(sent.items())), base64_body=base64_body, at=at)


def sqs_record(body: str, *, event_id: str, group: str, sequence: int, sent_ms: int) -> Json:
    """One FIFO record as the webhook queues it: group = customer, dedup id = event id."""
    return {
        "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, event_id)),
        "receiptHandle": base64.b64encode(f"receipt-{event_id}".encode()).decode(),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "AWSTraceHeader": f"{TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1",
            "SentTimestamp": str(sent_ms),
            "SequenceNumber": str(18900000000000000000 + sequence),
            "MessageGroupId": group,
            "SenderId": "AROAXXXXXXXXXXXXXXXXX:stripe-sync-dev-WebhookFunction-AbCdEf123456",
            "MessageDeduplicationId": event_id,
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 25),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{QUEUE_NAME}",
        "awsRegion": REGION,
    }


def sqs_batch(records: Sequence[Json]) -> Json:
    return {"Records": list(records)}


def schedule_event(at: str = "2026-01-01T11:00:00Z") -> Json:
    """EventBridge 'Scheduled Event' as the ReconcileSchedule rule delivers it."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at,
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{SCHEDULE_RULE}"],
        "detail": {},
    }
