"""Reconcile Lambda: runs on a schedule (or by hand) and reports each run as metrics and one log line.

Events: the schedule's (a full run, resuming the pass, after an unfinished backfill), `{"dry_run": true}`
(report without queueing), `{"customer": "cus_…"}` (that customer only), `{"backfill": true}` (walk the
account once after the first deploy; `"since": "2024-01-31"` optional), with or without dry_run.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters.reconciler import reconcile, time_budget
from adapters.settings import SettingsError
from adapters.stripe_credentials import SecretsUnavailable
from domain.credentials import CredentialsError
from domain.reconcile import OUT_OF_TIME, InvalidRequest, ReconcileReport, options_from, run_request

logger = Logger()
metrics = Metrics()

COUNT_METRICS = {
    "checked": "ReconcileChecked",
    "missing": "DriftMissing",
    "stale": "DriftStale",
    "extra": "DriftExtra",
    "repaired": "DriftRepaired",
    "not_found": "ReconcileNotFound",
    "skipped": "ReconcileSkipped",
    "errors": "ReconcileErrors",
    "failed_events": "FailedEventsFound",
    "events_checked": "EventsChecked",
    "events_applied": "EventsAlreadyApplied",
    "events_lost": "EventsLost",
    "events_requeued": "EventsRequeued",
    "summaries_checked": "EntitlementSummariesChecked",
}
# Drift per record kind (and events whose effect the table lacked): DriftBy<Kind>.
KIND_METRICS = {
    "profile": "DriftByCustomer",
    "subscription": "DriftBySubscription",
    "invoice": "DriftByInvoice",
    "purchase": "DriftByPurchase",
    "payment": "DriftByPayment",
    "charge": "DriftByCharge",
    "refund": "DriftByRefund",
    "dispute": "DriftByDispute",
    "entitlement_summary": "DriftByEntitlementSummary",
    "event": "DriftByEvent",
}


def publish(report: ReconcileReport) -> None:
    """Every counter, zeros included (an alarm then sees a data point each run), and one log line."""
    for name, value in report.counts.as_dict().items():
        if name in COUNT_METRICS:
            metrics.add_metric(name=COUNT_METRICS[name], unit=MetricUnit.Count, value=value)
    for kind, value in report.counts.by_kind().items():
        metrics.add_metric(name=KIND_METRICS[kind], unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="StripeRateLimited", unit=MetricUnit.Count, value=report.rate_limited)
    if report.complete and report.scope == "everything":
        metrics.add_metric(name="ReconcilePassCompleted", unit=MetricUnit.Count, value=1)
    if report.complete and report.scope == "backfill":
        metrics.add_metric(name="BackfillCompleted", unit=MetricUnit.Count, value=1)
    failed = report.counts.errors > 0 or report.stopped not in (None, OUT_OF_TIME)
    # A run stopped by an error (a revoked key, Stripe or DynamoDB down) returns normally, so Lambda's
    # Errors never counts it: this metric is what ReconcileFailedAlarm watches.
    metrics.add_metric(name="ReconcileFailed", unit=MetricUnit.Count, value=1 if failed else 0)
    (logger.warning if failed else logger.info)("reconcile run", **report.as_dict())


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        options = options_from(os.environ)
        request = run_request(event, dry_run_default=options.dry_run)
        budget = time_budget(options.time_budget_seconds, context.get_remaining_time_in_millis())
        report = reconcile(request.scope, request.dry_run, time_budget_seconds=budget)
    except (InvalidRequest, SettingsError, CredentialsError, SecretsUnavailable) as error:
        metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ReconcileFailed", unit=MetricUnit.Count, value=1)
        logger.error("reconcile cannot run", reason=str(error))
        raise
    publish(report)
    return report.as_dict()
