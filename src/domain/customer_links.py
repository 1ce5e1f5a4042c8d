"""What ties a customer to others in the table: the application users it answers for (a profile's
user id, a purchase's client_reference_id), the payments a dispute or refund finds it by, and its
Connect account. Pure: read from snapshots and live records."""

from __future__ import annotations

from domain.live_records import LiveRecords
from domain.records import ChargeRecord, DisputeRecord, ProfileRecord, PurchaseRecord, RefundRecord, Snapshot
from domain.sync_ports import UserLink


def user_links(
    snapshot: Snapshot, previous: Snapshot | None
) -> tuple[tuple[UserLink, ...], tuple[UserLink, ...]]:
    """The users a new snapshot of a profile or purchase links the customer to, and those a profile
    unlinks it from (the user its previous snapshot named)."""
    record = snapshot.record
    user_id = None
    if isinstance(record, ProfileRecord) and not record.deleted:
        user_id = record.user_id
    elif isinstance(record, PurchaseRecord):
        user_id = record.client_reference_id
    old = None
    if previous is not None:
        prev = previous.record
        old = prev.user_id if isinstance(prev, ProfileRecord) else getattr(prev, "client_reference_id", None)
    link = (UserLink(user_id, record.livemode),) if user_id and user_id != old else ()
    # A customer whose metadata names another user (or no user, or who was deleted) no longer
    # answers for the old one; purchases only ever add links.
    unlink: tuple[UserLink, ...] = ()
    if isinstance(record, ProfileRecord) and old and old != user_id:
        unlink = (UserLink(old, record.livemode),)
    return link, unlink


def payment_links(snapshot: Snapshot, previous: Snapshot | None) -> tuple[str, ...]:
    """PaymentIntent (and charge) -> customer lookups, so that a dispute or a refund (which name no
    customer) find one."""
    if previous is not None:
        return ()
    record = snapshot.record
    if isinstance(record, DisputeRecord | RefundRecord):
        return ()
    intent = getattr(record, "payment_intent_id", None)
    if record.kind == "payment":
        intent = record.id
    links = [intent] if isinstance(intent, str) else []
    if isinstance(record, ChargeRecord):
        links.append(record.id)
    return tuple(links)


def account_of(live: LiveRecords) -> str | None:
    """The Connect account the customer's records live in (one per customer: ids are per account)."""
    return next((s.account for s in live.snapshots.values() if s.account), None)


def user_of(live: LiveRecords) -> str | None:
    """The application's user id the customer's profile names (None once the customer is deleted)."""
    for snapshot in live.snapshots.values():
        record = snapshot.record
        if isinstance(record, ProfileRecord):
            return None if record.deleted else record.user_id
    return None
