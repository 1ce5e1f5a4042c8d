"""Ingress rules: which request is a verified Stripe event, and how it goes onto the queue.

Two ways in, one queue: a webhook delivery (signed HTTP request) and an Amazon EventBridge delivery
from Stripe's partner event source (`eventbridge_event`); both become the same StripeEvent, so they are
grouped and deduplicated alike (`queue_message`) and one event delivered both ways is queued once.

Pure: the handler passes the API Gateway HTTP API (payload 2.0) event, the secrets and the clock, and
sends the resulting QueueMessage. Every refusal is a RejectedRequest with its HTTP status and a short
reason; the reason never echoes the request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.credentials import WebhookSecret
from domain.signature import SignatureError, verify_signature

WEBHOOK_PATH = "/webhooks/stripe"
SIGNATURE_HEADER = "stripe-signature"
# Lambda's synchronous invocation payload limit: a larger request never reaches a deployed function.
LAMBDA_PAYLOAD_LIMIT = 6_291_456
# SQS counts body + message attributes; none are sent, so the body may use all of it.
SQS_MESSAGE_LIMIT = 262_144
# MessageGroupId / MessageDeduplicationId: 1-128 characters from ASCII 0x21-0x7E.
SQS_ID_MAX_LENGTH = 128
# Fields a by-reference message keeps (contract: no "data"), and on a thin event what it points at.
REFERENCE_FIELDS = ("object", "id", "type", "created", "livemode", "account", "api_version")
THIN_REFERENCE_FIELDS = ("context", "related_object")
# Stripe's partner event sources are named aws.partner/stripe.com/<event destination id>.
STRIPE_PARTNER_SOURCE_PREFIX = "aws.partner/stripe.com"


class RejectedRequest(Exception):
    """A request answered with a 4xx: nothing is queued. `event_id`/`event_type` once they are known."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        event_id: str | None = None,
        event_type: str | None = None,
        unverified: bool = False,
        claimed_mode: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.event_id = event_id
        self.event_type = event_type
        # No configured secret signed it for its mode: what a wrong or rolled secret looks like.
        self.unverified = unverified
        # The mode an unverified request's body says it is of ("test", "live", "unknown"): untrusted
        # (anyone can write `livemode`), and only used to tell which mode's deliveries are refused.
        self.claimed_mode = claimed_mode


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """The exact bytes Stripe sent and its Stripe-Signature header (None when absent)."""

    body: bytes = field(repr=False)
    signature: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A verified event: snapshot (`object: "event"`) or thin (`object: "v2.core.event"`)."""

    id: str
    type: str
    livemode: bool
    account: str | None
    thin: bool
    document: dict[str, Any] = field(repr=False)
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """What goes to SQS FIFO: the event text as sent (or a reference to it) and its ids."""

    body: str = field(repr=False)
    group_id: str
    deduplication_id: str
    by_reference: bool


def webhook_request(http_event: object) -> WebhookRequest:
    """Route, method, body and signature header of an HTTP API payload 2.0 event."""
    if not isinstance(http_event, Mapping):
        raise RejectedRequest(400, "not an API Gateway HTTP API (payload 2.0) request")
    context = http_event.get("requestContext")
    if (
        not isinstance(context, Mapping)
        or not isinstance(http := context.get("http"), Mapping)
        or not isinstance(method := http.get("method"), str)
    ):
        raise RejectedRequest(400, "not an API Gateway HTTP API (payload 2.0) request")
    if _route(http_event.get("rawPath") or http.get("path"), context.get("stage")) != WEBHOOK_PATH:
        raise RejectedRequest(404, "not found")
    if method.upper() != "POST":
        raise RejectedRequest(405, "method not allowed")
    return WebhookRequest(_raw_body(http_event), _header(http_event.get("headers"), SIGNATURE_HEADER))


def verified_event(
    request: WebhookRequest, secrets: Sequence[WebhookSecret], *, now: float, tolerance: int
) -> StripeEvent:
    """The event, once signed by a configured secret that accepts its mode."""
    try:
        signers = verify_signature(request.body, request.signature, secrets, now=now, tolerance=tolerance)
    except SignatureError as error:
        # Only a request that carries a signature can be Stripe's with a wrong secret: an anonymous
        # POST (a bot, a scanner) is rejected without counting towards the wrong-secret alarm.
        signed = request.signature is not None
        raise RejectedRequest(
            400, str(error), unverified=signed, claimed_mode=claimed_mode(request.body) if signed else None
        ) from None
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedRequest(400, "body is not UTF-8") from None
    event = parse_event(text)
    # Several secrets may have signed (rotation); one of them accepting the event's mode is enough.
    if not any(secret.accepts(event.livemode) for secret in signers):
        mode = "live" if event.livemode else "test"
        raise RejectedRequest(
            400,
            f"a {mode}-mode event signed by a secret for the other mode",
            event_id=event.id,
            event_type=event.type,
            unverified=True,
            claimed_mode=mode,
        )
    return event


def claimed_mode(body: bytes) -> str:
    """What an unverified body says its mode is: "test", "live", or "unknown" (no boolean livemode).
    Untrusted: nothing has verified it."""
    try:
        document = json.loads(body)
    except ValueError:  # not JSON, not UTF-8
        return "unknown"
    livemode = document.get("livemode") if isinstance(document, dict) else None
    if not isinstance(livemode, bool):
        return "unknown"
    return "live" if livemode else "test"


def parse_event(text: str) -> StripeEvent:
    """JSON text -> StripeEvent; RejectedRequest(400) when it is not JSON or not a Stripe event."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise RejectedRequest(400, "body is not JSON") from None
    if not isinstance(document, dict):
        raise RejectedRequest(400, "body is not a Stripe event")
    kind = document.get("object")
    if kind not in ("event", "v2.core.event"):
        raise RejectedRequest(400, "body is not a Stripe event")
    event_id, event_type = document.get("id"), document.get("type")
    if not isinstance(event_id, str) or not event_id:
        raise RejectedRequest(400, "event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise RejectedRequest(400, "event has no type", event_id=event_id)
    thin = kind == "v2.core.event"
    if not (_iso_timestamp(document.get("created")) if thin else _unix_timestamp(document.get("created"))):
        raise RejectedRequest(
            400, "event has no valid created time", event_id=event_id, event_type=event_type
        )
    livemode = document.get("livemode")
    if not isinstance(livemode, bool):
        raise RejectedRequest(400, "event has no livemode", event_id=event_id, event_type=event_type)
    account = document.get("account")
    return StripeEvent(
        id=event_id,
        type=event_type,
        livemode=livemode,
        account=account if isinstance(account, str) and account else None,
        thin=thin,
        document=document,
        text=text,
    )


def eventbridge_event(envelope: object) -> StripeEvent:
    """The Stripe event an EventBridge rule delivers from Stripe's partner event source: the envelope's
    `detail` is the event exactly as a webhook would carry it (snapshot or thin), `detail-type` its type.
    Trust comes from IAM (only the partner event bus's rule can invoke the function), not a signature.
    RejectedRequest(400) when the envelope is not one of Stripe's events."""
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("detail"), dict):
        raise RejectedRequest(400, "not an EventBridge event with a detail")
    source = envelope.get("source")
    if not isinstance(source, str) or not source.startswith(STRIPE_PARTNER_SOURCE_PREFIX):
        raise RejectedRequest(400, "not an event from Stripe's partner event source")
    # Compact JSON: what the worker parses is the same object the webhook would have queued.
    event = parse_event(json.dumps(envelope["detail"], separators=(",", ":"), ensure_ascii=False))
    detail_type = envelope.get("detail-type")
    if isinstance(detail_type, str) and detail_type != event.type:
        raise RejectedRequest(
            400,
            f"detail-type {detail_type[:80]!r} is not the event's type",
            event_id=event.id,
            event_type=event.type,
        )
    return event


def queue_message(event: StripeEvent) -> QueueMessage:
    """The SQS FIFO message for `event`: grouped by customer, deduplicated by event id (and account)."""
    deduplication = f"{event.id}:{event.account}" if event.account else event.id
    if _fits_sqs(event.text):
        body, by_reference = event.text, False
    else:
        body, by_reference = reference_body(event), True
    return QueueMessage(body, sqs_id(group_key(event)), sqs_id(deduplication), by_reference)


def group_key(event: StripeEvent) -> str:
    """The customer the event is about, else the id of its object, else the event id.

    Not every object names a customer (a dispute does not, a guest Checkout session has
    `customer: null`, an `invoice.upcoming` preview has no id); thin events name their object
    in `related_object`.
    """
    document = event.document
    if event.thin:
        return _object_id(document.get("related_object")) or event.id
    data = document.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if isinstance(obj, dict):
        for candidate in (obj.get("customer"), obj.get("customer_account"), obj.get("id")):
            if key := _object_id(candidate):
                return key
    return event.id


def reference_body(event: StripeEvent) -> str:
    """The message for an event too large for SQS: its identity without data; the worker fetches it."""
    fields = REFERENCE_FIELDS + THIN_REFERENCE_FIELDS if event.thin else REFERENCE_FIELDS
    reference = {name: event.document[name] for name in fields if name in event.document}
    reference["by_reference"] = True
    # ensure_ascii: escapes whatever SQS would refuse; compact separators: bytes count.
    return json.dumps(reference, separators=(",", ":"))


def sqs_id(value: str) -> str:
    """`value` when SQS accepts it as a group or deduplication id, else a deterministic hash of it."""
    if 0 < len(value) <= SQS_ID_MAX_LENGTH and value.isascii() and value.isprintable() and " " not in value:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _fits_sqs(text: str) -> bool:
    if text.isascii():  # O(1) in CPython; then length is the UTF-8 size
        return len(text) <= SQS_MESSAGE_LIMIT
    # SQS refuses U+FFFE/U+FFFF; strict UTF-8 and strict JSON already excluded everything else it refuses.
    if "\ufffe" in text or "\uffff" in text:
        return False
    return len(text.encode("utf-8")) <= SQS_MESSAGE_LIMIT


def _object_id(value: object) -> str | None:
    """An id, or the id of an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _unix_timestamp(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _iso_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _route(path: object, stage: object) -> object:
    # A named stage (not `$default`) prefixes the path with itself.
    if isinstance(path, str) and isinstance(stage, str) and stage != "$default":
        prefix = f"/{stage}/"
        if path.startswith(prefix):
            return path[len(prefix) - 1 :]
    return path


def _raw_body(http_event: Mapping[str, Any]) -> bytes:
    body = http_event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise RejectedRequest(400, "body is not a string")
    # The raw event first: a larger one could not have been delivered, so do not decode it either.
    if len(body) > LAMBDA_PAYLOAD_LIMIT:
        raise RejectedRequest(413, "body larger than 6 MB")
    if http_event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise RejectedRequest(400, "body is not valid base64") from None
    else:
        # surrogatepass: a lone surrogate survives to fail the UTF-8 check with a clear reason.
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > LAMBDA_PAYLOAD_LIMIT:
        raise RejectedRequest(413, "body larger than 6 MB")
    return raw


def _header(headers: object, name: str) -> str | None:
    """Header `name` (lower case) in any letter case; HTTP API lower-cases names, other callers may not."""
    if not isinstance(headers, Mapping):
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for key, v in headers.items() if isinstance(key, str) and key.lower() == name), None)
    return value if isinstance(value, str) else None
