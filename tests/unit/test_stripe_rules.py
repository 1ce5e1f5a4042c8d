"""The access rules as Stripe documents them, on the applier: each test replays Stripe's sequence.

Sources (Stripe docs): disputes https://docs.stripe.com/disputes/how-disputes-work (statuses; a lost
dispute is final, a withdrawn one is marked won); refunds https://docs.stripe.com/refunds (a refund can
fail after it succeeded: `charge.refund.updated` / `refund.failed`, status failed); Checkout fulfilment
with delayed payment methods https://docs.stripe.com/checkout/fulfillment; event destinations and
thin events https://docs.stripe.com/event-destinations (`GET /v2/core/events/{id}`,
`snapshot_event`); Entitlements https://docs.stripe.com/billing/entitlements.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain.entitlements import EntitlementRules, Grant
from domain.records import (
    ChargeRecord,
    DisputeRecord,
    InvoiceRecord,
    ProfileRecord,
    PurchaseRecord,
    SubscriptionRecord,
    record_from_dict,
)
from domain.stripe_objects import MalformedEvent
from domain.sync import EventApplier, Outcome
from events.stripe import objects as s
from harness.memory_store import MemoryStore, ScriptedStripe
from tests.support.book_purchase import book_session
from tests.support.subscription_history import DAY, PRO, T0, subscription_event

NOW = T0 + 400 * DAY
BOOK = s.PriceSpec("price_book", "prod_book", recurring=False, unit_amount=900)


def applier(store: MemoryStore, stripe: ScriptedStripe | None = None, **rules: Any) -> EventApplier:
    return EventApplier(store, EntitlementRules(**rules), clock=lambda: NOW, stripe=stripe)


def features(store: MemoryStore, customer: str = "cus_1") -> dict[str, Grant]:
    return dict(store.entitlements[customer].entitlements.features)


def session_event(
    created: int,
    *,
    paid: bool,
    event_type: str = "checkout.session.completed",
    customer: str | None = "cus_1",
) -> dict[str, Any]:
    return s.event(
        s.IdFactory(created), event_type, book_session(T0, paid=paid, customer=customer), created=created
    )


def dispute_event(created: int, status: str, event_type: str = "charge.dispute.updated") -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.dispute(
        ids,
        id="dp_1",
        charge="ch_1",
        payment_intent="pi_1",
        amount=900,
        status=status,  # type: ignore[arg-type]
        created=T0 + DAY,
    )
    return s.event(ids, event_type, obj, created=created)


def charge_event(
    created: int, *, refunded: int, refunds: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.charge(
        ids,
        id="ch_1",
        amount=900,
        customer="cus_1",
        payment_intent="pi_1",
        created=T0,
        amount_refunded=refunded,
        refunds=refunds or (),
    )
    return s.event(ids, "charge.refunded", obj, created=created)


def refund_object(status: str = "succeeded", amount: int = 900) -> dict[str, Any]:
    obj = s.refund(
        s.IdFactory(1),
        id="re_1",
        charge="ch_1",
        payment_intent="pi_1",
        customer=None,
        amount=amount,
        created=T0,
    )
    return {**obj, "status": status}


# -- 6. A purchase's term counts from when it was paid ------------------------------------------------


def test_a_delayed_payments_term_counts_from_when_it_settled_not_from_the_session() -> None:
    """Bank debits settle days later: checkout.session.completed (unpaid), then
    checkout.session.async_payment_succeeded (paid)."""
    store = MemoryStore()
    rules = {"purchase_term_seconds": 30 * DAY}
    applier(store, **rules).apply(session_event(T0 + 10, paid=False))
    settled = T0 + 4 * DAY
    applier(store, **rules).apply(
        session_event(settled, paid=True, event_type="checkout.session.async_payment_succeeded")
    )
    assert features(store)["prod_book"] == Grant(settled + 30 * DAY, "cs_1")


def test_the_paid_time_survives_a_later_snapshot_fetched_by_the_reconciler() -> None:
    store = MemoryStore()
    rules = {"purchase_term_seconds": 30 * DAY}
    applier(store, **rules).apply(session_event(T0 + 60, paid=True))
    fetched = session_event(T0 + 90 * DAY, paid=True) | {"fetched": True}
    assert applier(store, **rules).apply(fetched).outcome is Outcome.APPLIED
    assert features(store)["prod_book"].until == T0 + 60 + 30 * DAY


def test_a_deleted_customer_fetched_by_id_keeps_the_mode_of_the_event() -> None:
    """A deleted customer object is `{"id", "object", "deleted": true}`: no livemode."""
    ids = s.IdFactory(3)
    customer = s.customer(ids, id="cus_1", created=T0, metadata={}, livemode=True)
    first = s.event(ids, "customer.updated", customer, created=T0 + 5, livemode=True, id="evt_b")
    second = s.event(ids, "customer.updated", customer, created=T0 + 5, livemode=True, id="evt_a")
    stripe = ScriptedStripe(modes=(True,), objects={("customer", "cus_1"): s.deleted_customer("cus_1")})
    store = MemoryStore()
    applier(store, stripe).apply(first)
    applier(store, stripe).apply(second)  # a tie: the customer is fetched, and turns out deleted
    record = store.records["cus_1"][("profile", "cus_1")].record
    assert isinstance(record, ProfileRecord)
    assert record.deleted
    assert record.livemode
    assert store.entitlements["cus_1"].entitlements.livemode


# -- 6. Refunds: partial keeps, full revokes, a failed refund gives access back -----------------------


def test_partial_refund_keeps_access_full_refund_revokes_and_a_failed_refund_gives_it_back() -> None:
    store = MemoryStore()
    applier(store).apply(session_event(T0 + 10, paid=True))
    partial = refund_object(amount=300)
    applier(store).apply(charge_event(T0 + 20, refunded=300, refunds=[partial]))
    assert "prod_book" in features(store)
    applier(store).apply(
        charge_event(T0 + 30, refunded=900, refunds=[partial, {**refund_object(), "id": "re_2"}])
    )
    assert features(store) == {}
    failed = {**refund_object(status="failed"), "id": "re_2", "failure_reason": "lost_or_stolen_card"}
    event = s.event(s.IdFactory(9), "refund.failed", failed, created=T0 + 40)
    assert applier(store).apply(event).outcome is Outcome.APPLIED
    assert "prod_book" in features(store)


def test_a_refund_failure_that_arrives_before_the_charge_is_kept_and_applied() -> None:
    store = MemoryStore()
    applier(store).apply(session_event(T0 + 10, paid=True))
    failed = s.event(s.IdFactory(9), "charge.refund.updated", refund_object("failed"), created=T0 + 40)
    # The refund names no customer; the purchase's payment intent finds it.
    assert applier(store).apply(failed).outcome is Outcome.APPLIED
    applier(store).apply(charge_event(T0 + 30, refunded=900, refunds=[refund_object()]))
    assert "prod_book" in features(store)


# -- 3. Disputes of payments that are not (yet) known purchases ---------------------------------------


def test_a_dispute_that_arrives_before_its_purchase_is_applied_when_the_purchase_arrives() -> None:
    store = MemoryStore()
    lost = dispute_event(T0 + 5 * DAY, "lost", "charge.dispute.closed")
    assert applier(store).apply(lost).outcome is Outcome.UNMATCHED
    assert store.entitlements == {}
    applier(store).apply(session_event(T0 + 10, paid=True))
    assert features(store) == {}  # the purchase found the lost dispute
    assert store.unmatched == {}
    record = store.records["cus_1"][("dispute", "dp_1")].record
    assert isinstance(record, DisputeRecord)
    assert record.customer_id == "cus_1"


def test_a_newer_unmatched_snapshot_replaces_an_older_one_and_an_older_one_is_stale() -> None:
    store = MemoryStore()
    assert applier(store).apply(dispute_event(T0 + 9, "under_review")).outcome is Outcome.UNMATCHED
    assert applier(store).apply(dispute_event(T0 + 5, "needs_response")).outcome is Outcome.STALE
    applier(store).apply(session_event(T0 + 10, paid=True))
    record = store.records["cus_1"][("dispute", "dp_1")].record
    assert isinstance(record, DisputeRecord)
    assert record.status == "under_review"


@pytest.mark.parametrize("appeal", ["needs_response", "under_review", "warning_under_review"])
def test_a_lost_dispute_keeps_revoking_through_later_statuses_until_stripe_says_won(appeal: str) -> None:
    store = MemoryStore()
    applier(store).apply(session_event(T0 + 10, paid=True))
    applier(store).apply(dispute_event(T0 + 30 * DAY, "lost", "charge.dispute.closed"))
    applier(store).apply(dispute_event(T0 + 40 * DAY, appeal))
    assert features(store) == {}
    applier(store).apply(dispute_event(T0 + 50 * DAY, "won", "charge.dispute.closed"))
    assert "prod_book" in features(store)


# -- 2. Entitlements for some products only ---------------------------------------------------------


def test_with_entitlements_for_some_products_the_mapped_products_keep_their_features() -> None:
    ids = s.IdFactory(4)
    team = s.PriceSpec("price_team", "prod_team", lookup_key="team_monthly")
    sub = s.subscription(
        ids,
        id="sub_1",
        customer="cus_1",
        items=[s.ItemSpec(PRO), s.ItemSpec(team)],
        status="active",
        created=T0,
        period_start=T0,
        period_end=T0 + 30 * DAY,
    )
    summary = s.active_entitlement_summary(customer="cus_1", features=[s.FeatureSpec("reports", "Reports")])
    store = MemoryStore()
    rules = {"features_by_product": {"prod_team": ("team_seats",)}}
    applier(store, **rules).apply(s.event(ids, "customer.subscription.created", sub, created=T0))
    applier(store, **rules).apply(
        s.event(ids, "entitlements.active_entitlement_summary.updated", summary, created=T0 + 1)
    )
    # prod_team is mapped in the repository: its features stay; prod_pro is left to Entitlements.
    assert features(store) == {"team_seats": Grant(None, "sub_1"), "reports": Grant(None, "entitlements")}


# -- 5. Thin events ----------------------------------------------------------------------------------


def thin(event_type: str, related_object: tuple[str, str] | None = None, **fetched: Any) -> dict[str, Any]:
    """A thin event naming `related_object`; `fetched`: what GET /v2/core/events/{id} adds."""
    event = s.thin_event(
        s.IdFactory(0), event_type, created=1_767_225_600, related_object=related_object, id="evt_thin_1"
    )
    return event | fetched


def test_thin_event_without_related_object_applies_the_v1_snapshot_event_it_names() -> None:
    v1 = subscription_event("active", T0 + 7, event_id="evt_v1_1")
    stripe = ScriptedStripe(
        thin_events={"evt_thin_1": thin("v1.customer.subscription.updated", snapshot_event="evt_v1_1")},
        events={"evt_v1_1": v1},
    )
    store = MemoryStore()
    result = applier(store, stripe).apply(thin("v1.customer.subscription.updated"))
    assert result.outcome is Outcome.APPLIED
    assert stripe.calls == [("v2_event", "evt_thin_1"), ("event", "evt_v1_1")]
    assert store.records["cus_1"][("subscription", "sub_1")].stamp.event_id == "evt_v1_1"


def test_thin_event_naming_neither_object_nor_snapshot_says_so() -> None:
    stripe = ScriptedStripe(thin_events={"evt_thin_1": thin("v1.customer.subscription.updated")})
    with pytest.raises(MalformedEvent, match="neither related_object nor snapshot_event"):
        applier(MemoryStore(), stripe).apply(thin("v1.customer.subscription.updated"))


@pytest.mark.parametrize("related", [None, ("invoice", "in_upcoming")])
def test_thin_invoice_upcoming_is_ignored_without_a_fetch(related: tuple[str, str] | None) -> None:
    stripe = ScriptedStripe()
    event = thin("v1.invoice.upcoming", related)
    assert applier(MemoryStore(), stripe).apply(event).outcome is Outcome.IGNORED
    assert stripe.calls == []


# -- Storage compatibility ---------------------------------------------------------------------------


def test_record_bodies_stored_by_the_previous_code_still_load() -> None:
    """Bodies as the previous release wrote them (no fields added since): they load with defaults."""
    subscription = {
        "id": "sub_1",
        "customer_id": "cus_1",
        "livemode": False,
        "status": "past_due",
        "items": [
            {
                "price_id": "price_1",
                "product_id": "prod_1",
                "lookup_key": None,
                "quantity": 1,
                "usage_type": "licensed",
                "current_period_start": 1,
                "current_period_end": 2,
            }
        ],
        "current_period_start": 1,
        "current_period_end": 2,
        "trial_start": None,
        "trial_end": None,
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "pause_behavior": None,
        "pause_resumes_at": None,
        "latest_invoice_id": "in_1",
        "created": 1,
    }
    invoice = {
        "id": "in_1",
        "customer_id": "cus_1",
        "livemode": False,
        "subscription_id": "sub_1",
        "status": "open",
        "amount_due": 5,
        "amount_remaining": 5,
        "attempt_count": 1,
        "due_date": None,
        "billing_reason": "subscription_cycle",
        "created": 3,
        "as_of": 3,
    }
    purchase = {
        "id": "cs_1",
        "customer_id": "cus_1",
        "livemode": False,
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "payment_intent_id": "pi_1",
        "subscription_id": None,
        "client_reference_id": None,
        "created": 4,
        "line_items": None,
        "metadata_features": ["ebook"],
        "metadata_product_id": None,
    }
    charge = {
        "id": "ch_1",
        "customer_id": "cus_1",
        "livemode": False,
        "payment_intent_id": "pi_1",
        "amount": 5,
        "amount_refunded": 5,
        "refunded": True,
    }
    dispute = {
        "id": "dp_1",
        "customer_id": None,
        "livemode": False,
        "charge_id": "ch_1",
        "payment_intent_id": None,
        "status": "lost",
    }
    loaded_sub = record_from_dict("subscription", json.loads(json.dumps(subscription)))
    assert isinstance(loaded_sub, SubscriptionRecord)
    assert loaded_sub.collection_method is None
    loaded_invoice = record_from_dict("invoice", invoice)
    assert isinstance(loaded_invoice, InvoiceRecord)
    assert loaded_invoice.problem_started == 3
    loaded_purchase = record_from_dict("purchase", purchase)
    assert isinstance(loaded_purchase, PurchaseRecord)
    assert loaded_purchase.term_starts == 4
    loaded_charge = record_from_dict("charge", charge)
    assert isinstance(loaded_charge, ChargeRecord)
    assert loaded_charge.refunds == ()
    loaded_dispute = record_from_dict("dispute", dispute)
    assert isinstance(loaded_dispute, DisputeRecord)
    assert loaded_dispute.revokes
