"""Reconciling the table against the Stripe API (DESIGN.md, Reconciler): what counts as drift, how a
repair is queued, where a pass stands, and what a run reports.

Pure: the orchestration (adapters.reconciler) lists and fetches from Stripe, reads the table and sends
the repairs this module describes. A repair is never written directly: the fetched object goes into
the customer's FIFO group as a synthetic event stamped with the fetch time, and the worker applies it
through the same `EventApplier` as any webhook, so an older webhook arriving later cannot undo it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from domain.credentials import MODES, Mode
from domain.records import (
    DisputeRecord,
    EntitlementSummaryRecord,
    PaymentRecord,
    PurchaseRecord,
    Record,
    RecordKind,
    Snapshot,
)
from domain.stripe_objects import OBJECT_KINDS, record_of

Json = Mapping[str, Any]

FETCHED_EVENT_TYPE = "sync.fetched"
DEFAULT_TIME_BUDGET_SECONDS = 780.0  # of Lambda's 900 s: time left to save the cursor and report
# Stripe allows 100 requests/s in live mode and 25 in a sandbox (test mode), and 25/s per endpoint
# unless documented otherwise: a run calls one endpoint at a time, so 20/s stays under every limit
# and leaves room for the worker's own calls.
DEFAULT_MAX_REQUESTS_PER_SECOND = 20.0
EVENT_DAYS = 30  # Stripe keeps events (and lists them) for 30 days
DAY = 86_400
# A pass's event lists start this long before the previous pass started: an event created just before
# can reach the list a moment late.
CHECKPOINT_OVERLAP_SECONDS = 300
MAX_REPORTED_DRIFTS = 100  # the report names this many drifted objects; the counts are complete
MAX_REPORTED_MESSAGES = 20
OUT_OF_TIME = "time budget"  # ReconcileReport.stopped when the run's time ran out (not an error)
# 429s: waits whose ceiling doubles from 1 s to 32 s (half of it jitter); after 8 waits (~2 min) the run stops.
RATE_LIMIT_FIRST_WAIT_SECONDS = 1.0
RATE_LIMIT_LONGEST_WAIT_SECONDS = 32.0
RATE_LIMIT_MAX_RETRIES = 8

# Payment intents and Checkout sessions that can no longer change in a way that matters for access.
SETTLED_PAYMENT_INTENT_STATUSES = frozenset({"succeeded", "canceled"})
# Disputes that can no longer change what they take back.
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")


class DriftKind(StrEnum):
    MISSING = "missing"  # Stripe has the object, the table has no record of it
    STALE = "stale"  # the record differs from what Stripe says now
    EXTRA = "extra"  # a record Stripe's list leaves out, and which Stripe, asked by id, contradicts


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    object_type: str  # the Stripe object type: subscription, checkout.session, payment_intent
    object_id: str
    customer_id: str | None
    livemode: bool


# -- what to compare ------------------------------------------------------------------------------


def drift_of(
    kind: RecordKind,
    fetched: Json,
    stored: Snapshot | None,
    fetched_at: int,
    user_id_key: str = "user_id",
) -> DriftKind | None:
    """How the stored snapshot differs from the object Stripe returned at `fetched_at` (epoch seconds).

    None when they agree, and when the stored snapshot was made by an event later than the fetch:
    it is newer than what we saw. Raises MalformedEvent for an object that cannot be parsed.
    """
    record = record_of(kind, fetched, as_of=fetched_at, user_id_key=user_id_key)
    if stored is None:
        return DriftKind.MISSING
    if stored.stamp.created > fetched_at:
        return None
    return None if same_record(record, stored.record) else DriftKind.STALE


def same_record(fetched: Record, stored: Record) -> bool:
    """Every field the records keep, except what the worker adds on top of the API's answer: the
    Checkout line items it fetched once and carries over to later snapshots of the session, when a
    purchase was paid and a dispute lost (from the events that showed it), and the customer it found
    for a dispute (a dispute names none unless its charge is expanded)."""
    if (
        isinstance(fetched, PurchaseRecord)
        and isinstance(stored, PurchaseRecord)
        and (fetched.line_items is None or fetched.mode != "payment")
    ):
        # Only one-time purchases keep their line items (a subscription grants through itself).
        fetched = replace(fetched, line_items=stored.line_items)
    if isinstance(fetched, PurchaseRecord) and isinstance(stored, PurchaseRecord) and fetched.is_paid:
        # When it was paid comes from the event that showed it (the worker keeps it; a fetch cannot say).
        fetched = replace(fetched, paid_at=fetched.paid_at or stored.paid_at)
    if isinstance(fetched, DisputeRecord) and isinstance(stored, DisputeRecord):
        if fetched.customer_id is None:
            fetched = replace(fetched, customer_id=stored.customer_id)
        if fetched.status != "won" and fetched.lost_at is None:
            fetched = replace(fetched, lost_at=stored.lost_at)  # when it was lost, as the worker keeps it
    return fetched == stored


def object_to_verify(record: Record) -> str | None:
    """The Stripe object type to fetch by id for a stored record outside the lists: one-time
    purchases (Checkout in payment mode) and payments that have not settled yet, and disputes that
    have not closed. (Settled ones change only through a refund or a dispute, which the pass's event
    lists find; a Stripe Entitlements summary is verified by its own list, see `same_summary`.)"""
    if isinstance(record, PurchaseRecord):
        return "checkout.session" if record.mode == "payment" and not purchase_is_settled(record) else None
    if isinstance(record, PaymentRecord):
        return None if record.status in SETTLED_PAYMENT_INTENT_STATUSES else "payment_intent"
    if isinstance(record, DisputeRecord):
        return None if record.status in CLOSED_DISPUTE_STATUSES else "dispute"
    return None


def same_summary(stored: EntitlementSummaryRecord, lookup_keys: Sequence[str]) -> bool:
    """Whether a stored Stripe Entitlements summary names exactly the customer's active entitlements."""
    return stored.complete and tuple(sorted(set(lookup_keys))) == tuple(sorted(set(stored.lookup_keys)))


def summary_object(customer_id: str, livemode: bool, lookup_keys: Sequence[str]) -> dict[str, Any]:
    """An `entitlements.active_entitlement_summary` as Stripe's event carries it, for the keys the
    active entitlements list answered (complete: the list was read to its end)."""
    return {
        "object": "entitlements.active_entitlement_summary",
        "customer": customer_id,
        "livemode": livemode,
        "entitlements": {
            "object": "list",
            "data": [
                {"object": "entitlements.active_entitlement", "lookup_key": key, "livemode": livemode}
                for key in sorted(set(lookup_keys))
            ],
            "has_more": False,
            "url": "/v1/entitlements/active_entitlements",
        },
    }


def purchase_is_settled(purchase: PurchaseRecord) -> bool:
    """Expired, or complete and paid (refunds and disputes arrive as charges and disputes)."""
    return purchase.status == "expired" or (
        purchase.status == "complete" and purchase.payment_status in ("paid", "no_payment_required")
    )


def customer_of_object(obj: Json) -> str | None:
    """`customer`, else `customer_account` (Accounts v2), as an id whether expanded or not."""
    for field_name in ("customer", "customer_account"):
        value = obj.get(field_name)
        if isinstance(value, Mapping):
            value = value.get("id")
        if isinstance(value, str) and value:
            return value
    return None


# -- repairs --------------------------------------------------------------------------------------


def fetched_event(obj: Json, fetched_at_ms: int, account: str | None = None) -> dict[str, Any]:
    """The synthetic event that carries an object fetched from Stripe into the queue (contract:
    CONVENTIONS.md). Its `created` is the fetch time, which orders it against webhooks."""
    object_id = obj.get("id")
    if obj.get("object") == "entitlements.active_entitlement_summary":
        object_id = f"summary_{customer_of_object(obj)}"  # one summary per customer, and no id of its own
    if not isinstance(object_id, str) or not object_id:
        raise ValueError("a fetched object without an id cannot be queued")
    event: dict[str, Any] = {
        "object": "event",
        "id": f"sync_{object_id}_{fetched_at_ms}",
        "type": FETCHED_EVENT_TYPE,
        "created": fetched_at_ms // 1000,
        "livemode": bool(obj.get("livemode")),
    }
    if account is not None:
        event["account"] = account
    event["data"] = {"object": dict(obj)}
    event["fetched"] = True
    return event


def backoff_seconds(retry: int, jitter: float) -> float:
    """Wait before retry number `retry` (1, 2, …) after a 429: doubling from the first wait up to the
    longest, half of it fixed and half random (`jitter` in [0, 1)) so that runs do not retry in step."""
    if retry < 1 or not 0.0 <= jitter < 1.0:
        raise ValueError("retry counts from 1 and jitter lies in [0, 1)")
    ceiling = min(RATE_LIMIT_LONGEST_WAIT_SECONDS, RATE_LIMIT_FIRST_WAIT_SECONDS * 2.0 ** (retry - 1))
    return ceiling / 2 + ceiling / 2 * jitter


# -- what a run is asked to do --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Everything:
    """Every subscription of every mode with an API key, resumable over several runs."""


@dataclass(frozen=True, slots=True)
class OneCustomer:
    customer_id: str  # cus_…, or a customer_account id


@dataclass(frozen=True, slots=True)
class Backfill:
    """Walk an existing account once (after the first deploy): every object that can grant access,
    created at or after `since` (epoch seconds; None: all of them), resumable from its own cursor."""

    since: int | None = None


Scope = Everything | OneCustomer | Backfill


class InvalidRequest(ValueError):
    """A run request or a setting the reconciler cannot use (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    scope: Scope
    dry_run: bool


def run_request(event: object, *, dry_run_default: bool = False) -> RunRequest:
    """The Lambda event -> what to do: `{"dry_run": true}`, `{"customer": "cus_…"}`,
    `{"backfill": true, "since": "2024-01-31"}` (since optional), with or without dry_run, or any
    other event (the schedule's) for a full run."""
    if event is None:
        return RunRequest(Everything(), dry_run_default)
    if not isinstance(event, Mapping):
        raise InvalidRequest("the event must be a JSON object")
    dry_run = event.get("dry_run", dry_run_default)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run must be true or false")
    backfill = event.get("backfill", False)
    if not isinstance(backfill, bool):
        raise InvalidRequest("backfill must be true or false")
    customer = event.get("customer")
    if backfill:
        if customer is not None:
            raise InvalidRequest("a backfill walks the whole account: it takes no customer")
        since = event.get("since")
        if since is not None and not isinstance(since, str):
            raise InvalidRequest("since must be a date such as 2024-01-31")
        return RunRequest(Backfill(parse_since(since) if since else None), dry_run)
    if "since" in event:
        raise InvalidRequest("since applies to a backfill only")
    if customer is None:
        return RunRequest(Everything(), dry_run)
    if not isinstance(customer, str) or not _CUSTOMER_ID.match(customer):
        raise InvalidRequest("customer must be a Stripe customer id such as cus_…")
    return RunRequest(OneCustomer(customer), dry_run)


def parse_since(text: str) -> int:
    """`--since` / `"since"`: a date (YYYY-MM-DD, midnight UTC) or a date and time in ISO 8601."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"since must be a date such as 2024-01-31, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    requeue_failed_events: bool = True  # on by default: a wrong secret or an outage is repaired
    dry_run: bool = False


def options_from(env: Mapping[str, str]) -> ReconcileOptions:
    """RECONCILE_TIME_BUDGET_SECONDS, RECONCILE_MAX_REQUESTS_PER_SECOND, RECONCILE_REQUEUE_FAILED_EVENTS,
    RECONCILE_DRY_RUN; unset or empty means the default."""
    defaults = ReconcileOptions()
    return ReconcileOptions(
        time_budget_seconds=_positive(env, "RECONCILE_TIME_BUDGET_SECONDS", defaults.time_budget_seconds),
        max_requests_per_second=_positive(
            env, "RECONCILE_MAX_REQUESTS_PER_SECOND", defaults.max_requests_per_second
        ),
        requeue_failed_events=_flag(env, "RECONCILE_REQUEUE_FAILED_EVENTS", defaults.requeue_failed_events),
        dry_run=_flag(env, "RECONCILE_DRY_RUN", defaults.dry_run),
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise InvalidRequest(f"{name} must be a positive number, got {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = (env.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"{name} must be true or false, got {text!r}")


# -- counts, the pass and its cursor --------------------------------------------------------------


# The record kinds drift is counted by (the report's and the metrics' "per kind"), and "event" for
# events Stripe holds whose effect the table lacks.
DRIFT_KINDS: tuple[str, ...] = (*dict.fromkeys(OBJECT_KINDS.values()), "event")


@dataclass(frozen=True, slots=True)
class Counts:
    checked: int = 0  # Stripe objects compared with their records
    missing: int = 0
    stale: int = 0
    extra: int = 0
    repaired: int = 0  # repairs queued (none in a dry run)
    not_found: int = 0  # records whose object Stripe answers 404 for: reported, never changed
    skipped: int = 0  # records of a mode with no API key, objects that name no customer
    errors: int = 0  # objects that could not be compared, and runs stopped by an error
    failed_events: int = 0  # events Stripe could not deliver to every endpoint (since the checkpoint)
    events_checked: int = 0  # events of the pass's window compared with the ledger and the records
    events_applied: int = 0  # ... that the table already reflects (applied, or a newer snapshot)
    events_lost: int = 0  # ... that it does not: queued again as Stripe sent them
    events_requeued: int = 0
    summaries_checked: int = 0  # Stripe Entitlements summaries compared with the active entitlements
    drift_profile: int = 0
    drift_subscription: int = 0
    drift_invoice: int = 0
    drift_purchase: int = 0
    drift_payment: int = 0
    drift_charge: int = 0
    drift_refund: int = 0
    drift_dispute: int = 0
    drift_entitlement_summary: int = 0
    drift_event: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Counts)))

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.extra

    def by_kind(self) -> dict[str, int]:
        """Drift found per record kind (and lost events), zeros included."""
        return {kind: getattr(self, f"drift_{kind}") for kind in DRIFT_KINDS}

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        """From a stored cursor; counters it does not know (an older or newer shape) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: int(value) for name, value in data.items() if name in known})

    @classmethod
    def of_drift(cls, kind: DriftKind, record_kind: str | None = None) -> Counts:
        counts: dict[str, int] = {str(kind): 1}
        if record_kind in DRIFT_KINDS:
            counts[f"drift_{record_kind}"] = 1
        return cls(**counts)


PhaseKind = Literal[
    "subscriptions",
    "events",
    "changes",
    "records",
    "sessions",
    "payments",
    "refunds",
    "disputes",
    "customers",
]
DONE = "done"
RECORDS_PHASE = "records"
LIST_PHASES = (
    "subscriptions",
    "events",
    "changes",
    "sessions",
    "payments",
    "refunds",
    "disputes",
    "customers",
)
# A reconcile pass, per mode and account: the subscription list, the events Stripe could not deliver,
# and the events of the other record families (refunds, disputes, purchases, profiles, summaries).
RECONCILE_LISTS = ("subscriptions", "events", "changes")
# A backfill, per mode and account: every object that can grant access.
BACKFILL_LISTS = ("subscriptions", "sessions", "payments", "refunds", "disputes", "customers")
# Events that change a record after it was created, of the kinds the subscription list does not
# cover (at most 20 in one list request). Creation events (checkout.session.completed,
# payment_intent.succeeded, customer.created) are left out: their volume grows with sales, a lost one
# is in the undelivered list (Stripe counts an event undelivered while any endpoint failed it), and
# what happened before the deploy is the backfill's.
CHANGE_EVENT_TYPES: tuple[str, ...] = (
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "customer.updated",
    "customer.deleted",
    "entitlements.active_entitlement_summary.updated",
)

type Account = tuple[Mode, str]  # a Connect account with records, in one mode


def phase_name(kind: str, mode: Mode, account: str | None = None) -> str:
    return f"{kind}:{mode}" + (f":{account}" if account else "")


def pass_phases(modes: Sequence[Mode], accounts: Sequence[Account] = ()) -> tuple[str, ...]:
    """A full reconcile pass: for each mode, the platform account then each connected account that
    has records, their lists (RECONCILE_LISTS); then the table's records (those the lists left out,
    unsettled purchases, open disputes, Stripe Entitlements summaries)."""
    return (*_per_account(RECONCILE_LISTS, modes, accounts), RECORDS_PHASE)


def backfill_phases(modes: Sequence[Mode], accounts: Sequence[Account] = ()) -> tuple[str, ...]:
    return _per_account(BACKFILL_LISTS, modes, accounts)


def _per_account(kinds: Sequence[str], modes: Sequence[Mode], accounts: Sequence[Account]) -> tuple[str, ...]:
    phases: list[str] = []
    for mode in (m for m in MODES if m in modes):
        for account in (None, *sorted(a for m, a in accounts if m == mode)):
            phases.extend(phase_name(kind, mode, account) for kind in kinds)
    return tuple(phases)


def phase_parts(phase: str) -> tuple[PhaseKind, Mode | None, str | None]:
    kind, _, rest = phase.partition(":")
    mode, _, account = rest.partition(":")
    if kind == RECORDS_PHASE and not rest:
        return "records", None, None
    if kind in LIST_PHASES and mode in MODES and (not account or account.startswith("acct_")):
        return kind, mode, account or None  # type: ignore[return-value]
    raise ValueError(f"unknown reconcile phase {phase!r}")


def first_checkpoint(now: int) -> int:
    """The first pass looks back as far as Stripe keeps events."""
    return now - EVENT_DAYS * DAY


def next_checkpoint(previous: PassCursor | None, now: int) -> int:
    """Where the event lists of a new pass start: a little before the previous pass started (so an
    event is looked at by one pass, two at the edges), and never before Stripe's 30 days."""
    oldest = first_checkpoint(now)
    if previous is None or previous.checkpoint is None:
        return oldest
    return max(oldest, previous.started_at - CHECKPOINT_OVERLAP_SECONDS)


def new_accounts(previous: PassCursor | None, accounts: Sequence[Account]) -> tuple[str, ...]:
    """The accounts the previous pass did not list (all of them after a backfill or on the first pass)."""
    listed = set()
    for phase in previous.phases if previous is not None else ():
        _kind, mode, account = phase_parts(phase) if phase != RECORDS_PHASE else ("records", None, None)
        if account is not None:
            listed.add(f"{mode}:{account}")
    return tuple(sorted({f"{mode}:{account}" for mode, account in accounts} - listed))


def event_drift(event: Json, applied: bool, stored: Snapshot | None) -> bool:
    """Whether an event Stripe lists is missing from the table: not in the ledger, and its object's
    record (when the event's object names its customer) is older than the event."""
    if applied:
        return False
    created = event.get("created")
    return not (stored is not None and isinstance(created, int) and stored.stamp.created >= created)


@dataclass(frozen=True, slots=True)
class PassCursor:
    """Where a full pass stands: saved after every page, so the next run resumes there."""

    pass_id: str
    phases: tuple[str, ...]
    phase: str  # one of `phases`, or DONE
    position: str | None  # the last id of the last finished page (a list), the scan key (records)
    pages: int  # pages finished in the whole pass
    started_at: int
    updated_at: int
    counts: Counts
    completed_at: int | None = None
    version: int | None = None  # the stored item's version (optimistic lock); None before the first save
    # The pass's event lists (and a backfill's objects) start at this time (epoch seconds).
    checkpoint: int | None = None
    # Connect accounts ("<mode>:<acct_…>") listed for the first time: their event lists look back
    # the full 30 days, as the first pass does.
    new_accounts: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.phase == DONE

    @property
    def phases_done(self) -> int:
        return len(self.phases) if self.done else self.phases.index(self.phase)

    @classmethod
    def start(
        cls,
        pass_id: str,
        phases: tuple[str, ...],
        now: int,
        version: int | None,
        *,
        checkpoint: int | None = None,
        new_accounts: tuple[str, ...] = (),
    ) -> PassCursor:
        if not phases:
            raise ValueError("a pass has at least one phase")
        return cls(
            pass_id,
            phases,
            phases[0],
            None,
            0,
            now,
            now,
            Counts(),
            version=version,
            checkpoint=checkpoint,
            new_accounts=new_accounts,
        )

    def since(self, mode: Mode | None, account: str | None) -> int | None:
        """Where the event lists of this mode and account start."""
        if account is not None and f"{mode}:{account}" in self.new_accounts:
            return first_checkpoint(self.started_at)
        return self.checkpoint

    def after_page(self, position: str | None, counts: Counts, now: int) -> PassCursor:
        """The cursor once a page is finished: `position` None means the phase has no more pages."""
        if self.done:
            raise ValueError("the pass is complete")
        total = self.counts + counts
        if position is not None:
            return replace(self, position=position, pages=self.pages + 1, updated_at=now, counts=total)
        following = self.phases.index(self.phase) + 1
        if following < len(self.phases):
            return replace(
                self,
                phase=self.phases[following],
                position=None,
                pages=self.pages + 1,
                updated_at=now,
                counts=total,
            )
        return replace(
            self,
            phase=DONE,
            position=None,
            pages=self.pages + 1,
            updated_at=now,
            completed_at=now,
            counts=total,
        )


# -- the report -----------------------------------------------------------------------------------


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
        }


# -- what a backfill queues -----------------------------------------------------------------------


def backfill_object(phase: str, obj: Json, user_id_key: str = "user_id") -> Json | None:
    """The object of a backfill list page to compare and queue, or None when it grants nothing:
    paid Checkout sessions in payment mode (and subscription-mode ones that name a user), succeeded
    PaymentIntents that grant by metadata, the charge of a refund, lost disputes, customers with a
    user id. Subscriptions are compared whatever their status."""
    match phase:
        case "subscriptions":
            return obj
        case "sessions":
            return _paid_session(obj)
        case "payments":
            metadata = obj.get("metadata")
            grants = isinstance(metadata, Mapping) and any(
                metadata.get(key) for key in ("features", "product_id", "product")
            )
            return obj if obj.get("status") == "succeeded" and grants else None
        case "refunds":
            charge = obj.get("charge")
            return charge if isinstance(charge, Mapping) and charge.get("object") == "charge" else None
        case "disputes":
            return obj if obj.get("status") == "lost" else None
        case "customers":
            metadata = obj.get("metadata")
            named = isinstance(metadata, Mapping) and bool(metadata.get(user_id_key))
            return obj if named and not obj.get("deleted") else None
        case _:
            raise ValueError(f"no backfill list for phase {phase!r}")


def _paid_session(obj: Json) -> Json | None:
    if obj.get("status") != "complete":
        return None
    if obj.get("mode") == "subscription":
        return obj if obj.get("client_reference_id") else None
    if obj.get("mode") != "payment" or obj.get("payment_status") not in ("paid", "no_payment_required"):
        return None
    lines = obj.get("line_items")
    if isinstance(lines, Mapping) and lines.get("has_more"):
        # Only the first page came expanded: let the worker fetch them all rather than grant a part.
        return {key: value for key, value in obj.items() if key != "line_items"}
    return obj


BACKFILL_KINDS: dict[str, RecordKind] = {
    "subscriptions": "subscription",
    "sessions": "purchase",
    "payments": "payment",
    "refunds": "charge",
    "disputes": "dispute",
    "customers": "profile",
}
