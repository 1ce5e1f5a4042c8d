"""Every event family of the design, as Stripe sends it (scenarios built from Stripe's own object
shapes and documented event sequences), in both API shapes, with and without an API key."""

from __future__ import annotations

from typing import Any

import pytest

from domain.entitlements import EntitlementRules
from domain.sync import EventApplier, Outcome, Result
from events.scenarios import Scenario, ScenarioParams, build
from harness.memory_store import MemoryStore, ScriptedStripe, scripted_stripe

PARAMS = ScenarioParams()
PRO, TEAM, API = PARAMS.product_id, PARAMS.upgrade_product_id, PARAMS.metered_product_id
COURSE = PARAMS.one_time_product_id
DAY = 86_400


def run(
    name: str, *, with_key: bool = True, api: str = "current", **param_changes: Any
) -> tuple[MemoryStore, list[Result], Scenario, ScriptedStripe | None]:
    scenario = build(name, ScenarioParams(api=api, **param_changes))  # type: ignore[arg-type]
    stripe = scripted_stripe(scenario) if with_key else None
    store = MemoryStore()
    last = max(int(e["created"]) if isinstance(e["created"], int) else 0 for e in scenario.events)
    applier = EventApplier(store, EntitlementRules(), clock=lambda: last + 60, stripe=stripe)
    results = [applier.apply(event) for event in scenario.events]
    return store, results, scenario, stripe


def access(store: MemoryStore, customer: str, now: int) -> tuple[set[str], bool, bool]:
    stored = store.entitlements[customer].entitlements
    return set(stored.granted_at(now)), stored.payment_issue, stored.deleted


def last_created(scenario: Scenario) -> int:
    return max(int(e["created"]) for e in scenario.events)


# name -> (features granted just after the last event, payment issue, deleted)
EXPECTED: dict[str, tuple[set[str], bool, bool]] = {
    "signup_paid": ({PRO}, False, False),
    "signup_burst": ({PRO}, False, False),
    "signup_incomplete_expired": (set(), False, False),
    "trial_converts": ({PRO}, False, False),
    "trial_ends_without_payment_method": (set(), False, False),
    "trial_ends_without_payment_method_paused": (set(), False, False),
    "trial_ends_without_payment_method_invoice": ({PRO}, True, False),
    "renewal": ({PRO}, False, False),
    "payment_failed_then_recovered": ({PRO}, False, False),
    "payment_failed_then_unpaid": (set(), True, False),
    "payment_action_required": ({PRO}, True, False),
    "cancel_scheduled": ({PRO}, False, False),
    "cancel_at_period_end": (set(), False, False),
    "pause_and_resume": ({PRO}, False, False),
    "collection_paused": ({PRO}, False, False),
    "plan_change_with_unpaid_invoice": ({TEAM}, True, False),
    "multi_item_with_metered": ({PRO, API}, False, False),
    "one_time_purchase": ({COURSE}, False, False),
    "one_time_purchase_delayed": ({COURSE}, False, False),
    "one_time_purchase_delayed_failed": (set(), False, False),
    "purchase_refunded": (set(), False, False),
    "purchase_dispute_lost": (set(), False, False),
    "purchase_dispute_won": ({COURSE}, False, False),
    "customer_deleted": (set(), False, True),
    "entitlements_summary_updated": ({"pro_reports", "priority_support"}, False, False),
    "entitlements_summary_has_more": ({"pro_reports", "priority_support"}, False, False),
    "invoice_voided": ({PRO}, False, False),
    "invoice_marked_uncollectible": ({PRO}, False, False),
    "test_clock_renewal": ({PRO}, False, False),
    "connect_signup_paid": ({PRO}, False, False),
    "send_invoice_overdue": ({PRO}, True, False),
    "plan_change_then_renewal_fails": ({TEAM}, True, False),
    "subscription_payment_disputed": ({PRO}, False, False),
    "purchase_refund_failed": ({COURSE}, False, False),
    "entitlements_summary_then_paused": (set(), False, False),
    "entitlements_summary_event_lost": (set(), False, False),
}


@pytest.mark.parametrize("api", ["current", "legacy"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_family_ends_in_the_access_stripe_means(name: str, api: str) -> None:
    store, results, scenario, _ = run(name, api=api)
    assert scenario.customer_id is not None
    assert access(store, scenario.customer_id, last_created(scenario) + 1) == EXPECTED[name], scenario.story
    assert all(r.outcome in (Outcome.APPLIED, Outcome.IGNORED, Outcome.STALE) for r in results), [
        (r.event_type, r.outcome, r.reason) for r in results
    ]


def test_accounts_v2_customer_account_is_the_customer_id() -> None:
    store, _, scenario, _ = run("accounts_v2_signup_paid")
    assert scenario.customer_id is not None
    assert scenario.customer_id.startswith("acct_")
    assert access(store, scenario.customer_id, last_created(scenario) + 1) == ({PRO}, False, False)


def test_past_due_access_ends_after_the_grace_period_by_itself() -> None:
    store, _, scenario, _ = run("payment_action_required")
    assert scenario.customer_id is not None
    grant = store.entitlements[scenario.customer_id].entitlements.features[PRO]
    assert grant.until is not None
    assert grant.until - 7 * DAY < last_created(scenario) < grant.until
    assert access(store, scenario.customer_id, grant.until)[0] == set()


def test_cancellation_at_period_end_runs_to_the_period_end() -> None:
    store, _, scenario, _ = run("cancel_scheduled")
    assert scenario.customer_id is not None
    until = store.entitlements[scenario.customer_id].entitlements.features[PRO].until
    subscription = next(o for o in scenario.api_objects.values() if o["object"] == "subscription")
    assert until == max(item["current_period_end"] for item in subscription["items"]["data"])


def test_trial_will_end_changes_no_access() -> None:
    _store, results, _scenario, _ = run("trial_converts")
    trial_will_end = next(r for r in results if r.event_type == "customer.subscription.trial_will_end")
    assert not trial_will_end.entitlements_changed


def test_one_time_purchase_without_an_api_key_falls_back_to_the_sessions_metadata() -> None:
    store, results, scenario, _ = run("one_time_purchase", with_key=False)
    completed = next(r for r in results if r.event_type == "checkout.session.completed")
    assert completed.outcome is Outcome.APPLIED
    assert completed.notes == ()
    assert scenario.customer_id is not None
    assert access(store, scenario.customer_id, last_created(scenario) + 1)[0] == {COURSE}


def test_summary_with_more_pages_and_no_api_key_keeps_what_it_was_sent() -> None:
    store, _, scenario, _ = run("entitlements_summary_has_more", with_key=False)
    assert scenario.customer_id is not None
    granted = access(store, scenario.customer_id, last_created(scenario) + 1)[0]
    assert granted
    assert granted < {"pro_reports", "priority_support"}


def test_signup_burst_ties_are_settled_by_fetching_with_a_key_and_by_ranking_without() -> None:
    _store, results, _scenario, stripe = run("signup_burst")
    assert stripe is not None
    assert any(r.tie_fetched for r in results)
    assert stripe.calls
    _, results_without, _, _ = run("signup_burst", with_key=False)
    assert not any(r.tie_fetched for r in results_without)


def test_no_stripe_call_except_ties_line_items_and_summaries() -> None:
    for name in (
        "renewal",
        "payment_failed_then_recovered",
        "plan_change_with_unpaid_invoice",
        "pause_and_resume",
    ):
        _, _, _, stripe = run(name)
        assert stripe is not None
        assert stripe.calls == [], name


def test_guest_checkout_is_counted_and_grants_nobody() -> None:
    store, results, _, _ = run("guest_checkout")
    assert Outcome.GUEST in {r.outcome for r in results}
    assert store.entitlements == {}
    assert store.guests


def test_checkout_links_the_applications_user_to_the_customer() -> None:
    store, _, scenario, _ = run("signup_paid")
    assert store.users == {(PARAMS.user_id, False): scenario.customer_id}


def test_deleted_customer_loses_the_user_lookup_its_metadata_gave() -> None:
    store, results, _, _ = run("customer_deleted")
    created = next(r for r in results if r.event_type == "customer.created")
    assert created.outcome is Outcome.APPLIED
    assert store.users == {}


def grant_of(store: MemoryStore, scenario: Scenario, feature: str) -> int | None:
    assert scenario.customer_id is not None
    return store.entitlements[scenario.customer_id].entitlements.features[feature].until


def test_send_invoice_grace_runs_from_the_due_date() -> None:
    """Stripe: with send_invoice the subscription turns past_due once the invoice's due date passes
    (https://docs.stripe.com/billing/subscriptions/overview, payment status). Counting from the
    invoice's created would have ended access 23 days before the subscription was even past_due."""
    store, _, scenario, _ = run("send_invoice_overdue", with_key=False)
    due = PARAMS.start + 30 * DAY
    assert grant_of(store, scenario, PRO) == due + 7 * DAY
    assert access(store, scenario.customer_id or "", due + 6 * DAY)[0] == {PRO}


def test_an_older_open_invoice_does_not_eat_the_grace_of_a_later_failed_renewal() -> None:
    store, _, scenario, _ = run("plan_change_then_renewal_fails", with_key=False)
    renewal = next(e for e in reversed(scenario.events) if e["type"] == "invoice.finalized")
    charged = renewal["data"]["object"]["status_transitions"]["finalized_at"]
    older = next(e for e in scenario.events if e["type"] == "invoice.finalized" and e is not renewal)
    assert charged > older["data"]["object"]["created"] + 7 * DAY  # the old rule had no grace left
    assert grant_of(store, scenario, TEAM) == charged + 7 * DAY


def test_a_failed_refund_gives_the_purchase_back_from_stripes_failure_event() -> None:
    _store, results, _scenario, _ = run("purchase_refund_failed", with_key=False)
    refunded = next(r for r in results if r.event_type == "charge.refunded")
    assert refunded.after is not None
    assert COURSE not in refunded.after.features
    failed = next(r for r in results if r.event_type == "charge.refund.updated")
    assert failed.outcome is Outcome.APPLIED
    assert failed.after is not None
    assert COURSE in failed.after.features


@pytest.mark.parametrize("with_key", [True, False])
def test_disputes_of_payments_that_are_not_purchases_are_stored_and_counted_never_failed(
    with_key: bool,
) -> None:
    _, results, _, _ = run("guest_purchase_disputed", with_key=with_key)
    disputes = [r for r in results if r.event_type.startswith("charge.dispute.")]
    assert [r.outcome for r in disputes] == [Outcome.UNMATCHED, Outcome.UNMATCHED]
    store, results, scenario, _ = run("subscription_payment_disputed", with_key=with_key)
    assert {r.outcome for r in results if r.event_type.startswith("charge.dispute.")} == {Outcome.APPLIED}
    assert access(store, scenario.customer_id or "", last_created(scenario) + 1)[0] == {PRO}


def test_summary_features_follow_the_subscription_not_the_last_summary() -> None:
    for name in ("entitlements_summary_then_paused", "entitlements_summary_event_lost"):
        store, _, scenario, _ = run(name)
        assert scenario.customer_id is not None
        stored = store.entitlements[scenario.customer_id].entitlements
        assert stored.granted_at(last_created(scenario) + 1) == {}, name
    # While the trial ran, the summary's features were granted (until the trial's end at most).
    store, results, scenario, _ = run("entitlements_summary_then_paused")
    summary = next(r for r in results if r.event_type.startswith("entitlements."))
    assert summary.after is not None
    assert set(summary.after.features) == {"pro_reports", "priority_support"}
