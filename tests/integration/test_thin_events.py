"""Thin events through the real adapter (stripe SDK) against the local fake Stripe API.

Stripe (https://docs.stripe.com/event-destinations, and the changelog "Makes thin events for API v1
resources generally available", 2026-09-30): a thin event notification carries the event id and,
when there is one, `related_object`; `GET /v2/core/events/{id}` returns the event, whose
`snapshot_event` names the API v1 snapshot event. The account of a connected account's event travels
as `context`, and v2 requests send it as `Stripe-Context`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.stripe_api import StripeApi
from domain.entitlements import EntitlementRules
from domain.records import SubscriptionRecord
from domain.sync import EventApplier, Outcome
from events.stripe import objects as s
from harness.fake_stripe import FakeStripe
from harness.memory_store import MemoryStore
from tests.support.book_purchase import BOOK_AMOUNT, book_session
from tests.support.subscription_history import T0, subscription_event

KEY = "sk_test_thin"
DAY = 86_400
NEW_YEAR = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


def applier(store: MemoryStore, fake: FakeStripe) -> EventApplier:
    return EventApplier(
        store, EntitlementRules(), clock=lambda: T0 + DAY, stripe=StripeApi({"test": KEY}, fake.url)
    )


def notification(
    event_type: str,
    related_object: tuple[str, str] | None = None,
    *,
    created: int = NEW_YEAR,
    id: str = "evt_test_65RNzFGhTWFx8oxE",
    **fetched: Any,
) -> dict[str, Any]:
    """A thin event naming `related_object` (type, id); `fetched`: what GET /v2/core/events/{id} adds."""
    event = s.thin_event(s.IdFactory(0), event_type, created=created, related_object=related_object, id=id)
    return event | fetched


def test_a_thin_event_without_related_object_is_read_at_v2_and_its_snapshot_event_applied(
    fake: FakeStripe,
) -> None:
    v1 = subscription_event("active", T0 + 9, event_id="evt_1Snapshot")
    fake.put_event(v1, delivered=True)
    fake.put_thin_event(notification("v1.customer.subscription.updated", snapshot_event="evt_1Snapshot"))
    store = MemoryStore()
    result = applier(store, fake).apply(notification("v1.customer.subscription.updated"))
    assert result.outcome is Outcome.APPLIED
    assert [r.path for r in fake.requests] == [
        "/v2/core/events/evt_test_65RNzFGhTWFx8oxE",
        "/v1/events/evt_1Snapshot",
    ]
    stored = store.records["cus_1"][("subscription", "sub_1")]
    assert isinstance(stored.record, SubscriptionRecord)
    assert stored.stamp.event_id == "evt_1Snapshot"


def test_a_thin_event_stripe_no_longer_has_is_acknowledged_with_what_was_not_found(fake: FakeStripe) -> None:
    """Stripe's 404 is an answer: there is nothing to apply (issue 20, 5), and nothing to retry."""
    result = applier(MemoryStore(), fake).apply(notification("v1.customer.subscription.updated"))
    assert result.outcome is Outcome.IGNORED
    assert result.not_found == ("event evt_test_65RNzFGhTWFx8oxE",)
    assert "404" in result.reason


def test_thin_invoice_upcoming_is_ignored_without_any_request(fake: FakeStripe) -> None:
    result = applier(MemoryStore(), fake).apply(notification("v1.invoice.upcoming"))
    assert result.outcome is Outcome.IGNORED
    assert fake.requests == []


def test_a_thin_checkout_event_fetches_the_session_with_its_payments_charge_and_counts_the_term_from_it(
    fake: FakeStripe,
) -> None:
    """The session is created at T0 and paid 20 hours later; the fetch expands
    `payment_intent.latest_charge`, whose `created` starts a purchase's term (issue 20, 8)."""
    ids = s.IdFactory(2)
    paid = T0 + 20 * 3600
    fake.put_session(book_session(T0, customer="cus_thin"), [])
    fake.put(
        s.payment_intent(
            ids,
            id="pi_1",
            amount=BOOK_AMOUNT,
            customer="cus_thin",
            status="succeeded",
            created=T0,
            latest_charge="ch_thin",
        )
    )
    fake.put(
        s.charge(
            ids, id="ch_thin", amount=BOOK_AMOUNT, customer="cus_thin", payment_intent="pi_1", created=paid
        )
    )
    store = MemoryStore()
    rules = EntitlementRules(purchase_term_seconds=30 * DAY)
    thin = notification(
        "v1.checkout.session.completed",
        ("checkout.session", "cs_1"),
        created=NEW_YEAR + 9 * DAY,  # delivered (and fetched) days later
    )
    api = StripeApi({"test": KEY}, fake.url)
    result = EventApplier(store, rules, clock=lambda: T0 + 9 * DAY, stripe=api).apply(thin)
    assert result.outcome is Outcome.APPLIED
    fetch = next(r for r in fake.requests if r.path == "/v1/checkout/sessions/cs_1")
    assert "payment_intent.latest_charge" in fetch.query.values()
    grant = store.entitlements["cus_thin"].entitlements.features["prod_book"]
    assert grant.until == paid + 30 * DAY


def test_a_thin_event_whose_object_stripe_answers_404_for_is_an_answer_not_a_failure(
    fake: FakeStripe,
) -> None:
    """The real adapter turns Stripe's 404 `resource_missing` into the domain's NotAtStripe: a removed
    customer's deletion is applied, a deleted draft invoice's event acknowledged (issue 20, 5)."""
    store = MemoryStore()
    removed = notification(
        "v1.customer.updated",
        ("customer", "cus_removed"),
    )
    result = applier(store, fake).apply(removed)
    assert (result.outcome, result.not_found) == (Outcome.APPLIED, ("customer cus_removed",))
    assert store.entitlements["cus_removed"].entitlements.deleted
    draft = notification(
        "v1.invoice.deleted",
        ("invoice", "in_deleted"),
        id="evt_test_draft",
    )
    result = applier(store, fake).apply(draft)
    assert (result.outcome, result.not_found) == (Outcome.IGNORED, ("invoice in_deleted",))
    assert [r.path for r in fake.requests] == ["/v1/customers/cus_removed", "/v1/invoices/in_deleted"]
