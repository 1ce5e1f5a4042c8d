"""What counts as drift: a record compared with the object Stripe returns now, an event Stripe lists
compared with the table, and which stored records are worth fetching by id at all.

Pure: the pass (domain.reconcile.run) reads Stripe and the table through its ports and asks these
rules what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from domain.records import (
    DisputeRecord,
    EntitlementSummaryRecord,
    PaymentRecord,
    PurchaseRecord,
    Record,
    RecordKind,
    Snapshot,
    SubscriptionRecord,
)
from domain.settlement import (
    CLOSED_DISPUTE_STATUSES,
    SETTLED_PAYMENT_INTENT_STATUSES,
    purchase_is_settled,
)
from domain.stripe_objects import record_of

Json = Mapping[str, Any]


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
        # When it was paid, as the worker keeps it (the event that showed it, or the payment's charge).
        fetched = replace(fetched, paid_at=stored.paid_at if stored.paid_at is not None else fetched.paid_at)
    if isinstance(fetched, DisputeRecord) and isinstance(stored, DisputeRecord):
        if fetched.customer_id is None:
            fetched = replace(fetched, customer_id=stored.customer_id)
        if fetched.status != "won" and fetched.lost_at is None:
            fetched = replace(fetched, lost_at=stored.lost_at)  # when it was lost, as the worker keeps it
    if isinstance(fetched, SubscriptionRecord | EntitlementSummaryRecord) and type(fetched) is type(stored):
        fetched = replace(fetched, as_of=stored.as_of)  # the snapshot's time, not the object's state
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


def customer_of_object(obj: Json) -> str | None:
    """`customer`, else `customer_account` (Accounts v2), as an id whether expanded or not."""
    for field_name in ("customer", "customer_account"):
        value = obj.get(field_name)
        if isinstance(value, Mapping):
            value = value.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def event_drift(event: Json, applied: bool, stored: Snapshot | None) -> bool:
    """Whether an event Stripe lists is missing from the table: not in the ledger, and its object's
    record (when the event's object names its customer) is older than the event."""
    if applied:
        return False
    created = event.get("created")
    return not (stored is not None and isinstance(created, int) and stored.stamp.created >= created)
