"""Reconcile Lambda: runs on a schedule (or by hand) and reports each run as metrics and one log line.

Events: the schedule's (a full run, resuming the pass, after an unfinished backfill), `{"dry_run": true}`
(report without queueing), `{"customer": "cus_…"}` (that customer only), `{"backfill": true}` (walk the
account once after the first deploy; `"since": "2024-01-31"` optional), with or without dry_run.

A stack without a Stripe API key (documented as optional) has nothing to reconcile against: each run
then answers "not configured" and emits ReconcileNotConfigured = 1, and nothing else (no error, no
failed run), so no alarm pages for a choice the operator made. Settings are parsed once per container.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters.reconciler import ReconcileNotConfigured, reconcile
from adapters.settings import ReconcileSettings, SettingsError, reconcile_settings
from adapters.stripe_credentials import SecretsUnavailable, api_keys
from domain.credentials import CredentialsError
from domain.reconcile import OUT_OF_TIME, InvalidRequest, ReconcileReport, run_request, time_budget
from handlers import DEFAULT_NAMESPACE

logger = Logger()
# The namespace falls back as the other functions' does: Powertools reads it once, at import.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)

# The counts an alarm or a dashboard widget reads (template.yaml), sent only when not zero: a custom
# metric costs $0.30 a month for every hour it is sent in, and a scheduled run every hour would keep each
# one billed all month on a stack that receives nothing. Every count, zeros and drift per kind included,
# is in the "reconcile run" log line (report.as_dict()).
COUNT_METRICS = {
    "missing": "DriftMissing",
    "stale": "DriftStale",
    "extra": "DriftExtra",
    "repaired": "DriftRepaired",
    "errors": "ReconcileErrors",
    "phases_skipped": "ReconcilePhasesSkipped",
    "failed_events": "FailedEventsFound",
    "events_requeued": "EventsRequeued",
}
# ReconcilePhasesSkipped once more per reason (domain.reconcile.SkipReason), with a `reason` dimension.
SKIP_REASON_DIMENSION = "reason"
_not_configured_logged = False


@cache
def settings() -> ReconcileSettings:
    """Parsed once per container (a bad RECONCILE_* value fails every invocation alike)."""
    return reconcile_settings()


def publish(report: ReconcileReport) -> None:
    """The counts the alarms and the dashboard read, when not zero; ReconcileFailed and (full runs)
    ReconcilePassCompleted every run, zeros included (their alarms need a data point each run); and one
    log line with every count."""
    for name, value in report.counts.as_dict().items():
        if name in COUNT_METRICS and value:
            metrics.add_metric(name=COUNT_METRICS[name], unit=MetricUnit.Count, value=value)
    if report.rate_limited:
        metrics.add_metric(name="StripeRateLimited", unit=MetricUnit.Count, value=report.rate_limited)
    reasons: dict[str, int] = {}
    for skipped in report.skipped:
        reasons[str(skipped.reason)] = reasons.get(str(skipped.reason), 0) + 1
    for reason, count in sorted(reasons.items()):
        with single_metric(
            name="ReconcilePhasesSkipped",
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={
                **metrics.default_dimensions,
                "service": metrics.service or "service_undefined",
            },
        ) as metric:
            metric.add_dimension(name=SKIP_REASON_DIMENSION, value=reason)
    if report.scope == "everything":
        # A data point every full run (0 until the pass completes): ReconcilePassOverdueAlarm can
        # tell a pass that never completes from a stack that runs no pass (no key: no data at all).
        metrics.add_metric(
            name="ReconcilePassCompleted", unit=MetricUnit.Count, value=1 if report.complete else 0
        )
    if report.complete and report.scope == "backfill":
        metrics.add_metric(name="BackfillCompleted", unit=MetricUnit.Count, value=1)
    failed = report.counts.errors > 0 or report.stopped not in (None, OUT_OF_TIME)
    # A run stopped by an error (a revoked key, Stripe or DynamoDB down) returns normally, so Lambda's
    # Errors never counts it: this metric is what ReconcileFailedAlarm watches.
    metrics.add_metric(name="ReconcileFailed", unit=MetricUnit.Count, value=1 if failed else 0)
    (logger.warning if failed else logger.info)("reconcile run", **report.as_dict())


def not_configured(reason: str) -> dict[str, Any]:
    """No API key: one metric each run, one log line per container, and an answer that says so."""
    global _not_configured_logged  # noqa: PLW0603 - once per container, like the settings
    metrics.add_metric(name="ReconcileNotConfigured", unit=MetricUnit.Count, value=1)
    if not _not_configured_logged:
        logger.warning("reconcile not configured", reason=reason)
        _not_configured_logged = True
    return {"configured": False, "reason": reason, "complete": False}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        config = settings()
        if not api_keys(config.stripe):
            return not_configured("no STRIPE_API_KEY configured: nothing to reconcile against")
        request = run_request(event, dry_run_default=config.options.dry_run)
        budget = time_budget(config.options.time_budget_seconds, context.get_remaining_time_in_millis())
        report = reconcile(config, request.scope, request.dry_run, time_budget_seconds=budget)
    except (
        InvalidRequest,
        SettingsError,
        ReconcileNotConfigured,
        CredentialsError,
        SecretsUnavailable,
    ) as error:
        metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ReconcileFailed", unit=MetricUnit.Count, value=1)
        logger.error("reconcile cannot run", reason=str(error))
        raise
    publish(report)
    return report.as_dict()
