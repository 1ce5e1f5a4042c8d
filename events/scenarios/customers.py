"""Customers deleted, and Stripe Entitlements summaries."""

from __future__ import annotations

from events.scenarios.steps import signup, subscription_deleted, subscription_paused, trial_signup
from events.scenarios.story import DAY, DEFAULT_PARAMS, Scenario, ScenarioParams, Story
from events.stripe import objects as samples


def _needs_a_customer(story: Story, what: str) -> None:
    if story.accounts_v2:
        raise ValueError(f"{what} a Customer (cus_…), not an Accounts v2 account")


def customer_deleted(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("customer_deleted", params)
    _needs_a_customer(story, "customer_deleted needs")
    subscription, _ = signup(story)
    customer = story.find(params.customer_id)
    at = params.start + 10 * DAY
    request = story.request()
    subscription_deleted(story, subscription, at, request, reason="cancellation_requested")
    # The event carries the customer as it was; fetching it afterwards gives {"deleted": true}.
    story.emit_current("customer.deleted", customer, at, request)
    story.delete_customer(customer.id)
    return story.scenario(
        "The customer is deleted: Stripe cancels the subscription, then sends customer.deleted "
        "(with the full customer object).",
    )


def _summary_updated(story: Story, *, has_more: bool = False) -> None:
    """entitlements.active_entitlement_summary.updated with the customer's features, at the start
    (`has_more`: the summary lists the first feature only)."""
    features = list(story.p.features)
    summary = samples.active_entitlement_summary(
        customer=story.p.customer_id,
        features=features[:1] if has_more else features,
        has_more=has_more,
        livemode=story.p.livemode,
    )
    story.emit("entitlements.active_entitlement_summary.updated", summary, story.p.start, None)


def _entitlements(story: Story, *, has_more: bool) -> None:
    _needs_a_customer(story, "entitlement summaries name")
    signup(story)
    customer = story.p.customer_id
    full = samples.active_entitlement_summary(
        customer=customer, features=list(story.p.features), livemode=story.p.livemode
    )
    story.api_lists[f"/v1/entitlements/active_entitlements?customer={customer}"] = full["entitlements"]
    _summary_updated(story, has_more=has_more)


def entitlements_summary_updated(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("entitlements_summary_updated", params)
    _entitlements(story, has_more=False)
    return story.scenario(
        "The account uses Stripe Entitlements: after the signup, the active entitlement summary lists "
        "the customer's features.",
    )


def entitlements_summary_has_more(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("entitlements_summary_has_more", params)
    _entitlements(story, has_more=True)
    return story.scenario(
        "The summary's entitlement list is truncated (has_more=true): the rest must be fetched from "
        "/v1/entitlements/active_entitlements.",
    )


def entitlements_summary_then_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("entitlements_summary_then_paused", params)
    _needs_a_customer(story, "entitlement summaries name")
    subscription, trial_end = trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    _summary_updated(story)
    subscription_paused(story, subscription, trial_end)
    return story.scenario(
        "The account uses Stripe Entitlements; the trial ends without a payment method and the "
        "subscription pauses. Stripe does not remove a paused subscription's entitlements, so no new "
        "summary event comes.",
    )


def entitlements_summary_event_lost(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("entitlements_summary_event_lost", params)
    _needs_a_customer(story, "entitlement summaries name")
    subscription, _ = signup(story)
    _summary_updated(story)
    subscription_deleted(story, subscription, params.start + 10 * DAY, reason="cancellation_requested")
    return story.scenario(
        "The account uses Stripe Entitlements; the subscription is canceled and the summary event "
        "that would empty the customer's entitlements never arrives.",
    )
