"""A Stripe Entitlements summary is Stripe's computed answer: its features are granted as it states them,
and end only when a record newer than the summary shows that the subscription bringing them no longer
grants (ARCHITECTURE.md, "Access rules"). Source: https://docs.stripe.com/billing/entitlements
(`entitlements.active_entitlement_summary.updated`, GET /v1/entitlements/active_entitlements)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from domain.entitlements import EntitlementRules, Grant
from domain.reconcile import fetched_message
from domain.sync import EventApplier
from events.stripe import objects as s
from harness.memory_store import MemoryStore
from tests.support.subscription_history import DAY, T0, subscription_event

NOW = T0 + 3 * DAY
TEAM = s.PriceSpec("price_team", "prod_team", lookup_key="team_monthly")
SUMMARY = "entitlements.active_entitlement_summary.updated"


def applier(store: MemoryStore, **rules: Any) -> EventApplier:
    return EventApplier(store, EntitlementRules(**rules), clock=lambda: NOW)


def granted(store: MemoryStore, at: int = NOW) -> dict[str, Grant]:
    return store.entitlements["cus_1"].entitlements.granted_at(at)


def summary_event(keys: list[str], created: int) -> dict[str, Any]:
    ids = s.IdFactory(f"summary-{created}")
    summary = s.active_entitlement_summary(
        customer="cus_1", features=[s.FeatureSpec(key, key.title()) for key in keys]
    )
    return s.event(ids, SUMMARY, summary, created=created)


def test_a_summary_alone_grants_its_features_as_stripe_states_them() -> None:
    store = MemoryStore()
    applier(store).apply(summary_event(["reports", "sso"], T0))
    assert granted(store) == {
        "reports": Grant(None, "entitlements"),
        "sso": Grant(None, "entitlements"),
    }


def test_a_summary_before_its_subscription_grants_at_once_and_in_either_order() -> None:
    events = [
        subscription_event("active", T0, event_type="customer.subscription.created"),
        summary_event(["reports"], T0 + 1),
    ]
    for order in itertools.permutations(events):
        store = MemoryStore()
        for event in order:
            applier(store).apply(event)
            if event["type"] == SUMMARY:
                assert granted(store) == {"reports": Grant(None, "entitlements")}
        assert granted(store) == {"reports": Grant(None, "entitlements")}


def test_a_summary_then_a_lost_cancellation_ends_when_the_reconciler_fetches_the_subscription() -> None:
    store = MemoryStore()
    applier(store).apply(subscription_event("active", T0, event_type="customer.subscription.created"))
    applier(store).apply(summary_event(["reports"], T0 + 1))
    # customer.subscription.deleted (T0 + DAY) never arrived; the reconciler fetches the subscription.
    canceled = subscription_event("canceled", T0 + DAY, canceled_at=T0 + DAY, ended_at=T0 + DAY)
    fetched_at = T0 + 2 * DAY
    applier(store).apply(
        json.loads(fetched_message(canceled["data"]["object"], fetched_at * 1000, None).body)
    )
    assert granted(store) == {}


def test_a_cancellation_older_than_the_summary_does_not_end_what_the_summary_grants() -> None:
    """The customer canceled one subscription, then subscribed again; Stripe's summary after both still
    lists the feature, and arrives before the older cancellation."""
    store = MemoryStore()
    applier(store).apply(summary_event(["reports"], T0 + 2 * DAY))
    canceled = subscription_event(
        "canceled",
        T0 + DAY,
        event_type="customer.subscription.deleted",
        canceled_at=T0 + DAY,
        ended_at=T0 + DAY,
    )
    applier(store).apply(canceled)
    assert granted(store) == {"reports": Grant(None, "entitlements")}


def test_of_two_subscriptions_the_one_that_pauses_takes_only_its_own_features_along() -> None:
    """prod_pro brings `reports` (the rules name it), prod_team brings `seats` (named by nobody): when
    sub_pro pauses, after the summary, `reports` ends and `seats` stays with sub_team."""
    store = MemoryStore()
    rules = {"features_by_product": {"prod_pro": ("reports",)}}
    applier(store, **rules).apply(
        subscription_event(
            "active", T0, event_type="customer.subscription.created", subscription_id="sub_pro"
        )
    )
    applier(store, **rules).apply(
        subscription_event(
            "active", T0, event_type="customer.subscription.created", subscription_id="sub_team", price=TEAM
        )
    )
    applier(store, **rules).apply(summary_event(["reports", "seats"], T0 + 1))
    assert set(granted(store)) == {"reports", "seats"}
    paused = subscription_event(
        "paused", T0 + DAY, event_type="customer.subscription.paused", subscription_id="sub_pro"
    )
    applier(store, **rules).apply(paused)
    assert granted(store) == {"seats": Grant(None, "entitlements")}


def test_a_newer_subscription_running_to_its_period_end_bounds_the_features_it_brings() -> None:
    store = MemoryStore()
    applier(store).apply(summary_event(["reports"], T0 + 1))
    applier(store).apply(subscription_event("active", T0 + DAY, cancel_at_period_end=True))
    assert granted(store) == {"reports": Grant(T0 + 30 * DAY, "entitlements")}
    assert granted(store, T0 + 30 * DAY) == {}


def test_a_newer_summary_that_lists_nothing_ends_everything() -> None:
    store = MemoryStore()
    applier(store).apply(summary_event(["reports"], T0))
    applier(store).apply(summary_event([], T0 + DAY))
    assert granted(store) == {}
