"""A purchase's term from its payment, whatever path brought it (issue 20, 8): webhook, thin event,
reconciler and backfill all count a fixed term from when the session was paid, never from when the
Checkout session was created (a customer may pay up to a day after, a bank debit days after).

A webhook says it with the event's time; an object fetched from the API with its PaymentIntent's
charge (`payment_intent.latest_charge`, which the fetches and the backfill list expand)."""

from __future__ import annotations

import json
from typing import Any

from domain.entitlements import DAY, EntitlementRules, Grant
from domain.reconcile.backfill import backfill_object
from domain.reconcile.drift import DriftKind, drift_of
from domain.reconcile.pages import BACKFILL_LIST_REQUESTS
from domain.reconcile.repairs import fetched_message
from domain.sync import EventApplier, Outcome
from events.stripe import objects as s
from harness.memory_store import MemoryStore, ScriptedStripe
from tests.support.book_purchase import book_session

T0 = 1_767_000_000  # the session is created
PAID = T0 + 20 * 3600  # the customer pays 20 hours later
NOW = T0 + 10 * DAY  # when the reconciler or the backfill fetches it
TERM = 30 * DAY
RULES = EntitlementRules(purchase_term_seconds=TERM)


def session(*, expanded: bool) -> dict[str, Any]:
    ids = s.IdFactory(T0)
    obj = book_session(T0)
    if not expanded:
        return obj
    charge = s.charge(ids, id="ch_1", amount=900, customer="cus_1", payment_intent="pi_1", created=PAID)
    intent = s.payment_intent(
        ids, id="pi_1", amount=900, customer="cus_1", status="succeeded", created=T0, latest_charge="ch_1"
    )
    return {**obj, "payment_intent": {**intent, "latest_charge": charge}}


def applier(store: MemoryStore, stripe: ScriptedStripe | None = None) -> EventApplier:
    return EventApplier(store, RULES, clock=lambda: NOW, stripe=stripe)


def book(store: MemoryStore) -> Grant:
    return store.entitlements["cus_1"].entitlements.features["prod_book"]


def test_webhook_the_events_time() -> None:
    store = MemoryStore()
    event = s.event(s.IdFactory(1), "checkout.session.completed", session(expanded=False), created=PAID)
    applier(store).apply(event)
    assert book(store) == Grant(PAID + TERM, "cs_1")


def thin_event() -> dict[str, Any]:
    return s.thin_event(
        s.IdFactory(1),
        "v1.checkout.session.completed",
        created=PAID,
        related_object=("checkout.session", "cs_1"),
        id="evt_thin",
    )


def test_thin_event_the_payments_charge() -> None:
    store = MemoryStore()
    stripe = ScriptedStripe(objects={("checkout.session", "cs_1"): session(expanded=True)})
    stripe.line_items["cs_1"] = []
    assert applier(store, stripe).apply(thin_event()).outcome is Outcome.APPLIED
    assert book(store) == Grant(PAID + TERM, "cs_1")


def test_thin_event_without_the_charge_the_thin_events_time_not_the_fetch() -> None:
    store = MemoryStore()
    stripe = ScriptedStripe(objects={("checkout.session", "cs_1"): session(expanded=False)})
    stripe.line_items["cs_1"] = []
    applier(store, stripe).apply(thin_event())
    assert book(store) == Grant(PAID + TERM, "cs_1")


def apply_fetched(store: MemoryStore, obj: dict[str, Any], fetched_at: int = NOW) -> None:
    message = fetched_message(obj, fetched_at * 1000)
    assert applier(store).apply(json.loads(message.body)).outcome is Outcome.APPLIED


def test_reconciler_the_payments_charge() -> None:
    """A purchase whose `checkout.session.completed` never arrived, found by the reconciler."""
    store = MemoryStore()
    apply_fetched(store, session(expanded=True))
    assert book(store) == Grant(PAID + TERM, "cs_1")


def test_reconciler_repairs_a_purchase_stored_without_its_payment_time() -> None:
    """Stored by an older fetch (no charge): the next pass sees the drift and its repair applies."""
    store = MemoryStore()
    apply_fetched(store, session(expanded=False), fetched_at=NOW - DAY)
    assert book(store) == Grant(T0 + TERM, "cs_1")  # all a fetch without the charge could tell
    stored = store.records["cus_1"][("purchase", "cs_1")]
    assert drift_of("purchase", session(expanded=True), stored, NOW) is DriftKind.STALE
    apply_fetched(store, session(expanded=True))
    assert book(store) == Grant(PAID + TERM, "cs_1")
    repaired = store.records["cus_1"][("purchase", "cs_1")]
    assert drift_of("purchase", session(expanded=True), repaired, NOW + 1) is None


def test_backfill_lists_sessions_with_their_payments_charge_and_counts_from_it() -> None:
    path, params = BACKFILL_LIST_REQUESTS["sessions"]
    assert path == "/v1/checkout/sessions"
    assert "data.payment_intent.latest_charge" in params["expand"]
    listed = backfill_object("sessions", session(expanded=True))
    assert listed is not None
    store = MemoryStore()
    apply_fetched(store, dict(listed))
    assert book(store) == Grant(PAID + TERM, "cs_1")


def test_older_api_versions_the_succeeded_charge_of_the_embedded_list() -> None:
    """Before 2022-11-15 a PaymentIntent embeds its charges (a failed attempt, then the payment)."""
    obj = session(expanded=True)
    charge = obj["payment_intent"].pop("latest_charge")
    failed = {**charge, "id": "ch_0", "status": "failed", "created": T0 + 3600}
    obj["payment_intent"]["charges"] = {"object": "list", "data": [charge, failed], "has_more": False}
    store = MemoryStore()
    apply_fetched(store, obj)
    assert book(store) == Grant(PAID + TERM, "cs_1")
