"""Webhook ingress lambda: verify Stripe's signature over the exact bytes, queue the event, answer.

200 once SQS has stored the event; 4xx (nothing queued) for requests that are not a verified Stripe
event; 5xx only when the event could not be queued or the function is misconfigured, so that Stripe
retries. The rules live in domain.ingress; this module wires them to the queue and to its settings
(WebhookSettings, parsed once per container at the first request).

Cold start: this module imports json, os, time, functools, dataclasses and the domain; its two AWS
calls (SQS SendMessage, Secrets Manager GetSecretValue) go through adapters.aws_json on the standard
library, so no boto3 or botocore is loaded. bench/cold_start.py measures the built package against a
naive handler: about a fifth of its CPU (bench/README.md).

Logging: one JSON object per line on stdout, which CloudWatch Logs Insights parses as it does
Powertools' output. Importing Powertools Logger costs ~47 ms and stdlib logging ~13 ms (median of 7
fresh interpreters, dev machine), against ~37 ms for this whole module: neither earns its place here.
Logged: request id, event id and type, mode, outcome, status, reason; never a secret, the
signature header or anything from the payload beyond its ids.

Metrics: the same line carries CloudWatch's embedded metric format (its `_aws` key), so CloudWatch
turns each answer into a count without a PutMetricData call or Powertools Metrics' import:
DeliveriesQueued, DeliveriesRejected (every 4xx), DeliveriesUnverified (the 4xx whose signature no
configured secret made for the event's mode: a wrong or rolled secret; a request with no
Stripe-Signature header is not one) and DeliveriesFailed (5xx),
in POWERTOOLS_METRICS_NAMESPACE (per stack, template.yaml) with the `service` dimension, as
Powertools writes the worker's and the reconciler's. DeliveriesQueued is also counted per `mode` (the
verified event's) and DeliveriesUnverified per `claimed_mode`: the mode the unverified body claims
(its `livemode`; "unknown" without one), untrusted by name, since no secret verified it. A live
secret rolled without the new one then shows as live deliveries refused while live ones queue no
more, even while test deliveries still arrive (RejectedDeliveriesAlarm pairs the two per mode).
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from adapters import SettingsError, required
from adapters.aws_json import time_budget
from adapters.event_queue import QueueUnavailable, enqueue
from adapters.stripe_credentials import (
    MissingCredentials,
    SecretsUnavailable,
    StripeCredentialSource,
    credential_source,
    webhook_secrets,
)
from domain.credentials import CredentialsError
from domain.ingress import RejectedRequest, queue_message, verified_event, webhook_request
from domain.signature import signature_tolerance
from handlers import emit, queued_event_fields

SERVICE = "webhook"
QUEUED = ("DeliveriesQueued",)
REJECTED = ("DeliveriesRejected",)
UNVERIFIED = ("DeliveriesRejected", "DeliveriesUnverified")
FAILED = ("DeliveriesFailed",)
# Counted per mode as well (see the module docstring); the others only per service.
MODE_METRICS = frozenset({"DeliveriesQueued", "DeliveriesUnverified"})
# Both AWS calls (the secret read on a cold or refreshing container, SendMessage) share one budget
# below the function's 10 s timeout (template.yaml), so a slow AWS answers 503 (Stripe retries)
# rather than a Lambda timeout; the margin covers signing, logging and the response.
AWS_BUDGET_SECONDS = 7.0
AWS_BUDGET_MARGIN_SECONDS = 1.5


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    queue_url: str
    tolerance: int  # seconds a signature's timestamp may be off (SIGNATURE_TOLERANCE_SECONDS)
    stripe: StripeCredentialSource  # where the signing secrets are (STRIPE_SECRET_ID, STRIPE_WEBHOOK_SECRET)


# What the answer says when a setting is wrong (the log line carries SettingsError's message).
MISCONFIGURED = {
    "QUEUE_URL": "queue not configured",
    "SIGNATURE_TOLERANCE_SECONDS": "signature tolerance misconfigured",
}


@functools.cache
def settings() -> WebhookSettings:
    """Parsed once per container; SettingsError (not cached: each request answers 500 and says why)."""
    try:
        tolerance = signature_tolerance(os.environ.get("SIGNATURE_TOLERANCE_SECONDS"))
    except ValueError as error:
        raise SettingsError("SIGNATURE_TOLERANCE_SECONDS", str(error)) from None
    return WebhookSettings(
        queue_url=required(os.environ, "QUEUE_URL"), tolerance=tolerance, stripe=credential_source(os.environ)
    )


def aws_budget(context: Any) -> float:
    """Seconds the invocation's AWS calls may take: the budget, or less when the invocation has less."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return AWS_BUDGET_SECONDS
    left = float(remaining()) / 1000 - AWS_BUDGET_MARGIN_SECONDS
    return max(0.0, min(AWS_BUDGET_SECONDS, left))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with time_budget(aws_budget(context)):
        return _handle(event, context)


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    try:
        config = settings()
    except SettingsError as error:
        return _failed(500, MISCONFIGURED[error.variable], str(error), request_id)
    try:
        request = webhook_request(event)
        stripe_event = verified_event(
            request, webhook_secrets(config.stripe), now=time.time(), tolerance=config.tolerance
        )
    except RejectedRequest as rejection:
        _log(
            "WARNING",
            "webhook rejected",
            request_id=request_id,
            outcome="rejected",
            status=rejection.status,
            reason=rejection.reason,
            event_id=rejection.event_id,
            event_type=rejection.event_type,
            claimed_mode=rejection.claimed_mode,
            metrics=UNVERIFIED if rejection.unverified else REJECTED,
            by_mode=("claimed_mode", rejection.claimed_mode) if rejection.unverified else None,
        )
        return _response(rejection.status, {"error": rejection.reason})
    except MissingCredentials as error:
        return _failed(500, "webhook secret not configured", str(error), request_id)
    except CredentialsError as error:
        return _failed(500, "webhook secret misconfigured", str(error), request_id)
    except SecretsUnavailable as error:
        return _failed(503, "webhook secrets unavailable", str(error), request_id)

    message = queue_message(stripe_event)
    fields = {"request_id": request_id, **queued_event_fields(stripe_event, message)}
    try:
        message_id = enqueue(config.queue_url, message)
    except QueueUnavailable as error:
        _log(
            "ERROR",
            "webhook not queued",
            outcome="failed",
            status=503,
            error=str(error),
            metrics=FAILED,
            **fields,
        )
        return _response(503, {"error": "event not queued"})
    _log(
        "INFO",
        "webhook queued",
        outcome="queued",
        status=200,
        message_id=message_id,
        metrics=QUEUED,
        by_mode=("mode", "live" if stripe_event.livemode else "test"),
        **fields,
    )
    return _response(200, {"received": True})


def _failed(status: int, reason: str, detail: str, request_id: str | None) -> dict[str, Any]:
    """A configuration or dependency failure: Stripe retries; the log says what to fix."""
    _log(
        "ERROR",
        "webhook failed",
        request_id=request_id,
        outcome="failed",
        status=status,
        reason=reason,
        error=detail,
        metrics=FAILED,
    )
    return _response(status, {"error": reason})


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if status == 405:
        headers["allow"] = "POST"
    return {"statusCode": status, "headers": headers, "body": json.dumps(body)}


def _log(
    level: str,
    message: str,
    *,
    metrics: tuple[str, ...] = (),
    by_mode: tuple[str, str | None] | None = None,
    **fields: Any,
) -> None:
    """One JSON line (handlers.emit); `by_mode` (dimension name, value) also counts the metrics of
    MODE_METRICS per mode."""
    emit(
        level, message, service=SERVICE, metrics=metrics, by_mode=by_mode, mode_metrics=MODE_METRICS, **fields
    )
