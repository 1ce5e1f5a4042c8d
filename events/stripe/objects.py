"""Stripe objects shaped exactly as Stripe sends them in webhooks, for tests, the demo and load tests.

Every builder returns a plain JSON-compatible dict. Ids come from an `IdFactory`, so the same
seed gives the same ids in the same order. Shapes follow the resources in Stripe's OpenAPI
fixtures (copied here, not read at run time) and two API generations:

* ``api="current"`` (2025-03-31.basil and later, here the version the pinned SDK speaks): the
  billing period lives on each subscription item; an invoice names its subscription under
  ``parent.subscription_details``; invoice lines carry ``pricing`` and ``parent``.
* ``api="legacy"`` (2024-06-20 and older): the period lives on the subscription itself, the
  invoice has top-level ``subscription`` / ``subscription_details`` / ``paid`` /
  ``payment_intent``, lines carry ``price`` and ``plan``, metered prices say ``aggregate_usage``.

Subscription items carry ``plan`` beside ``price`` in both generations: Stripe still renders it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

type JsonObject = dict[str, Any]
type ApiShape = Literal["current", "legacy"]
type SubscriptionStatus = Literal[
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused"
]
type InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
type BillingReason = Literal[
    "subscription_create",
    "subscription_cycle",
    "subscription_update",
    "subscription_threshold",
    "manual",
    "upcoming",
]
type MissingPaymentMethod = Literal["cancel", "pause", "create_invoice"]
type CheckoutMode = Literal["payment", "subscription", "setup"]
type CheckoutStatus = Literal["open", "complete", "expired"]
type CheckoutPaymentStatus = Literal["paid", "unpaid", "no_payment_required"]
type PaymentIntentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]
type DisputeStatus = Literal[
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
]

# The version the pinned stripe SDK (16.1) speaks, so objects fetched by the worker look like this.
CURRENT_API_VERSION = "2026-10-28.endive"
# The last version before basil moved periods to items and the invoice's subscription under parent.
LEGACY_API_VERSION = "2024-06-20"
# The version that introduced the "current" shape.
BASIL_API_VERSION = "2025-03-31.basil"

ACCOUNT_NAME = "Sample SaaS, Inc."
_PRICE_CREATED = 1735689600  # 2025-01-01: catalogue objects predate every sample subscription

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Length of the random part of real Stripe ids, by prefix (ids not listed use 24).
_ID_BODY_LENGTH = {"cus": 14, "prod": 14, "si": 14, "req": 14, "feat": 24, "cs_test": 58, "cs_live": 58}


def api_version_for(api: ApiShape) -> str:
    """The `api_version` an event rendered in this shape carries."""
    return CURRENT_API_VERSION if api == "current" else LEGACY_API_VERSION


def _body(material: str, length: int) -> str:
    digest = hashlib.sha256(material.encode()).digest()
    number = int.from_bytes(digest + hashlib.sha256(digest).digest())
    chars = []
    for _ in range(length):
        number, index = divmod(number, 62)
        chars.append(_BASE62[index])
    # Newer Stripe ids start with "1" followed by a time-ish part; keep that look.
    return "1" + "".join(chars)[1:] if length >= 24 else "".join(chars)


def derived_id(prefix: str, *parts: str) -> str:
    """An id that depends only on `parts`: the same subscription item or feature keeps its id."""
    length = _ID_BODY_LENGTH.get(prefix, 24)
    return f"{prefix}_{_body(':'.join((prefix, *parts)), length)}"


class IdFactory:
    """Deterministic Stripe-looking ids: the same seed gives the same ids in the same order."""

    def __init__(self, seed: str | int = 0) -> None:
        self._seed = str(seed)
        self._counter = 0

    def __call__(self, prefix: str) -> str:
        self._counter += 1
        return derived_id(prefix, self._seed, str(self._counter))

    def idempotency_key(self) -> str:
        self._counter += 1
        digest = hashlib.sha256(f"{self._seed}:idempotency:{self._counter}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))


def _stripe_order(obj: JsonObject) -> JsonObject:
    """Stripe renders `id` and `object` first, then the other keys alphabetically."""
    head = [key for key in ("id", "object") if key in obj]
    return {key: obj[key] for key in head + sorted(key for key in obj if key not in head)}


def _address() -> JsonObject:
    return {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


# --------------------------------------------------------------------------------------------
# Catalogue: prices, plans and subscription items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceSpec:
    """A recurring or one-time price of a product."""

    price_id: str
    product_id: str
    lookup_key: str | None = None
    unit_amount: int = 2000
    currency: str = "usd"
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1
    usage_type: Literal["licensed", "metered"] = "licensed"
    recurring: bool = True
    nickname: str | None = None


@dataclass(frozen=True)
class ItemSpec:
    """One subscription item. `quantity` is None for metered prices, which have no quantity."""

    price: PriceSpec
    quantity: int | None = 1
    item_id: str | None = None
    created: int | None = None


def price(spec: PriceSpec, *, livemode: bool = False, api: ApiShape = "current") -> JsonObject:
    recurring: JsonObject | None = None
    if spec.recurring:
        recurring = {
            "interval": spec.interval,
            "interval_count": spec.interval_count,
            # Metered prices are backed by a billing meter since 2024; older versions aggregate usage.
            "meter": derived_id("mtr", spec.price_id) if spec.usage_type == "metered" else None,
            "trial_period_days": None,
            "usage_type": spec.usage_type,
        }
        if api == "legacy":
            recurring["aggregate_usage"] = "sum" if spec.usage_type == "metered" else None
    return _stripe_order(
        {
            "id": spec.price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": _PRICE_CREATED,
            "currency": spec.currency,
            "custom_unit_amount": None,
            "livemode": livemode,
            "lookup_key": spec.lookup_key,
            "metadata": {},
            "nickname": spec.nickname,
            "product": spec.product_id,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if spec.recurring else "one_time",
            "unit_amount": spec.unit_amount,
            "unit_amount_decimal": str(spec.unit_amount),
        }
    )


def plan(spec: PriceSpec, *, livemode: bool = False, api: ApiShape = "current") -> JsonObject:
    """The legacy `plan` view of a recurring price (same id), still rendered on subscription items."""
    obj: JsonObject = {
        "id": spec.price_id,
        "object": "plan",
        "active": True,
        "amount": spec.unit_amount,
        "amount_decimal": str(spec.unit_amount),
        "billing_scheme": "per_unit",
        "created": _PRICE_CREATED,
        "currency": spec.currency,
        "interval": spec.interval,
        "interval_count": spec.interval_count,
        "livemode": livemode,
        "metadata": {},
        "meter": derived_id("mtr", spec.price_id) if spec.usage_type == "metered" else None,
        "nickname": spec.nickname,
        "product": spec.product_id,
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": spec.usage_type,
    }
    if api == "legacy":
        obj["aggregate_usage"] = "sum" if spec.usage_type == "metered" else None
    return _stripe_order(obj)


def subscription_item_id(subscription_id: str, price_id: str) -> str:
    """Stable item id: updating a subscription keeps its items' ids."""
    return derived_id("si", subscription_id, price_id)


def subscription_item(
    item: ItemSpec,
    *,
    subscription_id: str,
    created: int,
    period_start: int,
    period_end: int,
    livemode: bool = False,
    api: ApiShape = "current",
) -> JsonObject:
    obj: JsonObject = {
        "id": item.item_id or subscription_item_id(subscription_id, item.price.price_id),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": item.created if item.created is not None else created,
        "discounts": [],
        "metadata": {},
        "plan": plan(item.price, livemode=livemode, api=api),
        "price": price(item.price, livemode=livemode, api=api),
        "subscription": subscription_id,
        "tax_rates": [],
    }
    if item.quantity is not None:
        obj["quantity"] = item.quantity
    if api == "current":
        obj["current_period_start"] = period_start
        obj["current_period_end"] = period_end
    return _stripe_order(obj)


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------


def customer(
    ids: IdFactory,
    *,
    id: str | None = None,
    created: int,
    email: str | None = "jenny.rosen@example.com",
    name: str | None = "Jenny Rosen",
    metadata: Mapping[str, str] | None = None,
    livemode: bool = False,
    delinquent: bool = False,
    default_payment_method: str | None = None,
    customer_account: str | None = None,
    test_clock: str | None = None,
) -> JsonObject:
    customer_id = id or ids("cus")
    return _stripe_order(
        {
            "id": customer_id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": created,
            "currency": None,
            "customer_account": customer_account,
            "default_source": None,
            "delinquent": delinquent,
            "description": None,
            "discount": None,
            "email": email,
            "invoice_prefix": _body(customer_id, 8).upper()[:8],
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": default_payment_method,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": livemode,
            "metadata": dict(metadata or {}),
            "name": name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": test_clock,
        }
    )


def deleted_customer(customer_id: str) -> JsonObject:
    """What the API returns for a deleted customer (DELETE, or a later retrieve).

    The `customer.deleted` *event* carries the full customer object instead.
    """
    return {"id": customer_id, "object": "customer", "deleted": True}


# --------------------------------------------------------------------------------------------
# Subscriptions
# --------------------------------------------------------------------------------------------


def subscription(
    ids: IdFactory,
    *,
    id: str | None = None,
    customer: str | None,
    customer_account: str | None = None,
    items: Sequence[ItemSpec],
    status: SubscriptionStatus,
    created: int,
    period_start: int,
    period_end: int,
    api: ApiShape = "current",
    livemode: bool = False,
    start_date: int | None = None,
    billing_cycle_anchor: int | None = None,
    trial_start: int | None = None,
    trial_end: int | None = None,
    missing_payment_method: MissingPaymentMethod = "create_invoice",
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    cancellation_reason: Literal["cancellation_requested", "payment_disputed", "payment_failed"]
    | None = None,
    pause_collection: Mapping[str, Any] | None = None,
    latest_invoice: str | None = None,
    default_payment_method: str | None = None,
    metadata: Mapping[str, str] | None = None,
    test_clock: str | None = None,
    currency: str | None = None,
) -> JsonObject:
    if not items:
        raise ValueError("a subscription has at least one item")
    if customer is None and customer_account is None:
        raise ValueError("a subscription belongs to a customer or a customer_account")
    subscription_id = id or ids("sub")
    rendered_items = [
        subscription_item(
            item,
            subscription_id=subscription_id,
            created=created,
            period_start=period_start,
            period_end=period_end,
            livemode=livemode,
            api=api,
        )
        for item in items
    ]
    items_list: JsonObject = {
        "object": "list",
        "data": rendered_items,
        "has_more": False,
        "total_count": len(rendered_items),
        "url": f"/v1/subscription_items?subscription={subscription_id}",
    }
    obj: JsonObject = {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": billing_cycle_anchor if billing_cycle_anchor is not None else period_start,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "cancellation_details": {"comment": None, "feedback": None, "reason": cancellation_reason},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency or items[0].price.currency,
        "customer": customer,
        "customer_account": customer_account,
        "days_until_due": None,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": ended_at,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "items": items_list,
        "latest_invoice": latest_invoice,
        "livemode": livemode,
        "managed_payments": {"enabled": False},
        "metadata": dict(metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": dict(pause_collection) if pause_collection is not None else None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start_date if start_date is not None else created,
        "status": status,
        "test_clock": test_clock,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": missing_payment_method}},
        "trial_start": trial_start,
    }
    if api == "legacy":
        obj["current_period_start"] = period_start
        obj["current_period_end"] = period_end
        obj["discount"] = None
    return _stripe_order(obj)


# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------


def _line_description(item: ItemSpec, *, trial: bool) -> str:
    name = item.price.nickname or item.price.product_id
    amount = f"${item.price.unit_amount / 100:.2f}"
    if trial:
        return f"Trial period for {name}"
    if item.price.usage_type == "metered":
        return f"{name} (metered, {amount} / unit)"
    # Stripe's own wording, multiplication sign included.
    return f"{item.quantity} × {name} (at {amount} / {item.price.interval})"  # noqa: RUF001


def _invoice_line(
    item: ItemSpec,
    *,
    invoice_id: str | None,
    subscription_id: str | None,
    amount: int,
    quantity: int,
    period_start: int,
    period_end: int,
    proration: bool,
    trial: bool,
    livemode: bool,
    api: ApiShape,
) -> JsonObject:
    item_id = (
        (item.item_id or subscription_item_id(subscription_id, item.price.price_id))
        if subscription_id
        else None
    )
    # Lines of a preview (upcoming) invoice have temporary ids and belong to no invoice yet.
    seed = f"{invoice_id or 'upcoming'}:{item.price.price_id}:{period_start}"
    line_id = derived_id("il", seed) if invoice_id else derived_id("il_tmp", seed)
    obj: JsonObject = {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": item.price.currency,
        "description": _line_description(item, trial=trial),
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": livemode,
        "metadata": {},
        "period": {"end": period_end, "start": period_start},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subscription": subscription_id,
        "subtotal": amount,
    }
    if api == "current":
        obj["parent"] = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": item_id,
            },
            "type": "subscription_item_details",
        }
        obj["pretax_credit_amounts"] = []
        obj["pricing"] = {
            "price_details": {"price": item.price.price_id, "product": item.price.product_id},
            "type": "price_details",
            "unit_amount_decimal": str(item.price.unit_amount),
        }
        obj["taxes"] = []
    else:
        obj["amount_excluding_tax"] = amount
        obj["invoice_item"] = None
        obj["plan"] = plan(item.price, livemode=livemode, api=api)
        obj["price"] = price(item.price, livemode=livemode, api=api)
        obj["proration"] = proration
        obj["proration_details"] = {"credited_items": None}
        obj["subscription_item"] = item_id
        obj["tax_amounts"] = []
        obj["tax_rates"] = []
        obj["type"] = "subscription"
        obj["unit_amount_excluding_tax"] = str(item.price.unit_amount)
    return _stripe_order(obj)


def invoice(
    ids: IdFactory,
    *,
    id: str | None = None,
    customer: str | None,
    customer_account: str | None = None,
    subscription: str | None,
    items: Sequence[ItemSpec],
    status: InvoiceStatus,
    billing_reason: BillingReason,
    created: int,
    period_start: int,
    period_end: int,
    line_period_start: int | None = None,
    line_period_end: int | None = None,
    api: ApiShape = "current",
    livemode: bool = False,
    amount_due: int | None = None,
    amount_paid: int | None = None,
    metered_usage: int = 0,
    proration: bool = False,
    trial: bool = False,
    attempted: bool = False,
    attempt_count: int = 0,
    next_payment_attempt: int | None = None,
    due_date: int | None = None,
    finalized_at: int | None = None,
    paid_at: int | None = None,
    voided_at: int | None = None,
    marked_uncollectible_at: int | None = None,
    payment_intent: str | None = None,
    customer_email: str | None = "jenny.rosen@example.com",
    customer_name: str | None = "Jenny Rosen",
    customer_address: Mapping[str, str | None] | None = None,
    subscription_metadata: Mapping[str, str] | None = None,
    test_clock: str | None = None,
    upcoming: bool = False,
) -> JsonObject:
    """An invoice. `upcoming=True` renders the preview of `invoice.upcoming`, which has no id.

    `period_start`/`period_end` are the invoice's own fields, which for a renewal cover the period
    that just ended; the lines' periods (`line_period_*`, default the same) cover what is billed.
    `trial=True` renders the $0 invoice Stripe creates when a trial starts.
    """
    if customer is None and customer_account is None:
        raise ValueError("an invoice belongs to a customer or a customer_account")
    if upcoming and status != "draft":
        raise ValueError("an upcoming invoice is always a draft")
    invoice_id = None if upcoming else (id or ids("in"))
    line_start = line_period_start if line_period_start is not None else period_start
    line_end = line_period_end if line_period_end is not None else period_end
    lines = []
    for item in items:
        quantity = metered_usage if item.price.usage_type == "metered" else (item.quantity or 1)
        lines.append(
            _invoice_line(
                item,
                invoice_id=invoice_id,
                subscription_id=subscription,
                amount=0 if trial else item.price.unit_amount * quantity,
                quantity=quantity,
                period_start=line_start,
                period_end=line_end,
                proration=proration,
                trial=trial,
                livemode=livemode,
                api=api,
            )
        )
    total = sum(line["amount"] for line in lines) if amount_due is None else amount_due
    paid = amount_paid if amount_paid is not None else (total if status == "paid" else 0)
    finalized = status != "draft"
    number = f"{_body(customer or customer_account or '', 8).upper()[:8]}-{created % 10000:04d}"
    hosted = f"https://invoice.stripe.com/i/acct_1SampleAcct/test_{invoice_id}" if finalized else None
    obj: JsonObject = {
        "object": "invoice",
        "account_country": "US",
        "account_name": ACCOUNT_NAME,
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": paid,
        "amount_remaining": total - paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": attempt_count,
        "attempted": attempted,
        "auto_advance": status in ("draft", "open"),
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": created + 3600 if status == "draft" and not upcoming else None,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": items[0].price.currency if items else "usd",
        "custom_fields": None,
        "customer": customer,
        "customer_account": customer_account,
        "customer_address": dict(customer_address) if customer_address is not None else None,
        "customer_email": customer_email,
        "customer_name": customer_name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": due_date,
        "effective_at": finalized_at,
        "ending_balance": 0 if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": hosted,
        "invoice_pdf": f"{hosted}/pdf" if hosted else None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines" if invoice_id else "/v1/invoices/upcoming/lines",
        },
        "livemode": livemode,
        "metadata": {},
        "next_payment_attempt": next_payment_attempt,
        "number": number if finalized else None,
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": status,
        "status_transitions": {
            "finalized_at": finalized_at,
            "marked_uncollectible_at": marked_uncollectible_at,
            "paid_at": paid_at,
            "voided_at": voided_at,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": test_clock,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "webhooks_delivered_at": created if finalized else None,
    }
    if invoice_id is not None:
        obj["id"] = invoice_id
    sub_metadata = dict(subscription_metadata or {})
    if api == "current":
        obj["parent"] = (
            {
                "quote_details": None,
                "subscription_details": {"metadata": sub_metadata, "subscription": subscription},
                "type": "subscription_details",
            }
            if subscription
            else None
        )
        obj["total_pretax_credit_amounts"] = []
        obj["total_taxes"] = []
        if status == "uncollectible":
            # Since 2026-09-30.endive, only on uncollectible invoices.
            obj["status_details"] = {"uncollectible": {"reason": "user_forgiven"}}
    else:
        obj["application_fee_amount"] = None
        obj["charge"] = None
        obj["discount"] = None
        obj["paid"] = status == "paid"
        obj["paid_out_of_band"] = False
        obj["payment_intent"] = payment_intent
        obj["quote"] = None
        obj["subscription"] = subscription
        obj["subscription_details"] = {"metadata": sub_metadata} if subscription else None
        obj["tax"] = None
        obj["total_tax_amounts"] = []
    return _stripe_order(obj)


def invoice_subscription_id(invoice_obj: Mapping[str, Any]) -> str | None:
    """The subscription an invoice belongs to, in either shape (for tests of the samples)."""
    parent = invoice_obj.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            found = details.get("subscription")
            return found if isinstance(found, str) else None
    found = invoice_obj.get("subscription")
    return found if isinstance(found, str) else None


# --------------------------------------------------------------------------------------------
# Checkout, payments, refunds, disputes
# --------------------------------------------------------------------------------------------


def checkout_session(
    ids: IdFactory,
    *,
    id: str | None = None,
    mode: CheckoutMode,
    status: CheckoutStatus,
    payment_status: CheckoutPaymentStatus,
    customer: str | None,
    customer_account: str | None = None,
    buyer_email: str | None = "jenny.rosen@example.com",
    buyer_address: Mapping[str, str | None] | None = None,
    customer_creation: Literal["always", "if_required"] | None = None,
    client_reference_id: str | None = None,
    payment_intent: str | None = None,
    subscription: str | None = None,
    invoice: str | None = None,
    amount_total: int,
    currency: str = "usd",
    metadata: Mapping[str, str] | None = None,
    created: int,
    expires_at: int | None = None,
    livemode: bool = False,
    payment_method_types: Sequence[str] = ("card",),
) -> JsonObject:
    """A Checkout Session as webhooks carry it: without `line_items` (fetch them separately).

    `buyer_email` and `buyer_address` are what the buyer typed (`customer_details`), known once
    completed.
    """
    session_id = id or ids("cs_live" if livemode else "cs_test")
    completed = status == "complete"
    return _stripe_order(
        {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": False},
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": amount_total,
            "amount_total": amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": "https://example.com/cancel",
            "client_reference_id": client_reference_id,
            "client_secret": None,
            "collected_information": {
                "business_name": None,
                "individual_name": None,
                "shipping_details": None,
            }
            if completed
            else None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": customer,
            "customer_account": customer_account,
            "customer_creation": customer_creation,
            "customer_details": {
                "address": dict(buyer_address) if buyer_address is not None else _address(),
                "business_name": None,
                "email": buyer_email,
                "individual_name": None,
                "name": "Jenny Rosen",
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            if completed
            else None,
            "customer_email": None,
            "discounts": [],
            "expires_at": expires_at if expires_at is not None else created + 86400,
            "integration_identifier": None,
            "invoice": invoice,
            "invoice_creation": {
                "enabled": False,
                "invoice_data": {
                    "account_tax_ids": None,
                    "custom_fields": None,
                    "description": None,
                    "footer": None,
                    "issuer": None,
                    "metadata": {},
                    "rendering_options": None,
                },
            }
            if mode == "payment"
            else None,
            "livemode": livemode,
            "locale": None,
            "managed_payments": {"enabled": False},
            "metadata": dict(metadata or {}),
            "mode": mode,
            "origin_context": None,
            "payment_intent": payment_intent,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": list(payment_method_types),
            "payment_status": payment_status,
            "permissions": None,
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": status,
            "submit_type": None,
            "subscription": subscription,
            "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": None if status != "open" else f"https://checkout.stripe.com/c/pay/{session_id}",
            "wallet_options": None,
        }
    )


def checkout_line_items(
    *, session_id: str, prices: Sequence[tuple[PriceSpec, int]], livemode: bool = False
) -> JsonObject:
    """GET /v1/checkout/sessions/{id}/line_items: the list the worker fetches once per session."""
    data = []
    for spec, quantity in prices:
        amount = spec.unit_amount * quantity
        data.append(
            _stripe_order(
                {
                    "id": derived_id("li", session_id, spec.price_id),
                    "object": "item",
                    "adjustable_quantity": None,
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": spec.currency,
                    "description": spec.nickname or spec.product_id,
                    "metadata": {},
                    "price": price(spec, livemode=livemode),
                    "quantity": quantity,
                }
            )
        )
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session_id}/line_items",
    }


_DECLINE = {
    "charge": None,
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "doc_url": "https://docs.stripe.com/error-codes/card-declined",
    "message": "Your card has insufficient funds.",
    "type": "card_error",
}


def payment_intent(
    ids: IdFactory,
    *,
    id: str | None = None,
    amount: int,
    currency: str = "usd",
    customer: str | None,
    customer_account: str | None = None,
    status: PaymentIntentStatus,
    created: int,
    latest_charge: str | None = None,
    payment_method: str | None = None,
    payment_method_types: Sequence[str] = ("card",),
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    declined: bool = False,
    canceled_at: int | None = None,
    invoice: str | None = None,
    api: ApiShape = "current",
    livemode: bool = False,
) -> JsonObject:
    """A PaymentIntent. `declined=True` fills `last_payment_error` as a card decline does.

    `invoice` is rendered only in the legacy shape: basil removed it from PaymentIntents.
    """
    intent_id = id or ids("pi")
    obj: JsonObject = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": canceled_at,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{_body(intent_id, 25)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": customer_account,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": dict(_DECLINE) if declined else None,
        "latest_charge": latest_charge,
        "livemode": livemode,
        "managed_payments": {"enabled": False},
        "metadata": dict(metadata or {}),
        "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
        if status == "requires_action"
        else None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(payment_method_types),
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    if api == "legacy":
        obj["invoice"] = invoice
    return _stripe_order(obj)


def refund(
    ids: IdFactory,
    *,
    id: str | None = None,
    charge: str,
    payment_intent: str | None,
    customer: str | None,
    payment_method: str | None = None,
    amount: int,
    currency: str = "usd",
    created: int,
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = "requested_by_customer",
) -> JsonObject:
    return _stripe_order(
        {
            "id": id or ids("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": ids("txn"),
            "charge": charge,
            "created": created,
            "currency": currency,
            "customer": customer,
            "customer_account": None,
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "metadata": {},
            "payment_intent": payment_intent,
            "payment_method": payment_method,
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
    )


def charge(
    ids: IdFactory,
    *,
    id: str | None = None,
    amount: int,
    currency: str = "usd",
    customer: str | None,
    payment_intent: str | None,
    created: int,
    status: Literal["succeeded", "pending", "failed"] = "succeeded",
    amount_refunded: int = 0,
    refunds: Sequence[JsonObject] = (),
    disputed: bool = False,
    payment_method: str | None = None,
    billing_email: str | None = "jenny.rosen@example.com",
    metadata: Mapping[str, str] | None = None,
    livemode: bool = False,
) -> JsonObject:
    """A card charge. `refunded` is true only when the whole amount went back, as in Stripe."""
    charge_id = id or ids("ch")
    succeeded = status == "succeeded"
    return _stripe_order(
        {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if succeeded else 0,
            "amount_refunded": amount_refunded,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": derived_id("txn", charge_id) if succeeded else None,
            "billing_details": {
                "address": _address(),
                "email": billing_email,
                "name": "Jenny Rosen",
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "SAMPLE SAAS",
            "captured": succeeded,
            "created": created,
            "currency": currency,
            "customer": customer,
            "description": None,
            "disputed": disputed,
            "failure_balance_transaction": None,
            "failure_code": None if succeeded else "card_declined",
            "failure_message": None if succeeded else "Your card has insufficient funds.",
            "fraud_details": {},
            "livemode": livemode,
            "metadata": dict(metadata or {}),
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if succeeded else "declined_by_network",
                "reason": None if succeeded else "insufficient_funds",
                "risk_level": "normal",
                "seller_message": "Payment complete." if succeeded else "The bank declined the payment.",
                "type": "authorized" if succeeded else "issuer_declined",
            },
            "paid": succeeded,
            "payment_intent": payment_intent,
            "payment_method": payment_method or derived_id("pm", charge_id),
            "payment_method_details": {
                "card": {
                    "amount_authorized": amount,
                    "authorization_code": None,
                    "brand": "visa",
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": None,
                        "cvc_check": "pass",
                    },
                    "country": "US",
                    "exp_month": 8,
                    "exp_year": 2030,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": "Xt5EWLLDS7FJjR1c",
                    "funding": "credit",
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": "4242",
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": "visa",
                    "network_token": {"used": False},
                    "network_transaction_id": None,
                    "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                    "regulated_status": None,
                    "three_d_secure": None,
                    "transaction_link_id": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{charge_id}",
            "refunded": amount_refunded >= amount > 0,
            "refunds": {
                "object": "list",
                "data": list(refunds),
                "has_more": False,
                "total_count": len(refunds),
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": status,
            "transfer_data": None,
            "transfer_group": None,
        }
    )


_EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)


def dispute(
    ids: IdFactory,
    *,
    id: str | None = None,
    charge: str,
    payment_intent: str | None,
    amount: int,
    currency: str = "usd",
    status: DisputeStatus,
    reason: str = "fraudulent",
    created: int,
    evidence_submitted: bool = False,
    livemode: bool = False,
) -> JsonObject:
    """A dispute: it names the charge and payment intent, never the customer."""
    evidence: JsonObject = dict.fromkeys(_EVIDENCE_FIELDS)
    evidence["enhanced_evidence"] = {}
    if evidence_submitted:
        evidence["uncategorized_text"] = "Customer used the product; access log attached."
    return _stripe_order(
        {
            "id": id or ids("dp"),
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [],
            "charge": charge,
            "created": created,
            "currency": currency,
            "enhanced_eligibility_types": [],
            "evidence": evidence,
            "evidence_details": {
                "due_by": created + 20 * 86400,
                "enhanced_eligibility": {},
                "has_evidence": evidence_submitted,
                "past_due": False,
                "submission_count": 1 if evidence_submitted else 0,
            },
            "is_charge_refundable": False,
            "livemode": livemode,
            "metadata": {},
            "payment_intent": payment_intent,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "case_type": "chargeback",
                    "network": "visa",
                    "network_reason_code": "10.4",
                },
                "type": "card",
            },
            "reason": reason,
            "status": status,
        }
    )


# --------------------------------------------------------------------------------------------
# Entitlements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    lookup_key: str
    name: str


def active_entitlement_summary(
    *,
    customer: str,
    features: Sequence[FeatureSpec],
    has_more: bool = False,
    livemode: bool = False,
) -> JsonObject:
    """The object of `entitlements.active_entitlement_summary.updated`.

    Each active entitlement has its own `lookup_key` (the feature's) and an expanded `feature`.
    With `has_more`, the list is truncated and the rest must be fetched from the API.
    """
    data = [
        _stripe_order(
            {
                "id": derived_id("ent", customer, spec.lookup_key),
                "object": "entitlements.active_entitlement",
                "feature": _stripe_order(
                    {
                        "id": derived_id("feat", spec.lookup_key),
                        "object": "entitlements.feature",
                        "active": True,
                        "livemode": livemode,
                        "lookup_key": spec.lookup_key,
                        "metadata": {},
                        "name": spec.name,
                    }
                ),
                "livemode": livemode,
                "lookup_key": spec.lookup_key,
            }
        )
        for spec in features
    ]
    return {
        "object": "entitlements.active_entitlement_summary",
        "customer": customer,
        "entitlements": {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "url": "/v1/entitlements/active_entitlements",
        },
        "livemode": livemode,
    }


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def previous_attributes(before: Mapping[str, Any], after: Mapping[str, Any]) -> JsonObject:
    """What Stripe puts in `data.previous_attributes`: the old values of what changed.

    Nested hashes are compared key by key; a changed array is given whole (as Stripe does).
    """
    changed: JsonObject = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changed[key] = previous_attributes(old, new)
        else:
            changed[key] = old
    return changed


def event(
    ids: IdFactory,
    type: str,
    obj: JsonObject,
    *,
    created: int,
    livemode: bool | None = None,
    account: str | None = None,
    previous_attributes: JsonObject | None = None,
    api_version: str | None = CURRENT_API_VERSION,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    pending_webhooks: int = 1,
    id: str | None = None,
) -> JsonObject:
    """A webhook event. `request_id` None means Stripe did it on its own (renewals, retries)."""
    body: JsonObject = {"id": id or ids("evt"), "object": "event"}
    if account is not None:
        # Only events from a connected account carry `account`.
        body["account"] = account
    data: JsonObject = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    body.update(
        {
            "api_version": api_version,
            "created": created,
            "data": data,
            "livemode": bool(obj.get("livemode", False)) if livemode is None else livemode,
            "pending_webhooks": pending_webhooks,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type,
        }
    )
    return body


def thin_event(
    ids: IdFactory,
    type: str,
    *,
    created: int,
    related_object: tuple[str, str] | None,
    livemode: bool = False,
    context: str | None = None,
    id: str | None = None,
) -> JsonObject:
    """A thin event (`v2.core.event`) as an event destination sends it: no data, only what changed.

    `related_object` is (object type, id), or None (null) when the event names no object: the v2
    event fetched by id then names the snapshot event. v2 timestamps are RFC 3339 with milliseconds; `context`
    is the connected account, present only on a connected account's events.
    """
    related: JsonObject | None = None
    if related_object is not None:
        kind, object_id = related_object
        # The v1 resource's URL: /v1/checkout/sessions/cs_…, /v1/billing/meters/mtr_…
        related = {"id": object_id, "type": kind, "url": f"/v1/{kind.replace('.', '/')}s/{object_id}"}
    body: JsonObject = {
        "id": id or ids("evt_test" if not livemode else "evt"),
        "object": "v2.core.event",
        "type": type,
        "livemode": livemode,
        "created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "related_object": related,
    }
    if context is not None:
        body["context"] = context
    return body


def subscription_event(
    ids: IdFactory,
    *,
    customer: str,
    price: PriceSpec,
    status: SubscriptionStatus,
    started: int,
    period_start: int,
    period_end: int,
    at: int,
    type: str = "customer.subscription.updated",
    subscription_id: str | None = None,
    event_id: str | None = None,
    **changes: Any,
) -> JsonObject:
    """An event about a customer's one-price subscription (`sub_<customer>` unless named), `at` the
    event's time: the history the worker's tests and benchmarks apply step by step."""
    obj = subscription(
        ids,
        id=subscription_id or f"sub_{customer}",
        customer=customer,
        items=[ItemSpec(price)],
        status=status,
        created=started,
        period_start=period_start,
        period_end=period_end,
        **changes,
    )
    return event(ids, type, obj, created=at, id=event_id)
