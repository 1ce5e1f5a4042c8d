"""The worker's rules (ARCHITECTURE.md, "An event's path") on the pure applier, with an in-memory table that enforces
the same conditions as DynamoDB and a scripted Stripe API."""

from __future__ import annotations

from typing import Any

import pytest

from domain.entitlements import EntitlementRules, Grant
from domain.records import PurchaseRecord, SubscriptionRecord
from domain.stripe_objects import MalformedEvent
from domain.sync import ConcurrentChange, CustomerChange, EventApplier, Outcome, RetryLater
from events.stripe import objects as s
from harness.memory_store import MemoryStore, ScriptedStripe
from tests.support.aws_event_shapes import queued_by_reference
from tests.support.subscription_history import DAY, PRO, T0, subscription_event

BOOK = s.PriceSpec("price_book", "prod_book", recurring=False, unit_amount=900)
NOW = T0 + 100 * DAY


def applier(store: MemoryStore, stripe: ScriptedStripe | None = None, **rules: Any) -> EventApplier:
    return EventApplier(store, EntitlementRules(**rules), clock=lambda: NOW, stripe=stripe)


def purchase_events(created: int, *, customer: str | None = "cus_1", paid: bool = True) -> dict[str, Any]:
    ids = s.IdFactory(created)
    session = s.checkout_session(
        ids,
        id="cs_1",
        mode="payment",
        status="complete",
        payment_status="paid" if paid else "unpaid",
        customer=customer,
        client_reference_id="user-42",
        payment_intent="pi_1",
        amount_total=900,
        created=T0,
    )
    return s.event(ids, "checkout.session.completed", session, created=created)


def features(store: MemoryStore, customer: str = "cus_1") -> dict[str, Grant]:
    return dict(store.entitlements[customer].entitlements.features)


def test_applies_a_subscription_and_grants_its_features() -> None:
    store = MemoryStore()
    result = applier(store).apply(subscription_event("active", T0 + 10))
    assert result.outcome is Outcome.APPLIED
    assert result.entitlements_changed
    assert features(store) == {"prod_pro": Grant(None, "sub_1")}
    assert store.entitlements["cus_1"].version == 1


def test_the_same_event_twice_changes_nothing_the_second_time() -> None:
    store = MemoryStore()
    event = subscription_event("active", T0 + 10)
    applier(store).apply(event)
    assert applier(store).apply(event).outcome is Outcome.DUPLICATE
    assert store.commits == 1


def test_an_older_snapshot_never_overwrites_a_newer_one() -> None:
    store = MemoryStore()
    applier(store).apply(subscription_event("canceled", T0 + 20, event_type="customer.subscription.deleted"))
    result = applier(store).apply(subscription_event("active", T0 + 10))
    assert result.outcome is Outcome.STALE
    assert features(store) == {}
    assert store.commits == 1


def test_version_grows_only_when_access_changes() -> None:
    store = MemoryStore()
    applier(store).apply(subscription_event("active", T0 + 10))
    applier(store).apply(subscription_event("active", T0 + 11, metadata={"note": "changed"}))
    assert store.commits == 2
    assert store.entitlements["cus_1"].version == 1
    applier(store).apply(subscription_event("active", T0 + 12, cancel_at_period_end=True))
    assert store.entitlements["cus_1"].version == 2
    assert features(store)["prod_pro"].until == T0 + 30 * DAY


def test_tie_without_an_api_key_settles_the_same_way_in_either_order() -> None:
    incomplete = subscription_event(
        "incomplete", T0 + 10, event_type="customer.subscription.created", event_id="evt_b"
    )
    active = subscription_event("active", T0 + 10, event_id="evt_a")
    finals = []
    for order in ((incomplete, active), (active, incomplete)):
        store = MemoryStore()
        for event in order:
            applier(store).apply(event)
        finals.append(store.final_state())
    assert finals[0] == finals[1]
    record = next(iter(finals[0]["records"]["cus_1"].values()))
    assert isinstance(record, SubscriptionRecord)
    assert record.status == "active"  # the later lifecycle state wins the documented ranking


def test_tie_with_an_api_key_is_settled_by_fetching_the_object() -> None:
    store = MemoryStore()
    truth = subscription_event("past_due", NOW)["data"]["object"]
    stripe = ScriptedStripe(objects={("subscription", "sub_1"): truth})
    applier(store, stripe).apply(subscription_event("active", T0 + 10, event_id="evt_a"))
    result = applier(store, stripe).apply(subscription_event("incomplete", T0 + 10, event_id="evt_b"))
    assert result.tie_fetched
    assert stripe.calls == [("subscription", "sub_1")]
    stored = store.records["cus_1"][("subscription", "sub_1")]
    assert isinstance(stored.record, SubscriptionRecord)
    assert stored.record.status == "past_due"
    assert stored.stamp.created == NOW  # a fetched object is stamped with the fetch time
    # ... so a later-arriving older event cannot overwrite it.
    assert applier(store, stripe).apply(subscription_event("active", T0 + 50)).outcome is Outcome.STALE


def test_no_stripe_call_except_on_ties() -> None:
    store = MemoryStore()
    stripe = ScriptedStripe()
    for offset, status in enumerate(["incomplete", "active", "past_due", "active", "canceled"]):
        applier(store, stripe).apply(subscription_event(status, T0 + offset))
    assert stripe.calls == []


def test_event_queued_by_reference_is_fetched_from_stripe() -> None:
    full = subscription_event("active", T0 + 10, event_id="evt_big")
    reference = queued_by_reference(full)
    stripe = ScriptedStripe(events={"evt_big": full})
    store = MemoryStore()
    result = applier(store, stripe).apply(reference)
    assert result.outcome is Outcome.APPLIED
    assert store.records["cus_1"][("subscription", "sub_1")].stamp.event_id == "evt_big"


def test_event_without_object_and_without_api_key_is_retried_not_dropped() -> None:
    reference = queued_by_reference(subscription_event("active", T0, event_id="evt_big"))
    with pytest.raises(RetryLater, match="no API key"):
        applier(MemoryStore()).apply(reference)


def test_thin_event_fetches_the_object_it_points_at() -> None:
    truth = subscription_event("active", T0)["data"]["object"]
    stripe = ScriptedStripe(objects={("subscription", "sub_1"): truth})
    thin = s.thin_event(
        s.IdFactory(1),
        "v1.customer.subscription.updated",
        created=1_767_225_600,  # 2026-01-01
        related_object=("subscription", "sub_1"),
        id="evt_thin",
    )
    store = MemoryStore()
    assert applier(store, stripe).apply(thin).outcome is Outcome.APPLIED
    assert store.records["cus_1"][("subscription", "sub_1")].stamp.created == NOW


def test_unknown_events_and_upcoming_invoices_are_acknowledged_and_write_nothing() -> None:
    store = MemoryStore()
    ids = s.IdFactory(1)
    payout = s.event(ids, "payout.paid", {"id": "po_1", "object": "payout"}, created=T0)
    assert applier(store).apply(payout).outcome is Outcome.IGNORED
    upcoming = s.invoice(
        ids,
        customer="cus_1",
        subscription="sub_1",
        items=[s.ItemSpec(PRO)],
        status="draft",
        billing_reason="upcoming",
        created=T0,
        period_start=T0,
        period_end=T0 + DAY,
    )
    upcoming.pop("id", None)
    upcoming_event = s.event(ids, "invoice.upcoming", upcoming, created=T0)
    assert applier(store, ScriptedStripe()).apply(upcoming_event).outcome is Outcome.IGNORED
    assert store.commits == 0


def test_checkout_line_items_are_fetched_once_per_session() -> None:
    stripe = ScriptedStripe(
        line_items={"cs_1": s.checkout_line_items(session_id="cs_1", prices=[(BOOK, 1)])["data"]}
    )
    store = MemoryStore()
    applier(store, stripe).apply(purchase_events(T0 + 1, paid=False))
    applier(store, stripe).apply(purchase_events(T0 + 2))
    assert stripe.calls == [("line_items", "cs_1")]
    assert features(store) == {"prod_book": Grant(None, "cs_1")}


def test_without_an_api_key_a_purchase_falls_back_to_metadata_and_says_so() -> None:
    store = MemoryStore()
    result = applier(store).apply(purchase_events(T0 + 1))
    assert result.outcome is Outcome.APPLIED
    assert any("STRIPE_API_KEY" in note for note in result.notes)
    record = store.records["cus_1"][("purchase", "cs_1")].record
    assert isinstance(record, PurchaseRecord)
    assert record.line_items is None


def test_guest_checkout_is_stored_apart_and_counted_never_dropped() -> None:
    store = MemoryStore()
    result = applier(store).apply(purchase_events(T0 + 1, customer=None))
    assert result.outcome is Outcome.GUEST
    assert "cs_1" in store.guests
    assert store.entitlements == {}


def dispute_event(created: int, status: str = "lost") -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.dispute(
        ids, id="dp_1", charge="ch_1", payment_intent="pi_1", amount=900, status=status, created=created
    )  # type: ignore[arg-type]
    return s.event(ids, "charge.dispute.closed", obj, created=created)


def test_lost_dispute_finds_the_customer_through_the_payment_and_takes_the_purchase_back() -> None:
    stripe = ScriptedStripe(
        line_items={"cs_1": s.checkout_line_items(session_id="cs_1", prices=[(BOOK, 1)])["data"]}
    )
    store = MemoryStore()
    applier(store, stripe).apply(purchase_events(T0 + 1))
    assert "prod_book" in features(store)
    result = applier(store, stripe).apply(dispute_event(T0 + 5))
    assert result.customer_id == "cus_1"
    assert features(store) == {}


def test_dispute_before_its_purchase_is_stored_unmatched_without_a_key_and_fetched_with_one() -> None:
    store = MemoryStore()
    result = applier(store).apply(dispute_event(T0 + 5))
    assert result.outcome is Outcome.UNMATCHED
    assert set(store.unmatched["pi_1"]) == {("dispute", "dp_1")}
    charge = s.charge(
        s.IdFactory(0), id="ch_1", amount=900, customer="cus_1", payment_intent="pi_1", created=T0
    )
    stripe = ScriptedStripe(objects={("charge", "ch_1"): charge})
    store = MemoryStore()
    assert applier(store, stripe).apply(dispute_event(T0 + 5)).customer_id == "cus_1"
    assert stripe.calls == [("charge", "ch_1")]


def test_entitlement_summary_with_more_pages_fetches_the_rest() -> None:
    summary = s.active_entitlement_summary(
        customer="cus_1", features=[s.FeatureSpec("seats", "Seats")], has_more=True
    )
    event = s.event(s.IdFactory(0), "entitlements.active_entitlement_summary.updated", summary, created=T0)
    stripe = ScriptedStripe(entitlement_keys={"cus_1": ["seats", "sso"]})
    store = MemoryStore()
    applier(store, stripe).apply(subscription_event("active", T0 - 10))
    applier(store, stripe).apply(event)
    assert set(features(store)) == {"seats", "sso"}
    assert features(store)["seats"].source == "entitlements"


def customer_event(created: int, user: str | None, event_type: str = "customer.updated") -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.customer(ids, id="cus_1", created=T0, metadata={"user_id": user} if user else {})
    return s.event(ids, event_type, obj, created=created)


def test_user_lookup_follows_the_customer_metadata() -> None:
    store = MemoryStore()
    applier(store).apply(customer_event(T0 + 1, "user-1"))
    assert store.users == {("user-1", False): "cus_1"}
    applier(store).apply(customer_event(T0 + 2, "user-2"))
    assert store.users == {("user-2", False): "cus_1"}


def test_checkout_client_reference_id_links_the_user() -> None:
    store = MemoryStore()
    applier(store).apply(purchase_events(T0 + 1))
    assert store.users == {("user-42", False): "cus_1"}


def test_deleted_customer_keeps_an_entitlements_item_with_no_features() -> None:
    store = MemoryStore()
    applier(store).apply(subscription_event("active", T0 + 1))
    applier(store).apply(customer_event(T0 + 2, "user-1", "customer.deleted"))
    stored = store.entitlements["cus_1"].entitlements
    assert stored.deleted
    assert stored.features == {}
    # A subscription update that Stripe sends after the deletion does not bring access back.
    applier(store).apply(subscription_event("active", T0 + 3))
    assert store.entitlements["cus_1"].entitlements.features == {}


def test_a_concurrent_writer_makes_the_applier_reread_and_retry() -> None:
    store = MemoryStore()
    applier(store).apply(subscription_event("active", T0 + 1))

    def other_writer(_: CustomerChange) -> None:
        store.records_versions["cus_1"] += 1  # e.g. a dispute applied from another message group

    store.before_commit = other_writer
    assert applier(store).apply(subscription_event("past_due", T0 + 2)).outcome is Outcome.APPLIED
    assert store.records_versions["cus_1"] == 3


def test_a_writer_that_keeps_conflicting_fails_the_message_for_a_retry() -> None:
    class AlwaysConflicting(MemoryStore):
        def commit(self, change: CustomerChange) -> None:
            raise ConcurrentChange(change.customer_id)

    store = AlwaysConflicting()
    with pytest.raises(ConcurrentChange):
        applier(store).apply(subscription_event("active", T0 + 1))
    assert store.entitlements == {}


def test_malformed_object_is_an_error_not_a_silent_skip() -> None:
    event = subscription_event("active", T0 + 1)
    del event["data"]["object"]["status"]
    with pytest.raises(MalformedEvent):
        applier(MemoryStore()).apply(event)


def test_connect_account_is_kept_with_the_record_and_used_to_fetch_it() -> None:
    store = MemoryStore()
    truth = subscription_event("active", NOW)["data"]["object"]
    stripe = ScriptedStripe(objects={("subscription", "sub_1"): truth})
    first = subscription_event("active", T0 + 10, event_id="evt_a") | {"account": "acct_connected"}
    second = subscription_event("past_due", T0 + 10, event_id="evt_b") | {"account": "acct_connected"}
    applier(store, stripe).apply(first)
    assert store.records["cus_1"][("subscription", "sub_1")].account == "acct_connected"
    applier(store, stripe).apply(second)  # a tie: fetched with the account, and still stored with it
    assert stripe.accounts == ["acct_connected"]
    assert store.records["cus_1"][("subscription", "sub_1")].account == "acct_connected"
