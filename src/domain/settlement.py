"""Which stored records can still drift from Stripe, so that a reconcile pass reads only those.

A record that has settled (a paid or expired one-time purchase, a payment that succeeded or was
canceled, a closed dispute, a subscription in a final status, an invoice, a charge, a refund) changes
access only through a later object that the pass's lists and event pages find: it leaves the set the
records phase reads, and the table's history stops costing each pass anything. A record is written
with the mark (`adapters.sync_table`'s `drift_check`) exactly when `can_drift` says so, and loses it
with the write that settles it.
"""

from __future__ import annotations

from domain.records import (
    DisputeRecord,
    EntitlementSummaryRecord,
    PaymentRecord,
    PurchaseRecord,
    Record,
    SubscriptionRecord,
)

# Payment intents that can no longer change in a way that matters for access.
SETTLED_PAYMENT_INTENT_STATUSES = frozenset({"succeeded", "canceled"})
# Disputes that can no longer change what they take back.
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
# Subscriptions Stripe never moves out of these statuses.
FINAL_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})


def purchase_is_settled(purchase: PurchaseRecord) -> bool:
    """Expired, or complete and paid (refunds and disputes arrive as charges and disputes)."""
    return purchase.status == "expired" or (
        purchase.status == "complete" and purchase.payment_status in ("paid", "no_payment_required")
    )


def can_drift(record: Record) -> bool:
    """Whether a reconcile pass must read this record: a one-time purchase, a payment or a dispute
    not settled yet, a subscription not in a final status (the list may leave it out: test clocks,
    deleted objects), any Stripe Entitlements summary (verified against the active entitlements each
    pass)."""
    match record:
        case SubscriptionRecord():
            return record.status not in FINAL_SUBSCRIPTION_STATUSES
        case PurchaseRecord():
            return record.mode == "payment" and not purchase_is_settled(record)
        case PaymentRecord():
            return record.status not in SETTLED_PAYMENT_INTENT_STATUSES
        case DisputeRecord():
            return record.status not in CLOSED_DISPUTE_STATUSES
        case EntitlementSummaryRecord():
            return True
    return False


def pass_learns_account(account: str | None) -> bool:
    """Whether a customer's entitlements item is read by each pass too: a Connect customer's, one item
    per customer whatever its history. The records phase is where a pass learns which connected
    accounts have customers, and so whose lists it pages; a customer whose records have all settled
    still has its account's refunds and disputes to be listed."""
    return account is not None
