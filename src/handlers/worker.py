"""Worker Lambda: applies queued Stripe events to the table, one SQS batch at a time.

Partial batch responses: a message that fails is retried alone (then parked in the DLQ) and never
holds back the others. The plain `BatchProcessor` is used on purpose, not the FIFO one, which would
fail every message after the first failure: order-safety comes from conditional writes, not the queue.

Time budget: a slow Stripe API (each call may take ~24 s: a 5 s timeout, three retries with backoff)
must not time out the whole batch, which would count a receive for every message in it and push
healthy events towards the DLQ. A record is started only while at least RECORD_RESERVE_SECONDS of the
invocation remain; the ones left are handed back unstarted as batch item failures (EventsDeferred) and
come back after the queue's visibility timeout. The first record is always started, so every
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

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters import sync_table
from adapters.settings import Settings, load_settings
from adapters.stripe_api import StripeApi
from adapters.stripe_credentials import api_keys
from domain.credentials import Mode
from domain.entitlements import Entitlements
from domain.stripe_objects import MalformedEvent
from domain.sync import EventApplier, Outcome, Result, RetryLater

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "stripe-sync-worker"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "StripeSync", service=SERVICE)
# An ordinary failure of every record (a one-message FIFO batch at low traffic) is reported like any
# other partial failure, never raised: a raised batch is a Lambda error, which pages (WorkerErrorsAlarm).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The longest one event may take (see the module docstring), with room for its writes. The worker's
# Timeout (template.yaml) leaves room for several such records; EventQueue's visibility timeout is
# six times that Timeout.
DEFAULT_RECORD_RESERVE_SECONDS = 50


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
    """Parsed once per container; the table binding with it."""
    loaded = load_settings()
    sync_table.configure(loaded.table_name)
    return loaded


@lru_cache(maxsize=4)
def _applier(keys: tuple[tuple[Mode, str], ...]) -> EventApplier:
    config = settings()
    stripe = StripeApi(dict(keys), config.stripe_api_base) if keys else None
    return EventApplier(
        sync_table.DynamoCustomerStore(ledger_days=config.ledger_days),
        config.rules,
        clock=lambda: int(time.time()),
        stripe=stripe,
    )


def event_applier() -> EventApplier:
    """The applier for the API keys configured now (adapters.stripe_credentials caches the secret; a
    rotated key is picked up within SECRET_MAX_AGE_SECONDS without a new container)."""
    return _applier(tuple(sorted(api_keys().items())))


def record_reserve_ms() -> int:
    text = os.environ.get("RECORD_RESERVE_SECONDS") or str(DEFAULT_RECORD_RESERVE_SECONDS)
    try:
        seconds = int(text)
    except ValueError:
        logger.warning("RECORD_RESERVE_SECONDS is not a whole number; using the default", value=text)
        seconds = DEFAULT_RECORD_RESERVE_SECONDS
    return max(seconds, 0) * 1000


def apply_message(record: SQSRecord) -> Result:
    try:
        body = json.loads(record.body)
    except ValueError as error:
        raise MalformedEvent("message body is not JSON") from error
    if not isinstance(body, dict):
        raise MalformedEvent("message body is not a JSON object")
    try:
        result = event_applier().apply(body)
    except (MalformedEvent, RetryLater) as error:
        metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=1)
        logger.warning(
            "event not applied",
            event_id=body.get("id"),
            event_type=body.get("type"),
            reason=str(error),
            receive_count=record.attributes.approximate_receive_count,
        )
        raise
    except Exception:
        metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=1)
        logger.exception("event failed", event_id=body.get("id"), event_type=body.get("type"))
        raise
    report(result)
    return result


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
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    reserve_ms = record_reserve_ms()
    started = 0

    def within_budget(record: SQSRecord) -> Result:
        nonlocal started
        remaining_ms = context.get_remaining_time_in_millis()
        if started and remaining_ms < reserve_ms:
            metrics.add_metric(name="EventsDeferred", unit=MetricUnit.Count, value=1)
            logger.info(
                "event deferred",
                message_id=record.message_id,
                remaining_ms=remaining_ms,
                receive_count=record.attributes.approximate_receive_count,
            )
            raise NotStarted(f"{remaining_ms} ms left, {reserve_ms} ms needed to start an event")
        started += 1
        return apply_message(record)

    return process_partial_response(
        event=event, record_handler=within_budget, processor=processor, context=context
    )
