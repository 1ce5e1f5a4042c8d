"""`reconcile`: the scheduled reconciler (adapters.reconciler.reconcile), run now from a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from domain.reconcile import ReconcileReport
from ops.progress import Progress
from ops.targets import Target, target_settings


def run_reconcile(
    target: Target,
    env: Mapping[str, str],
    *,
    customer: str | None,
    dry_run: bool,
    time_budget_seconds: float | None,
    progress_stream: TextIO,
) -> ReconcileReport:
    """Run the reconciler with the target's table, queue and Stripe secret (ops.targets.target_settings)."""
    from adapters.reconciler import reconcile  # noqa: PLC0415 - stripe and pynamodb only for this command
    from domain.reconcile import Everything, OneCustomer  # noqa: PLC0415

    settings = target_settings(target, env, dry_run=dry_run)
    progress = Progress(None, "checked", progress_stream)

    def report_progress(report: ReconcileReport) -> None:
        counts = report.counts
        progress.update(
            counts.checked,
            f"checked, {counts.drift} drift, {counts.repaired} repaired, page {report.pages}"
            + (f", {counts.errors} error(s)" if counts.errors else ""),
        )

    try:
        return reconcile(
            settings,
            OneCustomer(customer) if customer else Everything(),
            dry_run,
            report_progress,
            time_budget_seconds=time_budget_seconds,
        )
    finally:
        progress.finish()
