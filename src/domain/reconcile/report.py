"""What one run reports: its counts, the drift it found, what needs a look, and where the pass stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.reconcile.drift import Drift
from domain.reconcile.passes import Counts
from domain.reconcile.skips import SkippedPhase

MAX_REPORTED_DRIFTS = 100  # the report names this many drifted objects; the counts are complete
MAX_REPORTED_MESSAGES = 20
OUT_OF_TIME = "time budget"  # ReconcileReport.stopped when the run's time ran out (not an error)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one run did. `counts` are this run's; `pass_counts` the whole pass's so far (full runs)."""

    scope: str  # "everything", "backfill", or the customer id
    dry_run: bool
    counts: Counts
    pages: int
    stripe_requests: int
    rate_limited: int  # 429 answers waited out
    drifts: tuple[Drift, ...]  # the first MAX_REPORTED_DRIFTS found
    messages: tuple[str, ...]  # what needs a look: errors, objects Stripe does not know (the first few)
    complete: bool  # the pass (or the customer) was reconciled to the end
    stopped: str | None = None  # why the run stopped before that: OUT_OF_TIME, or the error
    pass_id: str | None = None
    phase: str | None = None  # where the pass stands now
    pass_counts: Counts | None = None
    checkpoint: int | None = None  # where the pass's event lists start (epoch seconds)
    phases_done: int = 0  # of the pass's phases (`phase_count`), for a progress bar
    phase_count: int = 0
    skipped: tuple[SkippedPhase, ...] = ()  # phases (and object types) left for the next pass, and why

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the log line, the Lambda's answer and the ops CLI."""
        return {
            "scope": self.scope,
            "dry_run": self.dry_run,
            **self.counts.as_dict(),
            "drift": self.counts.drift,
            "drift_by_kind": self.counts.by_kind(),
            "pages": self.pages,
            "stripe_requests": self.stripe_requests,
            "rate_limited": self.rate_limited,
            "complete": self.complete,
            "stopped": self.stopped,
            "pass_id": self.pass_id,
            "phase": self.phase,
            "checkpoint": self.checkpoint,
            "phases_done": self.phases_done,
            "phase_count": self.phase_count,
            "pass_counts": self.pass_counts.as_dict() if self.pass_counts is not None else None,
            "drifts": [
                {
                    "kind": str(d.kind),
                    "object": d.object_type,
                    "id": d.object_id,
                    "customer": d.customer_id,
                    "livemode": d.livemode,
                }
                for d in self.drifts
            ],
            "messages": list(self.messages),
            "skipped_phases": [skipped.as_dict() for skipped in self.skipped],
        }
