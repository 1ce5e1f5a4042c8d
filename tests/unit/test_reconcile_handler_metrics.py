"""The reconciler's handler turns a run's report into the metrics its alarms watch."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aws_lambda_powertools import Metrics

from domain.reconcile import OUT_OF_TIME, Counts, ReconcileReport, SkippedPhase, SkipReason


def report(*, errors: int = 0, complete: bool = True, stopped: str | None = None) -> ReconcileReport:
    return ReconcileReport(
        scope="everything",
        dry_run=False,
        counts=Counts(checked=3, errors=errors),
        pages=1,
        stripe_requests=1,
        rate_limited=0,
        drifts=(),
        messages=(),
        complete=complete,
        stopped=stopped,
    )


def published(
    run: ReconcileReport, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[float]]:
    # Powertools reads these when the module is first imported: the values the pipeline tests use.
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StripeSync")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-sync-test")
    from handlers import reconcile as handler

    metrics = Metrics(namespace="StripeSync/dev/stripe-sync-test", service="stripe-sync-reconcile")
    monkeypatch.setattr(handler, "metrics", metrics)
    capsys.readouterr()
    handler.publish(run)
    metrics.flush_metrics()
    [document] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = [m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {name: document[name] for name in names}


@pytest.mark.parametrize(
    ("run", "failed", "completed"),
    [
        (report(), 0.0, [1.0]),
        # A run that leaves the pass unfinished says so with a 0: ReconcilePassOverdueAlarm treats an
        # hour with no data (a new stack, a stack without an API key) as not breaching.
        (report(complete=False, stopped=OUT_OF_TIME), 0.0, [0.0]),
        # A revoked key, Stripe or DynamoDB down: the run returns normally, so Lambda's Errors stays 0.
        (report(errors=1, complete=False, stopped="stripe: 401 Invalid API Key provided"), 1.0, [0.0]),
        (report(errors=2), 1.0, [1.0]),
    ],
)
def test_a_failed_run_is_a_metric_and_a_completed_pass_another(
    run: ReconcileReport,
    failed: float,
    completed: list[float] | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = published(run, capsys, monkeypatch)
    assert metrics["ReconcileFailed"] == [failed]
    assert metrics.get("ReconcilePassCompleted") == completed


def test_skipped_phases_are_counted_in_all_and_per_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StripeSync")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-sync-test")
    from handlers import reconcile as handler

    metrics = Metrics(namespace="StripeSync/dev/stripe-sync-test", service="stripe-sync-reconcile")
    monkeypatch.setattr(handler, "metrics", metrics)
    skips = (
        SkippedPhase("events:test", "test", None, SkipReason.PERMISSION, "the API key lacks rak_event_read"),
        SkippedPhase("changes:test", "test", None, SkipReason.PERMISSION, "the API key lacks rak_event_read"),
        SkippedPhase("subscriptions:test:acct_1", "test", "acct_1", SkipReason.ACCOUNT_DEAUTHORIZED, "403"),
    )
    run = dataclasses.replace(report(errors=2), counts=Counts(errors=2, phases_skipped=3), skipped=skips)
    capsys.readouterr()
    handler.publish(run)
    metrics.flush_metrics()

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    by_reason = {
        d["reason"]: (
            d["ReconcilePhasesSkipped"],
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            d["service"],
        )
        for d in documents
        if "reason" in d
    }
    namespace = "StripeSync/dev/stripe-sync-test"
    assert by_reason == {
        "permission": ([2.0], namespace, "stripe-sync-reconcile"),
        "account_deauthorized": ([1.0], namespace, "stripe-sync-reconcile"),
    }
    [total] = [d for d in documents if "reason" not in d]
    assert total["ReconcilePhasesSkipped"] == [3.0]
    assert total["ReconcileFailed"] == [1.0]
