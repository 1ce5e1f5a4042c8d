"""What a customer may use: computed from all of the customer's records, never from one event.

The result is written to the entitlements item backend services read (a published contract, see
ARCHITECTURE.md, "The table"). Time limits are absolute Stripe times (`until`), so access ends by itself and a replay or a
reconcile never extends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    RefundRecord,
    RefundState,
    SubscriptionRecord,
)

DAY = 86_400
STRIPE_ENTITLEMENTS_SOURCE = "entitlements"


class RulesError(ValueError):
    """The entitlement rules file is invalid."""


@dataclass(frozen=True, slots=True)
class EntitlementRules:
    """How Stripe state becomes access. Defaults follow ARCHITECTURE.md, "Access rules"; every one is configurable."""

    granting_statuses: frozenset[str] = frozenset({"active", "trialing"})
    grace_statuses: frozenset[str] = frozenset({"past_due"})
    grace_period_seconds: int = 7 * DAY
    # One-time purchases: None grants forever; a number of seconds from when the purchase was paid.
    purchase_term_seconds: int | None = None
    purchase_term_by_product: Mapping[str, int | None] = field(default_factory=dict)
    features_by_lookup_key: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    features_by_product: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Price ids, which include the plan ids of API versions before prices and products (2018-02-05).
    features_by_price: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Paused payment collection keeps the status `active`; whether access continues is a business choice.
    paused_collection_keeps_access: bool = True
    user_id_metadata_key: str = "user_id"

    def features_for(
        self, product_id: str | None, lookup_key: str | None, price_id: str | None = None
    ) -> tuple[str, ...]:
        """Lookup key first, then price (or plan), then product; a product nothing maps grants a
        feature named after it, so access never silently disappears for a product someone forgot to
        map, and a plan of an API version without products one named after the plan."""
        if lookup_key and lookup_key in self.features_by_lookup_key:
            return self.features_by_lookup_key[lookup_key]
        if price_id and price_id in self.features_by_price:
            return self.features_by_price[price_id]
        if product_id and product_id in self.features_by_product:
            return self.features_by_product[product_id]
        if product_id:
            return (product_id,)
        return (price_id,) if price_id else ()

    def maps(self, product_id: str | None, lookup_key: str | None, price_id: str | None = None) -> bool:
        """Whether the repository's mapping names this price's lookup key, price (plan) or product."""
        return bool(
            (lookup_key and lookup_key in self.features_by_lookup_key)
            or (price_id and price_id in self.features_by_price)
            or (product_id and product_id in self.features_by_product)
        )

    def purchase_term_for(self, product_id: str | None) -> int | None:
        if product_id and product_id in self.purchase_term_by_product:
            return self.purchase_term_by_product[product_id]
        return self.purchase_term_seconds

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EntitlementRules:
        """Build from the parsed rules file (TOML), validating every value."""
        known = {
            "granting_statuses",
            "grace_statuses",
            "grace_period_days",
            "purchase_term_days",
            "purchase_term_days_by_product",
            "features_by_lookup_key",
            "features_by_product",
            "features_by_price",
            "paused_collection_keeps_access",
            "user_id_metadata_key",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RulesError(f"unknown setting(s): {', '.join(unknown)}")
        defaults = cls()
        return cls(
            granting_statuses=_statuses(raw, "granting_statuses", defaults.granting_statuses),
            grace_statuses=_statuses(raw, "grace_statuses", defaults.grace_statuses),
            grace_period_seconds=_days(raw.get("grace_period_days", 7), "grace_period_days") or 0,
            purchase_term_seconds=_days(raw.get("purchase_term_days"), "purchase_term_days"),
            purchase_term_by_product={
                product: _days(days, f"purchase_term_days_by_product.{product}")
                for product, days in _table(raw, "purchase_term_days_by_product").items()
            },
            features_by_lookup_key=_feature_table(raw, "features_by_lookup_key"),
            features_by_product=_feature_table(raw, "features_by_product"),
            features_by_price=_feature_table(raw, "features_by_price"),
            paused_collection_keeps_access=_bool(raw, "paused_collection_keeps_access", True),
            user_id_metadata_key=str(raw.get("user_id_metadata_key", "user_id")),
        )


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """A feature until a time (None: no end), and the subscription or purchase that grants it."""

    until: int | None
    source: str

    def outlasts(self, other: Grant) -> bool:
        """The latest `until` wins, no end beats any end; equal ends keep the smaller source id so the
        result does not depend on the order records were read in."""
        if self.until == other.until:
            return self.source < other.source
        if self.until is None:
            return True
        return other.until is not None and self.until > other.until


@dataclass(frozen=True, slots=True)
class Entitlements:
    customer_id: str
    livemode: bool
    features: Mapping[str, Grant]
    payment_issue: bool
    deleted: bool

    def same_access(self, other: Entitlements | None) -> bool:
        """Whether writing self over other would change what readers see (version/updated_at aside)."""
        return other is not None and (
            dict(self.features) == dict(other.features)
            and self.payment_issue == other.payment_issue
            and self.deleted == other.deleted
            and self.livemode == other.livemode
        )

    def granted_at(self, now: int) -> dict[str, Grant]:
        return {name: g for name, g in self.features.items() if g.until is None or g.until > now}


def compute_entitlements(
    customer_id: str, records: Iterable[Record], rules: EntitlementRules
) -> Entitlements:
    subscriptions: list[SubscriptionRecord] = []
    invoices: list[InvoiceRecord] = []
    purchases: list[PurchaseRecord] = []
    payments: list[PaymentRecord] = []
    charges: list[ChargeRecord] = []
    refunds: list[RefundRecord] = []
    disputes: list[DisputeRecord] = []
    profile: ProfileRecord | None = None
    summary: EntitlementSummaryRecord | None = None
    for record in records:
        match record:
            case SubscriptionRecord():
                subscriptions.append(record)
            case InvoiceRecord():
                invoices.append(record)
            case PurchaseRecord():
                purchases.append(record)
            case PaymentRecord():
                payments.append(record)
            case ChargeRecord():
                charges.append(record)
            case RefundRecord():
                refunds.append(record)
            case DisputeRecord():
                disputes.append(record)
            case ProfileRecord():
                profile = record
            case EntitlementSummaryRecord():
                summary = record

    livemode = _livemode(profile, subscriptions, invoices, purchases, payments)
    if profile is not None and profile.deleted:
        return Entitlements(customer_id, livemode, {}, payment_issue=False, deleted=True)

    features: dict[str, Grant] = {}

    def grant(names: Iterable[str], candidate: Grant) -> None:
        for name in names:
            current = features.get(name)
            if current is None or candidate.outlasts(current):
                features[name] = candidate

    for names, access in _subscription_grants(subscriptions, invoices, summary, rules):
        grant(names, access)

    revoked = _revoked_payment_intents(charges, refunds, disputes)
    for purchase in purchases:
        if purchase.mode != "payment" or not purchase.is_paid or purchase.payment_intent_id in revoked:
            continue
        for names, product in _purchase_grants(purchase, rules):
            term = rules.purchase_term_for(product)
            grant(names, Grant(None if term is None else purchase.term_starts + term, purchase.id))
    for payment in payments:
        if payment.status != "succeeded" or payment.id in revoked:
            continue
        names = payment.metadata_features or rules.features_for(payment.metadata_product_id, None)
        term = rules.purchase_term_for(payment.metadata_product_id)
        grant(names, Grant(None if term is None else payment.created + term, payment.id))

    return Entitlements(
        customer_id,
        livemode,
        features,
        payment_issue=_payment_issue(subscriptions, invoices, rules),
        deleted=False,
    )


def _subscription_grants(
    subscriptions: list[SubscriptionRecord],
    invoices: list[InvoiceRecord],
    summary: EntitlementSummaryRecord | None,
    rules: EntitlementRules,
) -> list[tuple[tuple[str, ...], Grant]]:
    """What the subscriptions grant, by the mapping and through a Stripe Entitlements summary.

    With a summary, only the products the repository maps still grant by the mapping (an account that
    uses Entitlements for some products only); every other feature comes from the summary, see
    `_summary_grants`."""
    grants: list[tuple[tuple[str, ...], Grant]] = []
    for subscription in subscriptions:
        access = subscription_grant(subscription, invoices, rules)
        if access is None:
            continue
        for item in subscription.items:
            if summary is None or rules.maps(item.product_id, item.lookup_key, item.price_id):
                grants.append((rules.features_for(item.product_id, item.lookup_key, item.price_id), access))
    if summary is not None:
        grants.extend(_summary_grants(summary, subscriptions, invoices, rules))
    return grants


def _summary_grants(
    summary: EntitlementSummaryRecord,
    subscriptions: list[SubscriptionRecord],
    invoices: list[InvoiceRecord],
    rules: EntitlementRules,
) -> list[tuple[tuple[str, ...], Grant]]:
    """A summary is Stripe's computed answer: its features are granted as it states them, with no end,
    unless the table knows better. It knows better only from a subscription record newer than the
    summary: then each feature lasts as long as the subscriptions that bring it give access (an older
    subscription that grants still counts without an end: the summary saw it). The subscriptions that
    bring a feature are those whose items name it (the rules' mapping, the price's lookup key or the
    product id); a feature no subscription names is brought by all of them. A subscription older than
    the summary that grants nothing is left out: the summary already reflects it."""
    relevant = [
        (s, access)
        for s in subscriptions
        if (access := subscription_grant(s, invoices, rules)) is not None or newer_than_summary(s, summary)
    ]
    if not any(newer_than_summary(s, summary) for s, _ in relevant):
        return [(summary.lookup_keys, Grant(None, STRIPE_ENTITLEMENTS_SOURCE))]
    grants: list[tuple[tuple[str, ...], Grant]] = []
    for key in summary.lookup_keys:
        named = [(s, a) for s, a in relevant if _names_feature(s, key, rules)]
        best: Grant | None = None
        for subscription, access in named or relevant:
            if access is None:
                continue
            until = access.until if newer_than_summary(subscription, summary) else None
            candidate = Grant(until, STRIPE_ENTITLEMENTS_SOURCE)
            if best is None or candidate.outlasts(best):
                best = candidate
        if best is not None:
            grants.append(((key,), best))
    return grants


def newer_than_summary(subscription: SubscriptionRecord, summary: EntitlementSummaryRecord) -> bool:
    """Whether the subscription's snapshot is from later (Stripe's time) than the summary's."""
    if subscription.as_of is None:
        return False
    return summary.as_of is None or subscription.as_of > summary.as_of


def _names_feature(subscription: SubscriptionRecord, feature: str, rules: EntitlementRules) -> bool:
    return any(
        feature in (item.lookup_key, item.product_id, item.price_id)
        or feature in rules.features_for(item.product_id, item.lookup_key, item.price_id)
        for item in subscription.items
    )


def subscription_grant(
    subscription: SubscriptionRecord, invoices: Iterable[InvoiceRecord], rules: EntitlementRules
) -> Grant | None:
    """The access a subscription gives its items' features, or None when it gives none."""
    status = subscription.status
    ends: list[int] = []
    if subscription.cancel_at is not None:
        ends.append(subscription.cancel_at)
    if subscription.cancel_at_period_end and subscription.current_period_end is not None:
        ends.append(subscription.current_period_end)
    if status in rules.granting_statuses:
        if subscription.pause_behavior is not None and not rules.paused_collection_keeps_access:
            return None
    elif status in rules.grace_statuses:
        ends.append(_grace_started(subscription, invoices) + rules.grace_period_seconds)
    else:
        return None
    return Grant(min(ends) if ends else None, subscription.id)


def _grace_started(subscription: SubscriptionRecord, invoices: Iterable[InvoiceRecord]) -> int:
    """When the subscription became `past_due`, in Stripe's time, from the Stripe timestamps of the
    records alone (so any delivery order gives the same answer).

    Stripe: `past_due` means payment of the latest finalized invoice failed or was not attempted. So
    the grace counts from that invoice's problem (its first failed charge at finalization, or, sent
    with `send_invoice`, its due date) and from any other open invoice of the subscription Stripe is
    still collecting. An older invoice Stripe stopped retrying, left open on a subscription that was
    `active` again (after a plan change), does not start it. Without a known invoice: the current
    period's start (the renewal invoice is finalized then), or its due date for `send_invoice`.

    The grace belongs to the past_due spell, not to one invoice: under "leave the subscription
    past-due" Stripe stops retrying the first unpaid invoice and makes each new renewal invoice
    `latest_invoice`, which must not restart the grace. So an open invoice whose problem began after
    the subscription was last paid up (the latest `paid_at` of its invoices; never, when none is
    known) belongs to the current spell too. Invoices are separate objects, each stored as its
    latest snapshot: the answer is the same in any delivery order.
    """
    own = [invoice for invoice in invoices if invoice.subscription_id == subscription.id]
    paid_up = max((i.paid_at or i.as_of for i in own if i.status == "paid"), default=None)
    starts: list[int] = []
    for invoice in own:
        if invoice.status != "open":
            continue
        if invoice.amount_remaining <= 0 and invoice.amount_due > 0:
            continue
        latest = invoice.id == subscription.latest_invoice_id
        still_collected = invoice.next_payment_attempt is not None or (
            invoice.collection_method == "send_invoice"
        )
        this_spell = paid_up is None or invoice.problem_started > paid_up
        if latest or still_collected or this_spell:
            starts.append(invoice.problem_started)
    if starts:
        return min(starts)
    period_start = subscription.current_period_start or subscription.created
    if subscription.collection_method == "send_invoice" and subscription.days_until_due is not None:
        return period_start + subscription.days_until_due * DAY
    return period_start


def _payment_issue(
    subscriptions: list[SubscriptionRecord], invoices: list[InvoiceRecord], rules: EntitlementRules
) -> bool:
    if any(s.status in ("past_due", "unpaid") for s in subscriptions):
        return True
    # Stripe can show `active` after a plan change while an earlier invoice stays unpaid and is
    # never charged again: flag any open invoice whose payment failed or whose due date passed.
    return any(invoice.is_unpaid_problem for invoice in invoices)


def _revoked_payment_intents(
    charges: list[ChargeRecord], refunds: list[RefundRecord], disputes: list[DisputeRecord]
) -> set[str | None]:
    """PaymentIntents whose money went back: a full refund or a lost dispute takes the purchase back;
    a partial refund does not, and a refund that later failed (or was canceled) gives it back."""
    revoked: set[str | None] = {c.payment_intent_id for c in charges if _fully_refunded(c, refunds)}
    charge_intents = {c.id: c.payment_intent_id for c in charges}
    for dispute in disputes:
        if dispute.revokes:  # lost, and never since `won` (a withdrawn dispute is marked won)
            revoked.add(dispute.payment_intent_id or charge_intents.get(dispute.charge_id or ""))
    revoked.discard(None)
    return revoked


def _fully_refunded(charge: ChargeRecord, refunds: list[RefundRecord]) -> bool:
    """Whether the charge's whole amount went back, decided by the refund objects' own statuses and
    amounts: the charge's embedded list and the Refund objects of this charge, merged by id (a refund
    seen failed or canceled stays so). Each refund counts once, whatever the charge snapshot's
    `amount_refunded` already left out. With no refund object known, or none known to have failed,
    Stripe's `refunded` flag says it (a refund that did not fail is in `amount_refunded`)."""
    known: dict[str, RefundState] = {r.id: r for r in charge.refunds}
    for refund in refunds:
        if refund.charge_id == charge.id or (
            refund.payment_intent_id is not None and refund.payment_intent_id == charge.payment_intent_id
        ):
            state = RefundState(refund.id, refund.amount, refund.status)
            if refund.id not in known or not known[refund.id].reversed:
                known[refund.id] = state
    if sum(r.amount for r in known.values() if not r.reversed) >= charge.amount > 0:
        return True
    return charge.refunded and not any(r.reversed for r in known.values())


def _purchase_grants(
    purchase: PurchaseRecord, rules: EntitlementRules
) -> list[tuple[tuple[str, ...], str | None]]:
    if purchase.line_items:
        return [
            (rules.features_for(i.product_id, i.lookup_key, i.price_id), i.product_id)
            for i in purchase.line_items
        ]
    if purchase.metadata_features:
        return [(purchase.metadata_features, purchase.metadata_product_id)]
    if purchase.metadata_product_id:
        return [(rules.features_for(purchase.metadata_product_id, None), purchase.metadata_product_id)]
    return []


def purchase_is_unresolved(purchase: PurchaseRecord) -> bool:
    """A paid one-time purchase whose products are unknown (no line items fetched, no metadata)."""
    return (
        purchase.mode == "payment"
        and purchase.is_paid
        and not purchase.line_items
        and not purchase.metadata_features
        and not purchase.metadata_product_id
    )


def _livemode(*groups: Any) -> bool:
    for group in groups:
        items = group if isinstance(group, list) else [group]
        for record in items:
            if record is not None:
                return bool(record.livemode)
    return False


def _statuses(raw: Mapping[str, Any], key: str, default: frozenset[str]) -> frozenset[str]:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{key} must be a list of subscription statuses")
    return frozenset(value)


def _days(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RulesError(f"{key} must be a number of days >= 0")
    return int(value * DAY)


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise RulesError(f"{key} must be a table")
    return value


def _feature_table(raw: Mapping[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for name, features in _table(raw, key).items():
        if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
            raise RulesError(f"{key}.{name} must be a list of feature names")
        table[str(name)] = tuple(features)
    return table


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise RulesError(f"{key} must be true or false")
    return value


__all__ = [
    "EntitlementRules",
    "Entitlements",
    "Grant",
    "PurchasedItem",
    "RulesError",
    "compute_entitlements",
    "purchase_is_unresolved",
]
