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
from enum import StrEnum
from typing import Any, Literal

from domain.credentials import MODES, Mode
from domain.records import PaymentRecord, PurchaseRecord, Record, RecordKind, Snapshot
from domain.stripe_objects import record_of

Json = Mapping[str, Any]

FETCHED_EVENT_TYPE = "sync.fetched"
DEFAULT_TIME_BUDGET_SECONDS = 780.0  # of Lambda's 900 s: time left to save the cursor and report
DEFAULT_MAX_REQUESTS_PER_SECOND = 20.0  # Stripe allows 100 reads/s in live mode, 25 in test mode
MAX_REPORTED_DRIFTS = 100  # the report names this many drifted objects; the counts are complete
MAX_REPORTED_MESSAGES = 20
OUT_OF_TIME = "time budget"  # ReconcileReport.stopped when the run's time ran out (not an error)
# 429s: waits whose ceiling doubles from 1 s to 32 s (half of it jitter); after 8 waits (~2 min) the run stops.
RATE_LIMIT_FIRST_WAIT_SECONDS = 1.0
RATE_LIMIT_LONGEST_WAIT_SECONDS = 32.0
RATE_LIMIT_MAX_RETRIES = 8

# Payment intents and Checkout sessions that can no longer change in a way that matters for access.
SETTLED_PAYMENT_INTENT_STATUSES = frozenset({"succeeded", "canceled"})
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


def drift_of(kind: RecordKind, fetched: Json, stored: Snapshot | None, fetched_at: int) -> DriftKind | None:
    """How the stored snapshot differs from the object Stripe returned at `fetched_at` (epoch seconds).

    None when they agree, and when the stored snapshot was made by an event later than the fetch:
    it is newer than what we saw. Raises MalformedEvent for an object that cannot be parsed.
    """
    record = record_of(kind, fetched, as_of=fetched_at)
    if stored is None:
        return DriftKind.MISSING
    if stored.stamp.created > fetched_at:
        return None
    return None if same_record(record, stored.record) else DriftKind.STALE


def same_record(fetched: Record, stored: Record) -> bool:
    """Every field the records keep, except what the worker adds on top of the API's answer: the
    Checkout line items it fetched once and carries over to later snapshots of the session."""
    if (
        isinstance(fetched, PurchaseRecord)
        and isinstance(stored, PurchaseRecord)
        and fetched.line_items is None
    ):
        fetched = replace(fetched, line_items=stored.line_items)
    return fetched == stored


def object_to_verify(record: Record) -> str | None:
    """The Stripe object type to fetch by id for a stored record outside the subscription list:
    one-time purchases (Checkout in payment mode) and payments that have not settled yet."""
    if isinstance(record, PurchaseRecord):
        return "checkout.session" if record.mode == "payment" and not purchase_is_settled(record) else None
    if isinstance(record, PaymentRecord):
        return None if record.status in SETTLED_PAYMENT_INTENT_STATUSES else "payment_intent"
    return None


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


Scope = Everything | OneCustomer


class InvalidRequest(ValueError):
    """A run request or a setting the reconciler cannot use (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    scope: Scope
    dry_run: bool


def run_request(event: object, *, dry_run_default: bool = False) -> RunRequest:
    """The Lambda event -> what to do: `{"dry_run": true}`, `{"customer": "cus_…"}`, both, or any
    other event (the schedule's) for a full run."""
    if event is None:
        return RunRequest(Everything(), dry_run_default)
    if not isinstance(event, Mapping):
        raise InvalidRequest("the event must be a JSON object")
    dry_run = event.get("dry_run", dry_run_default)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run must be true or false")
    customer = event.get("customer")
    if customer is None:
        return RunRequest(Everything(), dry_run)
    if not isinstance(customer, str) or not _CUSTOMER_ID.match(customer):
        raise InvalidRequest("customer must be a Stripe customer id such as cus_…")
    return RunRequest(OneCustomer(customer), dry_run)


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    requeue_failed_events: bool = False
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


@dataclass(frozen=True, slots=True)
class Counts:
    checked: int = 0  # Stripe objects compared with their records
    missing: int = 0
    stale: int = 0
    extra: int = 0
    repaired: int = 0  # repairs queued (none in a dry run)
    not_found: int = 0  # records whose object Stripe answers 404 for: reported, never changed
    skipped: int = 0  # records of a mode with no API key configured
    errors: int = 0  # objects that could not be compared, and runs stopped by an error
    failed_events: int = 0  # events Stripe could not deliver to every endpoint
    events_requeued: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Counts)))

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.extra

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        """From a stored cursor; counters it does not know (an older or newer shape) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: int(value) for name, value in data.items() if name in known})

    @classmethod
    def of_drift(cls, kind: DriftKind) -> Counts:
        return cls(**{str(kind): 1})


PhaseKind = Literal["subscriptions", "records", "events"]
DONE = "done"
RECORDS_PHASE = "records"


def pass_phases(modes: Sequence[Mode]) -> tuple[str, ...]:
    """A full pass: the subscription list of each mode, then the table's records (those the lists
    left out, and unsettled purchases), then the events whose delivery failed, of each mode."""
    ordered = [mode for mode in MODES if mode in modes]
    return (
        *(f"subscriptions:{mode}" for mode in ordered),
        RECORDS_PHASE,
        *(f"events:{mode}" for mode in ordered),
    )


def phase_parts(phase: str) -> tuple[PhaseKind, Mode | None]:
    kind, _, mode = phase.partition(":")
    if kind == RECORDS_PHASE and not mode:
        return "records", None
    if kind in ("subscriptions", "events") and mode in MODES:
        return kind, mode  # type: ignore[return-value]
    raise ValueError(f"unknown reconcile phase {phase!r}")


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

    @property
    def done(self) -> bool:
        return self.phase == DONE

    @classmethod
    def start(cls, pass_id: str, phases: tuple[str, ...], now: int, version: int | None) -> PassCursor:
        if not phases:
            raise ValueError("a pass has at least one phase")
        return cls(pass_id, phases, phases[0], None, 0, now, now, Counts(), version=version)

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

    scope: str  # "everything", or the customer id
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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the log line, the Lambda's answer and the ops CLI."""
        return {
            "scope": self.scope,
            "dry_run": self.dry_run,
            **self.counts.as_dict(),
            "drift": self.counts.drift,
            "pages": self.pages,
            "stripe_requests": self.stripe_requests,
            "rate_limited": self.rate_limited,
            "complete": self.complete,
            "stopped": self.stopped,
            "pass_id": self.pass_id,
            "phase": self.phase,
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
