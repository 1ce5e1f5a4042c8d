"""A fetch that finds nothing is an answer (issue 20, 5): Stripe's 404 `resource_missing` for a thin
event's object, a same-second tie or an event fetched by id means the object is gone. The worker
applies its deletion where that changes access (a customer, a subscription, a draft invoice) and
otherwise acknowledges the event; never a retry, never the dead-letter queue. The result names what
was not found (the worker logs it as `not_found`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from domain.entitlements import EntitlementRules
from domain.records import ProfileRecord, PurchaseRecord, SubscriptionRecord
from domain.stripe_objects import NotAtStripe
from domain.sync import EventApplier, Outcome
from events.stripe import objects as s
from harness.memory_store import MemoryStore, ScriptedStripe
from tests.support.aws_event_shapes import queued_by_reference
from tests.support.book_purchase import book_session
from tests.support.subscription_history import T0, subscription_event

NOW = T0 + 86_400


class StripeWithout(ScriptedStripe):
    """Answers what it holds; anything else as Stripe does for a deleted object: 404."""

    def fetch_object(
        self, object_type: str, object_id: str, livemode: bool, account: str | None
    ) -> Mapping[str, Any]:
        if (object_type, object_id) not in self.objects:
            self.calls.append((object_type, object_id))
            raise NotAtStripe(f"No such {object_type}: '{object_id}'")
        return super().fetch_object(object_type, object_id, livemode, account)

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        if event_id not in self.events:
            raise NotAtStripe(f"No such event: '{event_id}'")
        return super().fetch_event(event_id, livemode, account)

    def fetch_thin_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        if event_id not in self.thin_events:
            raise NotAtStripe(f"No such event: '{event_id}'")
        return super().fetch_thin_event(event_id, livemode, account)


def applier(store: MemoryStore, stripe: ScriptedStripe) -> EventApplier:
    return EventApplier(store, EntitlementRules(), clock=lambda: NOW, stripe=stripe)


def thin(object_type: str, object_id: str | None) -> dict[str, Any]:
    related = (object_type, object_id) if object_id is not None else None
    return s.thin_event(
        s.IdFactory(0), f"v1.{object_type}.updated", created=T0 + 50, related_object=related, id="evt_thin"
    )


def subscribed(store: MemoryStore, stripe: ScriptedStripe, *, event_id: str = "evt_sub") -> None:
    event = subscription_event(
        "active", T0 + 10, event_type="customer.subscription.created", event_id=event_id
    )
    assert applier(store, stripe).apply(event).outcome is Outcome.APPLIED


def test_a_thin_event_about_a_removed_customer_applies_the_deletion() -> None:
    store, stripe = MemoryStore(), StripeWithout()
    subscribed(store, stripe)
    result = applier(store, stripe).apply(thin("customer", "cus_1"))
    assert result.outcome is Outcome.APPLIED
    assert result.not_found == ("customer cus_1",)
    profile = store.records["cus_1"][("profile", "cus_1")].record
    assert isinstance(profile, ProfileRecord)
    assert profile.deleted
    assert store.entitlements["cus_1"].entitlements.deleted
    assert store.entitlements["cus_1"].entitlements.features == {}


@pytest.mark.parametrize("object_type", ["invoice", "subscription", "charge", "checkout.session"])
def test_a_thin_event_about_an_object_stripe_no_longer_has_is_acknowledged(object_type: str) -> None:
    """Which customer it belonged to is unknown here (a deleted draft invoice, a removed object): the
    event is ignored, nothing is written, nothing is retried."""
    store, stripe = MemoryStore(), StripeWithout()
    result = applier(store, stripe).apply(thin(object_type, "obj_gone"))
    assert result.outcome is Outcome.IGNORED
    assert result.not_found == (f"{object_type} obj_gone",)
    assert "404" in result.reason
    assert store.commits == 0


def test_a_thin_event_stripe_no_longer_has_is_acknowledged() -> None:
    store, stripe = MemoryStore(), StripeWithout()
    result = applier(store, stripe).apply(thin("customer", None))
    assert (result.outcome, result.not_found) == (Outcome.IGNORED, ("event evt_thin",))
    assert store.commits == 0


def test_an_event_queued_by_reference_that_stripe_no_longer_keeps_is_acknowledged() -> None:
    """An event too large for the queue is fetched by id; Stripe keeps events 30 days."""
    store, stripe = MemoryStore(), StripeWithout()
    reference = queued_by_reference(subscription_event("active", T0, event_id="evt_old"))
    result = applier(store, stripe).apply(reference)
    assert (result.outcome, result.not_found) == (Outcome.IGNORED, ("event evt_old",))


def test_a_same_second_tie_on_a_subscription_stripe_no_longer_has_ends_it() -> None:
    store, stripe = MemoryStore(), StripeWithout()
    subscribed(store, stripe, event_id="evt_a")
    tie = subscription_event("active", T0 + 10, event_id="evt_b", metadata={"tier": "x"})
    result = applier(store, stripe).apply(tie)
    assert result.outcome is Outcome.APPLIED
    assert result.tie_fetched
    assert result.not_found == ("subscription sub_1",)
    record = store.records["cus_1"][("subscription", "sub_1")].record
    assert isinstance(record, SubscriptionRecord)
    assert record.status == "canceled"
    assert store.entitlements["cus_1"].entitlements.features == {}


def test_a_same_second_tie_on_a_purchase_stripe_no_longer_has_leaves_it_as_it_is() -> None:
    """Money that moved stays moved: a purchase's access is not taken back by a 404."""
    store = MemoryStore()
    stripe = StripeWithout(line_items={"cs_1": []})
    ids = s.IdFactory(3)
    session = book_session(T0)
    first = s.event(ids, "checkout.session.completed", session, created=T0 + 10, id="evt_a")
    applier(store, stripe).apply(first)
    second = s.event(ids, "checkout.session.completed", session, created=T0 + 10, id="evt_b")
    result = applier(store, stripe).apply(second)
    assert (result.outcome, result.not_found) == (Outcome.IGNORED, ("checkout.session cs_1",))
    stored = store.records["cus_1"][("purchase", "cs_1")]
    assert isinstance(stored.record, PurchaseRecord)
    assert stored.stamp.event_id == "evt_a"
    assert set(store.entitlements["cus_1"].entitlements.features) == {"prod_book"}


def test_a_refund_whose_charge_stripe_no_longer_has_is_stored_as_unmatched() -> None:
    store, stripe = MemoryStore(), StripeWithout()
    ids = s.IdFactory(4)
    refund = s.refund(
        ids, id="re_1", charge="ch_gone", payment_intent=None, customer=None, amount=5, created=T0
    )
    result = applier(store, stripe).apply(s.event(ids, "charge.refund.updated", refund, created=T0 + 5))
    assert (result.outcome, result.not_found) == (Outcome.UNMATCHED, ("charge ch_gone",))
