"""Worker Lambda: applies queued Stripe events to the table, one SQS batch at a time.

Partial batch responses: a message that fails is retried alone and never holds back the others. The
plain `BatchProcessor` is used on purpose, not the FIFO one, which would fail every message after the
first failure: order-safety comes from conditional writes, not the queue.

Failures (adapters.failed_events). One that retrying can fix (Stripe or DynamoDB failing, a concurrent
writer) comes back after a short, growing delay (domain.retry_schedule: 2 s, 4 s, ... up to the
queue's visibility timeout), set with ChangeMessageVisibility, so its customer's FIFO group waits
seconds, not the 720 s of the visibility timeout; after maxReceiveCount tries SQS parks it in the DLQ.
One that retrying cannot fix (UNFIXABLE: a payload that cannot be read, a request Stripe refuses as
invalid) leaves the event queue at once: domain.sync first fetches the event fresh from Stripe when a
key is configured; otherwise it is parked in the DLQ with its reason (EventsParked) and reported done,
so that the group flows on. A failure still going on at the REPEATED_FAILURE_RECEIVES-th try counts
EventsFailingRepeatedly (an alarm pages on it).

Time budget: a slow Stripe API (each call may take ~24 s: a 5 s timeout, three retries with backoff)
must not time out the whole batch, which would count a receive for every message in it and push
healthy events towards the DLQ. A record is started only while at least RECORD_RESERVE_SECONDS of the
invocation remain; the ones left are handed back unstarted as batch item failures (EventsDeferred) and
come back after the same short delay as a failure. The first record is always started, so every
invocation makes progress.

No Powertools Tracer: it imports the X-Ray SDK (~190 ms of a cold start) for subsegments only. With
the template's Tracing parameter on, Lambda records each invocation itself, and the webhook's
SendMessage carries the trace header (AWSTraceHeader), so one trace follows an event through SQS here.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache, lru_cache
from typing import Any

import stripe
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters import failed_events, sync_table
from adapters.failed_events import FailedMessage, ParkingFailed
from adapters.settings import DEFAULT_RECORD_RESERVE_SECONDS, Settings, load_settings
from adapters.stripe_api import StripeApi
from adapters.stripe_credentials import api_keys
from domain.credentials import Mode
from domain.entitlements import Entitlements
from domain.retry_schedule import failing_repeatedly, retry_delay
from domain.stripe_objects import MalformedEvent, NotAtStripe
from domain.sync import EventApplier, Outcome, Result, RetryLater
from handlers import DEFAULT_NAMESPACE

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "stripe-sync-worker"
logger = Logger(service=SERVICE)
# Log bytes are billed per event: no code location on every line (the message says where it is from).
logger.remove_keys(["location"])
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE, service=SERVICE
)
# An ordinary failure of every record (a one-message FIFO batch at low traffic) is reported like any
# other partial failure, never raised: a raised batch is a Lambda error, which pages (WorkerErrorsAlarm).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The longest one event may take (see the module docstring), with room for its writes. The worker's
# Timeout (template.yaml) leaves room for several such records; EventQueue's visibility timeout is
# six times that Timeout. The default reserve is adapters.settings' DEFAULT_RECORD_RESERVE_SECONDS.


class NotStarted(RuntimeError):
    """Too little time left in this invocation to finish the record: handed back to the queue untouched."""


OUTCOME_METRICS = {
    Outcome.APPLIED: "EventsApplied",
    Outcome.STALE: "EventsStale",
    Outcome.DUPLICATE: "EventsDuplicate",
    Outcome.IGNORED: "EventsIgnored",
    Outcome.GUEST: "GuestPurchases",
    Outcome.UNMATCHED: "UnmatchedPayments",
}


@cache
def settings() -> Settings:
    """Parsed once per container (at the first batch), the table's models bound with it; a
    SettingsError is not cached, so the next batch tries again."""
    loaded = load_settings()
    loaded.table.bind()
    if loaded.record_reserve_ignored is not None:
        logger.warning(
            "RECORD_RESERVE_SECONDS is not a whole number; using the default",
            value=loaded.record_reserve_ignored,
            default=DEFAULT_RECORD_RESERVE_SECONDS,
        )
    return loaded


@lru_cache(maxsize=4)
def _applier(keys: tuple[tuple[Mode, str], ...]) -> EventApplier:
    config = settings()
    stripe = StripeApi(dict(keys), config.stripe_api_base) if keys else None
    return EventApplier(
        sync_table.DynamoCustomerStore(),
        config.rules,
        clock=lambda: int(time.time()),
        stripe=stripe,
    )


def event_applier() -> EventApplier:
    """The applier for the API keys configured now: the settings say where they are, and
    adapters.stripe_credentials caches the secret, so a rotated key is picked up within
    SECRET_MAX_AGE_SECONDS without a new container."""
    return _applier(tuple(sorted(api_keys(settings().stripe).items())))


def record_reserve_ms() -> int:
    return settings().record_reserve_seconds * 1000


# Failures retrying cannot fix: an unreadable payload (after domain.sync's fetch from Stripe, when it
# can), a request Stripe rejects (400), a 404 the applier has no answer for (a thin event's or a tie's
# 404 is one: the object is gone, see domain.stripe_objects.gone_object). Anything else (5xx,
# 429, a dropped connection, a revoked key an operator can fix, DynamoDB) is retried.
UNFIXABLE: tuple[type[Exception], ...] = (MalformedEvent, stripe.InvalidRequestError, NotAtStripe)


def apply_message(record: SQSRecord) -> Result | None:
    """Apply one message; None when it was parked in the dead-letter queue (it is done here)."""
    try:
        body = json.loads(record.body)
    except ValueError:
        park(record, MalformedEvent("message body is not JSON"), {})
        return None
    if not isinstance(body, dict):
        park(record, MalformedEvent("message body is not a JSON object"), {})
        return None
    try:
        result = event_applier().apply(body)
    except UNFIXABLE as error:
        park(record, error, body)
        return None
    except RetryLater as error:
        failed(record, body, error)
        raise
    except Exception as error:
        failed(record, body, error, unexpected=True)
        raise
    report(result)
    return result


def failure_reason(error: BaseException) -> str:
    """The error, and the unreadable payload behind a Stripe fetch that failed too (NotAtStripe
    carries the SDK's error as its context, and that one the payload's)."""
    context = error.__context__
    for _ in range(3):
        if context is None or isinstance(context, MalformedEvent):
            break
        context = context.__context__
    if isinstance(context, MalformedEvent) and context is not error:
        return f"{context}; fetching the event from Stripe: {type(error).__name__}: {error}"
    return str(error) or type(error).__name__


def park(record: SQSRecord, error: Exception, body: dict[str, Any]) -> None:
    """Out of the event queue at once, into the DLQ with the reason; retried (as a failure) when the
    DLQ cannot be reached or is not configured, so nothing is ever lost."""
    reason = failure_reason(error)
    message = failed_message(record)
    dead_letter_queue_url = settings().dead_letter_queue_url
    if not dead_letter_queue_url:
        logger.error("DEAD_LETTER_QUEUE_URL is not set: an unfixable event is retried instead of parked")
        failed(record, body, error)
        raise error
    try:
        parked_id = failed_events.park(dead_letter_queue_url, message, reason, type(error).__name__)
    except ParkingFailed as parking:
        failed(record, body, parking)
        raise parking from error
    metrics.add_metric(name="EventsParked", unit=MetricUnit.Count, value=1)
    logger.warning(
        "event parked in the dead-letter queue",
        event_id=body.get("id"),
        event_type=body.get("type"),
        reason=reason,
        error=type(error).__name__,
        message_id=record.message_id,
        dead_letter_message_id=parked_id,
        receive_count=message.receive_count,
    )


def failed(
    record: SQSRecord, body: dict[str, Any], error: BaseException, *, unexpected: bool = False
) -> None:
    """Count and log a failure, and have the message come back after the schedule's delay."""
    metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=1)
    message = failed_message(record)
    delay = retry_soon(message)
    fields: dict[str, Any] = {
        "message_id": record.message_id,
        "event_id": body.get("id"),
        "event_type": body.get("type"),
        "receive_count": message.receive_count,
        "retry_in_seconds": delay,
    }
    if unexpected:
        logger.exception("event failed", **fields)
    else:
        logger.warning("event not applied", reason=str(error), **fields)
    if failing_repeatedly(message.receive_count):
        metrics.add_metric(name="EventsFailingRepeatedly", unit=MetricUnit.Count, value=1)


def retry_soon(message: FailedMessage) -> int | None:
    """ChangeMessageVisibility to the schedule's delay; None (the queue's visibility timeout applies)
    when QUEUE_URL is not set or SQS refuses."""
    queue_url = settings().queue_url
    if not queue_url:
        return None
    delay = retry_delay(message.receive_count)
    try:
        failed_events.retry_in(queue_url, message, delay)
    except Exception as error:  # the safety net holds: the message still comes back
        logger.warning(
            "retry delay not set: the queue's visibility timeout applies",
            message_id=message.message_id,
            error=f"{type(error).__name__}: {error}",
        )
        return None
    return delay


def failed_message(record: SQSRecord) -> FailedMessage:
    attributes = {name: str(value) for name, value in (record.raw_event.get("attributes") or {}).items()}
    return FailedMessage(record.message_id, record.receipt_handle, record.body, attributes)


def report(result: Result) -> None:
    metrics.add_metric(name=OUTCOME_METRICS[result.outcome], unit=MetricUnit.Count, value=1)
    if result.tie_fetched:
        metrics.add_metric(name="TiesFetched", unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.IGNORED:
        metrics.add_metric(name="EventsUnknown", unit=MetricUnit.Count, value=1)
    changed = result.entitlements_changed  # access is logged when it changes (log bytes are billed)
    logger.info(
        f"event {result.outcome}",
        event_id=result.event_id,
        event_type=result.event_type,
        customer_id=result.customer_id,
        outcome=str(result.outcome),
        reason=result.reason or None,
        entitlements_changed=result.entitlements_changed,
        entitlements_before=_access(result.before) if changed else None,
        entitlements_after=_access(result.after) if changed else None,
        api_calls=result.api_calls,
        notes=list(result.notes) or None,
        # Objects and events Stripe answered 404 for: the object is gone, which is an answer.
        not_found=list(result.not_found) or None,
    )


def _access(entitlements: Entitlements | None) -> dict[str, Any] | None:
    """What the log shows of access: feature names with their ends, and the flags (no personal data)."""
    if entitlements is None:
        return None
    return {
        "features": {name: grant.until for name, grant in sorted(entitlements.features.items())},
        "payment_issue": entitlements.payment_issue,
        "deleted": entitlements.deleted,
    }


@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # Only the request id of Powertools' Lambda context fields: the log group names the function, and
    # its name, ARN and memory size on every event's line were ~150 B of its log bill.
    logger.append_keys(function_request_id=getattr(context, "aws_request_id", None))
    reserve_ms = record_reserve_ms()
    started = 0

    def within_budget(record: SQSRecord) -> Result | None:
        nonlocal started
        remaining_ms = context.get_remaining_time_in_millis()
        if started and remaining_ms < reserve_ms:
            metrics.add_metric(name="EventsDeferred", unit=MetricUnit.Count, value=1)
            logger.info(
                "event deferred",
                message_id=record.message_id,
                remaining_ms=remaining_ms,
                receive_count=record.attributes.approximate_receive_count,
                retry_in_seconds=retry_soon(failed_message(record)),
            )
            raise NotStarted(f"{remaining_ms} ms left, {reserve_ms} ms needed to start an event")
        started += 1
        return apply_message(record)

    return process_partial_response(
        event=event, record_handler=within_budget, processor=processor, context=context
    )
