"""Stripe events and objects -> snapshots, across API versions.

Dispatch is on `data.object.object`, never on the event type's prefix (`customer.*` also covers
discounts, sources and tax ids). Shapes differ by API version and all of them are read here:
* the billing period is on the subscription before 2025-03-31 and on each item since;
* an invoice names its subscription in `subscription` (older) or `parent.subscription_details`;
* a customer is a `customer` (`cus_…`) or, with Accounts v2, a `customer_account`;
* an item has `price` (and, in older versions, the same data again as `plan`); a plan of a version
  before 2018-02-05 names no product (its `id` and `name` are its identity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from domain.records import (
    ChargeRecord,
    DisputeRecord,
    EntitlementSummaryRecord,
    InvoiceRecord,
    PaymentRecord,
    ProfileRecord,
    PurchasedItem,
    PurchaseRecord,
    Record,
    RecordKind,
    RefundRecord,
    RefundState,
    Snapshot,
    Stamp,
    SubscriptionItem,
    SubscriptionRecord,
)

Json = Mapping[str, Any]


class MalformedEvent(ValueError):
    """The message is not a Stripe event this system can read (it goes to the DLQ, never dropped)."""


class _MissingField(ValueError):
    """Something the rules need is absent (a safe message: it quotes no value)."""


class NotAtStripe(LookupError):
    """Stripe answers 404 `resource_missing`: it has no such object (or event) any more. An answer,
    not a failure: the object is gone (see `gone_object`)."""


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    created: int
    livemode: bool
    account: str | None
    object: Json | None  # None for thin events and events queued by reference
    fetched: bool  # a snapshot the reconciler or an operator fetched from the API
    related_object: tuple[str, str] | None  # (object type, id) of a thin event
    thin: bool = False  # a v2 event notification (`v2.core.event`): read it at /v2/core/events/{id}


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that changes no record; acknowledged and counted."""

    reason: str


@dataclass(frozen=True, slots=True)
class NeedsFetch:
    """The event does not carry the object (thin, or too large for the queue): fetch it first."""

    event_id: str
    related_object: tuple[str, str] | None  # thin event: fetch this object; else fetch the event


OBJECT_KINDS: dict[str, RecordKind] = {
    "subscription": "subscription",
    "invoice": "invoice",
    "checkout.session": "purchase",
    "payment_intent": "payment",
    "charge": "charge",
    "refund": "refund",
    "dispute": "dispute",
    "customer": "profile",
    "entitlements.active_entitlement_summary": "entitlement_summary",
}
# The Stripe object type behind each record kind, for fetching it back from the API.
STRIPE_OBJECT_OF: dict[RecordKind, str] = {kind: obj for obj, kind in OBJECT_KINDS.items()}


def parse_event(body: Json) -> StripeEvent:
    if not isinstance(body, Mapping) or body.get("object") not in ("event", "v2.core.event"):
        raise MalformedEvent("not a Stripe event")
    event_id, event_type = body.get("id"), body.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise MalformedEvent("event without id or type")
    created = _created_seconds(body.get("created"))
    data = body.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if obj is not None and not isinstance(obj, Mapping):
        raise MalformedEvent("data.object is not an object")
    related = body.get("related_object")
    related_object = None
    if isinstance(related, Mapping) and isinstance(related.get("id"), str):
        related_object = (str(related.get("type") or ""), related["id"])
    account = body.get("account") or _context_account(body.get("context"))
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        livemode=bool(body.get("livemode")),
        account=account if isinstance(account, str) else None,
        object=obj,
        fetched=bool(body.get("fetched")),
        related_object=related_object,
        thin=body.get("object") == "v2.core.event",
    )


def snapshot_of(event: StripeEvent, user_id_key: str = "user_id") -> Snapshot | Ignored | NeedsFetch:
    """The record an event's object becomes, stamped with the event."""
    if event.type in ("invoice.upcoming", "v1.invoice.upcoming"):
        return Ignored("invoice.upcoming is a preview")
    if event.object is None:
        return NeedsFetch(event.id, event.related_object)
    obj_type = event.object.get("object")
    kind = OBJECT_KINDS.get(obj_type) if isinstance(obj_type, str) else None
    if kind is None:
        return Ignored(f"object {obj_type!r} is not tracked")
    if kind != "profile" and event.object.get("deleted") is True and not _customer(event.object):
        # `{"id", "object", "deleted": true}` of a deleted draft invoice: nothing that grants access.
        return Ignored(f"deleted {obj_type} stub")
    record = record_of(
        kind, event.object, event_type=event.type, as_of=event.created, user_id_key=user_id_key
    )
    record = with_event_mode(record, event.object, event.livemode)
    if isinstance(record, PurchaseRecord) and record.is_paid and not event.fetched:
        record = replace(record, paid_at=min(event.created, record.paid_at or event.created))
    if isinstance(record, DisputeRecord) and record.status == "lost":
        record = replace(record, lost_at=event.created)
    stamp = Stamp(event.created, rank_of(record, event.type), event.id)
    return Snapshot(record, stamp, customer_of(record), event.account)


def gone_object(kind: RecordKind, object_id: str, customer_id: str | None, livemode: bool) -> Json | None:
    """What an object Stripe answers 404 for means, as Stripe's own deleted stub (`{"id", "object",
    "deleted": true}`), for the kinds whose deletion changes access: a customer removed (its access
    ends), a subscription gone with its deleted test clock or customer (it grants nothing: ended), a
    deleted draft invoice (it flags nothing). None for the others: money that moved stays moved, and
    refunds and disputes change only by their own events; a 404 for them changes nothing."""
    if kind == "profile":
        return {"id": object_id, "object": "customer", "deleted": True, "livemode": livemode}
    if customer_id is None:
        return None
    if kind == "subscription":
        return {
            "id": object_id,
            "object": "subscription",
            "customer": customer_id,
            "deleted": True,
            "status": "canceled",
            "livemode": livemode,
        }
    if kind == "invoice":  # only drafts can be deleted: it reads as a draft, which flags nothing
        return {
            "id": object_id,
            "object": "invoice",
            "customer": customer_id,
            "deleted": True,
            "livemode": livemode,
        }
    return None


def with_event_mode(record: Record, obj: Json, livemode: bool) -> Record:
    """A deleted object (`{"id", "object", "deleted": true}`) carries no `livemode`: it keeps the
    mode of the event (or the API key) it came with."""
    if "livemode" in obj or record.livemode == livemode:
        return record
    return replace(record, livemode=livemode)


def record_of(
    kind: RecordKind, obj: Json, *, event_type: str = "", as_of: int = 0, user_id_key: str = "user_id"
) -> Record:
    """Parse one Stripe object. Missing required fields raise MalformedEvent."""
    try:
        if kind == "profile":
            return _profile(obj, event_type, user_id_key)
        return _PARSERS[kind](obj, event_type, as_of)
    # The message is logged: it names what is missing, never a value from the payload (a ValueError
    # from int() would quote it, and a payload carries personal data).
    except _MissingField as error:
        raise MalformedEvent(f"{kind} object: {error}") from None
    except KeyError as error:
        raise MalformedEvent(f"{kind} object: no {error}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise MalformedEvent(
            f"{kind} object: a field has an unexpected type ({type(error).__name__})"
        ) from None


def customer_of(record: Record) -> str | None:
    if isinstance(record, ProfileRecord):
        return record.id
    return record.customer_id


def rank_of(record: Record, event_type: str = "") -> int:
    """Lifecycle rank that orders two snapshots of one object made in the same second.

    Used only without an API key (with one, a tie is settled by fetching the object). Later states
    of a lifecycle rank higher, so the burst of events at signup settles on the later state.
    """
    match record:
        case SubscriptionRecord(status=status):
            return _SUBSCRIPTION_RANK.get(status, 0)
        case InvoiceRecord(status=status, attempt_count=attempts):
            return _INVOICE_RANK.get(status, 0) * 100 + min(attempts, 99)
        case PurchaseRecord(status=status, payment_status=payment_status):
            return (
                _SESSION_RANK.get(status or "", 0) * 10
                + (2 if payment_status == "paid" else 0)
                + (1 if event_type.startswith("checkout.session.async_payment") else 0)
            )
        case PaymentRecord(status=status):
            return _PAYMENT_INTENT_RANK.get(status, 0)
        case ChargeRecord(amount_refunded=refunded):
            return min(refunded, 10**9)
        case RefundRecord(status=status):
            return 2 if status in ("failed", "canceled") else 1
        case DisputeRecord(status=status):
            return 2 if status in ("won", "lost") else 1
        case ProfileRecord(deleted=deleted):
            return 1 if deleted else 0
        case _:
            return 0


_SUBSCRIPTION_RANK = {
    "incomplete": 1,
    "trialing": 2,
    "active": 3,
    "past_due": 4,
    "unpaid": 5,
    "paused": 6,
    "incomplete_expired": 7,
    "canceled": 8,
}
_INVOICE_RANK = {"draft": 1, "open": 2, "uncollectible": 3, "paid": 4, "void": 4}
_SESSION_RANK = {"open": 1, "expired": 2, "complete": 3}
_PAYMENT_INTENT_RANK = {
    "requires_payment_method": 1,
    "requires_confirmation": 2,
    "requires_action": 3,
    "processing": 4,
    "requires_capture": 5,
    "canceled": 6,
    "succeeded": 6,
}


def _subscription(obj: Json, _event_type: str, as_of: int) -> SubscriptionRecord:
    items = tuple(_subscription_item(item) for item in _list_data(obj.get("items")))
    if not items and isinstance(obj.get("plan"), Mapping):
        # Before subscription items (API versions before 2016-2017): one plan and a quantity.
        items = (_subscription_item({"plan": obj["plan"], "quantity": obj.get("quantity")}),)
    # Since 2025-03-31 the period is per item; the subscription's own fields are the older shape.
    starts = [i.current_period_start for i in items if i.current_period_start is not None]
    ends = [i.current_period_end for i in items if i.current_period_end is not None]
    pause = obj.get("pause_collection")
    return SubscriptionRecord(
        id=_id(obj),
        customer_id=_required_customer(obj),
        livemode=bool(obj.get("livemode")),
        status=str(obj["status"]),
        items=items,
        current_period_start=_int_or_none(obj.get("current_period_start"))
        or (min(starts) if starts else None),
        current_period_end=_int_or_none(obj.get("current_period_end")) or (max(ends) if ends else None),
        trial_start=_int_or_none(obj.get("trial_start")),
        trial_end=_int_or_none(obj.get("trial_end")),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        cancel_at=_int_or_none(obj.get("cancel_at")),
        canceled_at=_int_or_none(obj.get("canceled_at")),
        ended_at=_int_or_none(obj.get("ended_at")),
        pause_behavior=str(pause["behavior"]) if isinstance(pause, Mapping) else None,
        pause_resumes_at=_int_or_none(pause.get("resumes_at")) if isinstance(pause, Mapping) else None,
        latest_invoice_id=_ref(obj.get("latest_invoice")),
        created=int(obj.get("created") or obj.get("start") or 0),
        collection_method=_str_or_none(obj.get("collection_method") or obj.get("billing")),
        days_until_due=_int_or_none(obj.get("days_until_due")),
        as_of=as_of or None,
    )


def _subscription_item(item: Json) -> SubscriptionItem:
    price = item.get("price") or item.get("plan")
    if not isinstance(price, Mapping):
        raise _MissingField("subscription item without price or plan")
    recurring = price.get("recurring")
    usage_type = recurring.get("usage_type") if isinstance(recurring, Mapping) else price.get("usage_type")
    product = _ref(price.get("product"))
    if product is None and price.get("object") != "plan":
        raise _MissingField("price without product")
    # A plan rendered for an API version before 2018-02-05 has no product: its id is its identity.
    return SubscriptionItem(
        price_id=_id(price),
        product_id=product,
        lookup_key=price.get("lookup_key") or None,
        quantity=_int_or_none(item.get("quantity")),
        usage_type=str(usage_type or "licensed"),
        current_period_start=_int_or_none(item.get("current_period_start")),
        current_period_end=_int_or_none(item.get("current_period_end")),
    )


def _invoice(obj: Json, _event_type: str, as_of: int) -> InvoiceRecord:
    transitions = _mapping(obj.get("status_transitions"))
    return InvoiceRecord(
        id=_id(obj),
        customer_id=_required_customer(obj),
        livemode=bool(obj.get("livemode")),
        subscription_id=_invoice_subscription(obj),
        status=_invoice_status(obj),
        amount_due=int(obj.get("amount_due") or 0),
        amount_remaining=int(obj.get("amount_remaining") or 0),
        attempt_count=int(obj.get("attempt_count") or 0),
        due_date=_int_or_none(obj.get("due_date")),
        billing_reason=obj.get("billing_reason"),
        created=int(obj.get("created") or obj.get("date") or 0),  # `date` before 2019-03-14
        as_of=as_of,
        collection_method=_str_or_none(obj.get("collection_method") or obj.get("billing")),
        finalized_at=_int_or_none(transitions.get("finalized_at")) or _int_or_none(obj.get("finalized_at")),
        next_payment_attempt=_int_or_none(obj.get("next_payment_attempt")),
        paid_at=_int_or_none(transitions.get("paid_at")),
    )


def _invoice_subscription(obj: Json) -> str | None:
    """`subscription` (before 2025-03-31), `parent.subscription_details.subscription` (since), else
    the subscription its lines name (`subscription`, or `parent.subscription_item_details`)."""
    subscription = _ref(obj.get("subscription"))
    if subscription is not None:
        return subscription
    parent = _mapping(obj.get("parent"))
    found = _ref(_mapping(parent.get("subscription_details")).get("subscription"))
    if found is not None:
        return found
    for line in _list_data(obj.get("lines")):
        line_parent = _mapping(line.get("parent"))
        found = _ref(line.get("subscription")) or _ref(
            _mapping(line_parent.get("subscription_item_details")).get("subscription")
        )
        if found is not None:
            return found
    return None


def _invoice_status(obj: Json) -> str:
    """`status` since 2018; older invoices say it with `paid`, `forgiven` and `closed`."""
    status = obj.get("status")
    if isinstance(status, str) and status:
        return status
    if obj.get("paid"):
        return "paid"
    if obj.get("forgiven"):
        return "uncollectible"
    if obj.get("closed"):
        return "void"
    return "open" if obj.get("attempted") or obj.get("finalized_at") else "draft"


def _purchase(obj: Json, _event_type: str, _as_of: int) -> PurchaseRecord:
    line_items = obj.get("line_items")  # absent from webhooks; present when fetched with expand
    items = None
    if isinstance(line_items, Mapping):
        items = tuple(purchased_item(line) for line in _list_data(line_items))
    metadata = _mapping(obj.get("metadata"))
    paid = obj.get("status") == "complete" and obj.get("payment_status") in ("paid", "no_payment_required")
    return PurchaseRecord(
        id=_id(obj),
        customer_id=_customer(obj),
        livemode=bool(obj.get("livemode")),
        mode=str(obj.get("mode") or "payment"),
        status=obj.get("status"),
        payment_status=obj.get("payment_status"),
        payment_intent_id=_ref(obj.get("payment_intent")),
        subscription_id=_ref(obj.get("subscription")),
        client_reference_id=obj.get("client_reference_id") or None,
        created=int(obj.get("created") or 0),
        line_items=items,
        metadata_features=_features_from_metadata(metadata),
        metadata_product_id=_metadata_product(metadata),
        paid_at=_payment_time(obj.get("payment_intent")) if paid else None,
    )


def _payment_time(payment_intent: Any) -> int | None:
    """When a session's payment was made, from its PaymentIntent when fetched expanded
    (`payment_intent.latest_charge`, or the `charges` list of API versions before 2022-11-15): the
    `created` of the charge that succeeded. A webhook names the PaymentIntent by id only: there the
    event's own time says it."""
    intent = _mapping(payment_intent)
    charges = [intent["latest_charge"]] if isinstance(intent.get("latest_charge"), Mapping) else []
    charges += _list_data(intent.get("charges"))
    times = [
        int(c["created"])
        for c in charges
        if c.get("status") == "succeeded" and _int_or_none(c.get("created"))
    ]
    return min(times) if times else None


def purchased_item(line: Json) -> PurchasedItem:
    """One Checkout line item (from `list_line_items` or an expanded session)."""
    price = _mapping(line.get("price"))
    return PurchasedItem(
        product_id=_ref(price.get("product")),
        price_id=price.get("id"),
        lookup_key=price.get("lookup_key") or None,
        quantity=_int_or_none(line.get("quantity")),
    )


def _payment(obj: Json, _event_type: str, _as_of: int) -> PaymentRecord:
    metadata = _mapping(obj.get("metadata"))
    return PaymentRecord(
        id=_id(obj),
        customer_id=_customer(obj),
        livemode=bool(obj.get("livemode")),
        status=str(obj["status"]),
        created=int(obj.get("created") or 0),
        metadata_features=_features_from_metadata(metadata),
        metadata_product_id=_metadata_product(metadata),
    )


def _charge(obj: Json, _event_type: str, _as_of: int) -> ChargeRecord:
    return ChargeRecord(
        id=_id(obj),
        customer_id=_customer(obj),
        livemode=bool(obj.get("livemode")),
        payment_intent_id=_ref(obj.get("payment_intent")),
        amount=int(obj.get("amount") or 0),
        amount_refunded=int(obj.get("amount_refunded") or 0),
        refunded=bool(obj.get("refunded")),
        refunds=tuple(
            RefundState(str(r["id"]), int(r.get("amount") or 0), str(r.get("status") or "succeeded"))
            for r in _list_data(obj.get("refunds"))
            if isinstance(r.get("id"), str)
        ),
    )


def _refund(obj: Json, _event_type: str, _as_of: int) -> RefundRecord:
    charge = obj.get("charge")
    return RefundRecord(
        id=_id(obj),
        customer_id=_customer(obj) or (_customer(charge) if isinstance(charge, Mapping) else None),
        livemode=bool(obj.get("livemode")),
        charge_id=_ref(charge),
        payment_intent_id=_ref(obj.get("payment_intent")),
        amount=int(obj.get("amount") or 0),
        status=str(obj.get("status") or "succeeded"),
    )


def _dispute(obj: Json, _event_type: str, _as_of: int) -> DisputeRecord:
    charge = obj.get("charge")
    customer = _customer(charge) if isinstance(charge, Mapping) else None  # when expanded
    return DisputeRecord(
        id=_id(obj),
        customer_id=customer,
        livemode=bool(obj.get("livemode")),
        charge_id=_ref(charge),
        payment_intent_id=_ref(obj.get("payment_intent")),
        status=str(obj["status"]),
    )


def _profile(obj: Json, event_type: str, user_id_key: str) -> ProfileRecord:
    metadata = _mapping(obj.get("metadata"))
    user_id = metadata.get(user_id_key)
    return ProfileRecord(
        id=_id(obj),
        livemode=bool(obj.get("livemode")),
        email=obj.get("email"),
        user_id=str(user_id) if user_id else None,
        deleted=event_type == "customer.deleted" or bool(obj.get("deleted")),
    )


def _entitlement_summary(obj: Json, _event_type: str, as_of: int) -> EntitlementSummaryRecord:
    entitlements = obj.get("entitlements")
    keys = sorted({str(e["lookup_key"]) for e in _list_data(entitlements) if e.get("lookup_key")})
    customer = _required_customer(obj)
    return EntitlementSummaryRecord(
        id=customer,
        customer_id=customer,
        livemode=bool(obj.get("livemode")),
        lookup_keys=tuple(keys),
        complete=not (isinstance(entitlements, Mapping) and entitlements.get("has_more")),
        as_of=as_of or None,
    )


_PARSERS: dict[RecordKind, Callable[[Json, str, int], Record]] = {
    "subscription": _subscription,
    "invoice": _invoice,
    "purchase": _purchase,
    "payment": _payment,
    "charge": _charge,
    "refund": _refund,
    "dispute": _dispute,
    "entitlement_summary": _entitlement_summary,
}


def _features_from_metadata(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    raw = metadata.get("features")
    if not isinstance(raw, str):
        return ()
    return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))


def _metadata_product(metadata: Json) -> str | None:
    product = metadata.get("product_id") or metadata.get("product")
    return str(product) if product else None


def _mapping(value: Any) -> Json:
    return value if isinstance(value, Mapping) else {}


def _id(obj: Json) -> str:
    value = obj["id"]
    if not isinstance(value, str) or not value:
        raise _MissingField("object without id")
    return value


def _ref(value: Any) -> str | None:
    """An id whether the field is a plain id or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _customer(obj: Json) -> str | None:
    return _ref(obj.get("customer")) or _ref(obj.get("customer_account"))


def _required_customer(obj: Json) -> str:
    customer = _customer(obj)
    if customer is None:
        raise _MissingField("object names no customer")
    return customer


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return None if value is None or isinstance(value, bool) else int(value)


def _list_data(value: Any) -> list[Json]:
    if isinstance(value, Mapping):
        value = value.get("data")
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _context_account(context: Any) -> str | None:
    return context if isinstance(context, str) and context.startswith("acct_") else None


def _created_seconds(value: Any) -> int:
    """`created` is epoch seconds in v1 events and an ISO-8601 string in thin (v2) events."""
    if isinstance(value, bool):
        raise MalformedEvent("event created is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError as error:
            raise MalformedEvent("event created is not a time") from error
    raise MalformedEvent("event without created")
