"""`backfill`: walk an existing Stripe account once, after the first deploy, and queue what can grant
access as fetched snapshots (adapters.reconciler with the Backfill scope), run after run until done."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TextIO

from domain.reconcile import OUT_OF_TIME, Counts, ReconcileReport
from ops.progress import Progress
from ops.targets import Target, target_settings

MAX_RUNS = 1000  # a backfill of millions of objects: each run saves the cursor, so nothing is redone


def run_backfill(
    target: Target,
    env: Mapping[str, str],
    *,
    since: int | None,
    dry_run: bool,
    time_budget_seconds: float | None,
    progress_stream: TextIO,
    runs: Callable[[int], None] | None = None,
) -> ReconcileReport:
    """With the target's settings (ops.targets.target_settings), run the backfill (each run within the time budget,
    resuming from the backfill's cursor) until it is complete or a run stops on an error."""
    from adapters.reconciler import reconcile  # noqa: PLC0415 - stripe and pynamodb only for this command
    from domain.reconcile import Backfill  # noqa: PLC0415

    settings = target_settings(target, env, dry_run=dry_run)
    progress = Progress(None, "phases", progress_stream)
    earlier = Counts()  # what the finished runs counted

    def report_progress(report: ReconcileReport) -> None:
        counts = earlier + report.counts
        if report.phase_count and progress.total != report.phase_count:
            progress.total = report.phase_count
        progress.update(
            report.phases_done,
            f"phases ({report.phase or '-'}): {counts.checked} checked, {counts.missing} missing, "
            f"{counts.stale} stale, {counts.repaired} queued"
            + (f", {counts.errors} error(s)" if counts.errors else ""),
        )

    try:
        for number in range(1, MAX_RUNS + 1):
            if runs is not None:
                runs(number)
            report = reconcile(
                settings,
                Backfill(since),
                dry_run,
                report_progress,
                time_budget_seconds=time_budget_seconds,
            )
            if report.complete or report.stopped != OUT_OF_TIME:
                return _total(report, earlier)
            earlier = earlier + report.counts
        return _total(report, earlier)
    finally:
        progress.finish()


def _total(last: ReconcileReport, earlier: Counts) -> ReconcileReport:
    """The last run's report with the counts of every run of this command."""
    return replace(last, counts=earlier + last.counts)
