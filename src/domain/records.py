"""What the table remembers about a customer: one record per Stripe object, each a snapshot stamped
with the event (or fetch) that produced it.

Every record carries a `Stamp`. An incoming snapshot replaces a stored one only when its stamp is newer,
so events can arrive in any order and any number of times and the table still ends where the newest
snapshot says. Records are plain data: parsing lives in `domain.stripe_objects`, rules in
`domain.entitlements`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

RecordKind = Literal[
    "profile",
    "subscription",
    "invoice",
    "purchase",
    "payment",
    "charge",
    "refund",
    "dispute",
    "entitlement_summary",
]


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """Which event made a snapshot: its `created` (or the fetch time), a tie rank and the event id.

    Ordering is total and independent of arrival order: `created` first; within one second the
    snapshot's lifecycle rank (see `domain.stripe_objects.rank_of`); the event id last.
    """

    created: int
    rank: int
    event_id: str

    def is_tie_with(self, other: Stamp) -> bool:
        """Same second, different event: Stripe's `created` cannot order them."""
        return self.created == other.created and self.event_id != other.event_id


@dataclass(frozen=True, slots=True)
class SubscriptionItem:
    price_id: str  # the price, or the plan of API versions before prices
    product_id: str | None  # None for a plan of an API version before 2018-02-05 (no products then)
    lookup_key: str | None
    quantity: int | None
    usage_type: str  # licensed | metered
    current_period_start: int | None
    current_period_end: int | None


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    kind: ClassVar[RecordKind] = "subscription"
    id: str
    customer_id: str
    livemode: bool
    status: str
    items: tuple[SubscriptionItem, ...]
    current_period_start: int | None
    current_period_end: int | None
    trial_start: int | None
    trial_end: int | None
    cancel_at_period_end: bool
    cancel_at: int | None
    canceled_at: int | None
    ended_at: int | None
    pause_behavior: str | None  # pause_collection.behavior while payment collection is paused
    pause_resumes_at: int | None
    latest_invoice_id: str | None
    created: int
    # Fields added later keep defaults, so that bodies stored by older code still load.
    collection_method: str | None = None  # charge_automatically | send_invoice
    days_until_due: int | None = None  # send_invoice: the invoice is due this many days after it is sent
    # Stripe's time of the snapshot (event created, or fetch time): compared with an Entitlements
    # summary's to tell which of the two knows better. None: stored by older code.
    as_of: int | None = None


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    kind: ClassVar[RecordKind] = "invoice"
    id: str
    customer_id: str
    livemode: bool
    subscription_id: str | None
    status: str  # draft | open | paid | void | uncollectible
    amount_due: int
    amount_remaining: int
    attempt_count: int
    due_date: int | None
    billing_reason: str | None
    created: int
    as_of: int  # Stripe's time of the snapshot (event created): "overdue" is judged against it
    collection_method: str | None = None  # charge_automatically | send_invoice
    finalized_at: int | None = None  # status_transitions.finalized_at: the first charge attempt
    next_payment_attempt: int | None = None  # None once Stripe stopped retrying
    paid_at: int | None = None  # status_transitions.paid_at: when the subscription was last paid up

    @property
    def is_unpaid_problem(self) -> bool:
        """Open, money owed, and either a payment attempt failed or the due date has passed."""
        if self.status != "open" or self.amount_remaining <= 0:
            return False
        return self.attempt_count > 0 or (self.due_date is not None and self.due_date <= self.as_of)

    @property
    def problem_started(self) -> int:
        """When not paying this invoice became a problem, in Stripe's time: a `send_invoice` invoice
        on its due date; an automatically charged one at its first charge attempt, which Stripe makes
        when it finalizes the invoice."""
        if self.collection_method == "send_invoice" and self.due_date is not None:
            return self.due_date
        return self.finalized_at or self.created


@dataclass(frozen=True, slots=True)
class PurchasedItem:
    product_id: str | None
    price_id: str | None
    lookup_key: str | None
    quantity: int | None


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    """A Checkout session. In `payment` mode it is a one-time purchase; in `subscription` mode it only
    links the application's user to the customer (the subscription grants the access)."""

    kind: ClassVar[RecordKind] = "purchase"
    id: str
    customer_id: str | None
    livemode: bool
    mode: str  # payment | subscription | setup
    status: str | None  # open | complete | expired
    payment_status: str | None  # paid | unpaid | no_payment_required
    payment_intent_id: str | None
    subscription_id: str | None
    client_reference_id: str | None
    created: int
    line_items: tuple[PurchasedItem, ...] | None  # None: not fetched (no API key)
    # Fallbacks when the line items are unknown: metadata["features"] (comma-separated), else
    # metadata["product_id"], mapped like a line item of that product.
    metadata_features: tuple[str, ...]
    metadata_product_id: str | None = None
    # Stripe's time of the first event that showed the session paid (an async payment settles days
    # after the session was created): a purchase's term counts from it. None: not known (fetched).
    paid_at: int | None = None

    @property
    def term_starts(self) -> int:
        return self.paid_at if self.paid_at is not None else self.created

    @property
    def is_paid(self) -> bool:
        return self.status == "complete" and self.payment_status in ("paid", "no_payment_required")


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A PaymentIntent. Grants only what its metadata names (a PaymentIntent carries no products)."""

    kind: ClassVar[RecordKind] = "payment"
    id: str
    customer_id: str | None
    livemode: bool
    status: str
    created: int
    metadata_features: tuple[str, ...]
    metadata_product_id: str | None


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    kind: ClassVar[RecordKind] = "charge"
    id: str
    customer_id: str | None
    livemode: bool
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    refunded: bool  # fully refunded
    # The refunds the charge embeds (API versions before 2022-11-15, or when expanded).
    refunds: tuple[RefundState, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundState:
    id: str
    amount: int
    status: str  # pending | requires_action | succeeded | failed | canceled

    @property
    def reversed(self) -> bool:
        """A refund that failed or was canceled gives the money (and the access) back."""
        return self.status in ("failed", "canceled")


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """A Refund object (`charge.refund.updated`, `refund.*`): it names a charge, rarely a customer."""

    kind: ClassVar[RecordKind] = "refund"
    id: str
    customer_id: str | None
    livemode: bool
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    status: str


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    kind: ClassVar[RecordKind] = "dispute"
    id: str
    customer_id: str | None
    livemode: bool
    charge_id: str | None
    payment_intent_id: str | None
    status: str  # warning_needs_response … won | lost
    # Stripe's time the dispute was first seen lost: it keeps revoking until Stripe says `won`.
    lost_at: int | None = None

    @property
    def revokes(self) -> bool:
        return self.status == "lost" or (self.lost_at is not None and self.status != "won")


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    kind: ClassVar[RecordKind] = "profile"
    id: str
    livemode: bool
    email: str | None
    user_id: str | None  # the application's own user id, from the customer's metadata
    deleted: bool


@dataclass(frozen=True, slots=True)
class EntitlementSummaryRecord:
    """Stripe Entitlements' active entitlements of a customer: when present, the truth for its
    subscription features."""

    kind: ClassVar[RecordKind] = "entitlement_summary"
    id: str  # the customer id: one summary per customer
    customer_id: str
    livemode: bool
    lookup_keys: tuple[str, ...]
    complete: bool  # False when Stripe said has_more and the rest could not be fetched
    as_of: int | None = None  # Stripe's time of the snapshot (event created, or fetch time)


Record = (
    SubscriptionRecord
    | InvoiceRecord
    | PurchaseRecord
    | PaymentRecord
    | ChargeRecord
    | RefundRecord
    | DisputeRecord
    | ProfileRecord
    | EntitlementSummaryRecord
)

RECORD_TYPES: dict[RecordKind, type[Record]] = {
    "profile": ProfileRecord,
    "subscription": SubscriptionRecord,
    "invoice": InvoiceRecord,
    "purchase": PurchaseRecord,
    "payment": PaymentRecord,
    "charge": ChargeRecord,
    "refund": RefundRecord,
    "dispute": DisputeRecord,
    "entitlement_summary": EntitlementSummaryRecord,
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A record as of one stamp: the unit that is stored, compared and replaced."""

    record: Record
    stamp: Stamp
    customer_id: str | None = field(default=None)
    account: str | None = None  # the Connect account the object lives in: fetch it with that account

    @property
    def key(self) -> tuple[RecordKind, str]:
        return (self.record.kind, self.record.id)


def record_to_dict(record: Record) -> dict[str, Any]:
    return asdict(record)


def record_from_dict(kind: RecordKind, data: dict[str, Any]) -> Record:
    """Inverse of `record_to_dict` (tuples come back from JSON as lists). Bodies stored before a field
    was added load with that field's default."""
    values = dict(data)
    match kind:
        case "subscription":
            values["items"] = tuple(SubscriptionItem(**item) for item in values["items"])
        case "purchase":
            items = values.get("line_items")
            values["line_items"] = None if items is None else tuple(PurchasedItem(**i) for i in items)
            values["metadata_features"] = tuple(values.get("metadata_features") or ())
        case "payment":
            values["metadata_features"] = tuple(values.get("metadata_features") or ())
        case "charge":
            values["refunds"] = tuple(RefundState(**r) for r in values.get("refunds") or ())
        case "entitlement_summary":
            values["lookup_keys"] = tuple(values["lookup_keys"])
        case _:
            pass
    return RECORD_TYPES[kind](**values)
