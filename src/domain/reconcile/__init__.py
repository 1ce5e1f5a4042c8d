"""Reconciling the table against the Stripe API: the reconciler as a use case with ports.

    request.py   what a run is asked to do (scopes, the Lambda event) and the RECONCILE_* options
    run.py       the use case: a full pass, a backfill or one customer, phase by phase (Reconciler)
    pages.py     one page of a phase: a Stripe list (or the table's records) compared with the table
    skips.py     phases that cannot block each other: why a phase is skipped, and what to tell a person
    ports.py     what a run needs from Stripe, the table, its cursor and the queue (protocols), and
                 the Stripe failures that cross them
    drift.py     what counts as drift (records against Stripe's objects, events against the table)
    repairs.py   how a repair travels (a synthetic `sync.fetched` event into the customer's group)
    backfill.py  what a backfill lists and queues
    passes.py    phases, the pass's cursor and its counters
    pacing.py    the time budget, request pacing and 429 backoff
    report.py    what a run reports

The adapters (adapters.reconciler, adapters.reconcile_cursor, adapters.fetched_queue) implement the
ports over the stripe SDK, pynamodb and SQS; tests.support.memory_reconcile implements them in memory. The
names below are the package's public seams, importable from `domain.reconcile`.
"""

from domain.reconcile.backfill import BACKFILL_KINDS, backfill_object
from domain.reconcile.drift import (
    Drift,
    DriftKind,
    customer_of_object,
    drift_of,
    event_drift,
    object_to_verify,
    same_record,
    same_summary,
    summary_object,
)
from domain.reconcile.pacing import (
    RATE_LIMIT_FIRST_WAIT_SECONDS,
    RATE_LIMIT_LONGEST_WAIT_SECONDS,
    RATE_LIMIT_MAX_RETRIES,
    Deadline,
    RateLimitPersisted,
    StripePacer,
    TimeBudgetSpent,
    backoff_seconds,
    time_budget,
)
from domain.reconcile.passes import (
    BACKFILL_LISTS,
    CHANGE_EVENT_TYPES,
    CHECKPOINT_OVERLAP_SECONDS,
    DAY,
    DONE,
    DRIFT_KINDS,
    EVENT_DAYS,
    LIST_PHASES,
    RECONCILE_LISTS,
    RECORDS_PHASE,
    Account,
    Counts,
    PassCursor,
    PhaseKind,
    backfill_phases,
    first_checkpoint,
    new_accounts,
    next_checkpoint,
    pass_phases,
    phase_name,
    phase_parts,
)
from domain.reconcile.repairs import (
    FETCHED_EVENT_TYPE,
    ObjectTooLarge,
    event_message,
    fetched_event,
    fetched_message,
)
from domain.reconcile.report import MAX_REPORTED_DRIFTS, MAX_REPORTED_MESSAGES, OUT_OF_TIME, ReconcileReport
from domain.reconcile.request import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_TIME_BUDGET_SECONDS,
    Backfill,
    Everything,
    InvalidRequest,
    OneCustomer,
    ReconcileOptions,
    RunRequest,
    Scope,
    options_from,
    parse_since,
    run_request,
)
from domain.reconcile.skips import SkippedPhase, SkipReason
from domain.settlement import CLOSED_DISPUTE_STATUSES, SETTLED_PAYMENT_INTENT_STATUSES, purchase_is_settled

__all__ = [
    "BACKFILL_KINDS",
    "BACKFILL_LISTS",
    "CHANGE_EVENT_TYPES",
    "CHECKPOINT_OVERLAP_SECONDS",
    "CLOSED_DISPUTE_STATUSES",
    "DAY",
    "DEFAULT_MAX_REQUESTS_PER_SECOND",
    "DEFAULT_TIME_BUDGET_SECONDS",
    "DONE",
    "DRIFT_KINDS",
    "EVENT_DAYS",
    "FETCHED_EVENT_TYPE",
    "LIST_PHASES",
    "MAX_REPORTED_DRIFTS",
    "MAX_REPORTED_MESSAGES",
    "OUT_OF_TIME",
    "RATE_LIMIT_FIRST_WAIT_SECONDS",
    "RATE_LIMIT_LONGEST_WAIT_SECONDS",
    "RATE_LIMIT_MAX_RETRIES",
    "RECONCILE_LISTS",
    "RECORDS_PHASE",
    "SETTLED_PAYMENT_INTENT_STATUSES",
    "Account",
    "Backfill",
    "Counts",
    "Deadline",
    "Drift",
    "DriftKind",
    "Everything",
    "InvalidRequest",
    "ObjectTooLarge",
    "OneCustomer",
    "PassCursor",
    "PhaseKind",
    "RateLimitPersisted",
    "ReconcileOptions",
    "ReconcileReport",
    "RunRequest",
    "Scope",
    "SkipReason",
    "SkippedPhase",
    "StripePacer",
    "TimeBudgetSpent",
    "backfill_object",
    "backfill_phases",
    "backoff_seconds",
    "customer_of_object",
    "drift_of",
    "event_drift",
    "event_message",
    "fetched_event",
    "fetched_message",
    "first_checkpoint",
    "new_accounts",
    "next_checkpoint",
    "object_to_verify",
    "options_from",
    "parse_since",
    "pass_phases",
    "phase_name",
    "phase_parts",
    "purchase_is_settled",
    "run_request",
    "same_record",
    "same_summary",
    "summary_object",
    "time_budget",
]
