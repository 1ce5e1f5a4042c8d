"""A full pass and a backfill as phases (per mode and Connect account), where a pass stands (its
cursor), and the counters it keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from domain.credentials import MODES, Mode
from domain.reconcile.drift import DriftKind
from domain.stripe_objects import OBJECT_KINDS

EVENT_DAYS = 30  # Stripe keeps events (and lists them) for 30 days
DAY = 86_400
# A pass's event lists start this long before the previous pass started: an event created just before
# can reach the list a moment late.
CHECKPOINT_OVERLAP_SECONDS = 300


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
    not_found: int = 0  # records whose object Stripe answers 404 for: reported; a subscription ends
    skipped: int = 0  # records of a mode with no API key, objects that name no customer
    errors: int = 0  # objects that could not be compared, phases Stripe failed, runs stopped by an error
    phases_skipped: int = 0  # phases left for the next pass (ReconcileReport.skipped says why)
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
