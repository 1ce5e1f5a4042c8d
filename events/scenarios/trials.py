"""Free trials: converted, ended without a payment method (canceled, paused, invoiced), resumed."""

from __future__ import annotations

from events.scenarios.steps import (
    finalized_and_paid,
    invoice_created,
    renewal_fails,
    renewal_paid,
    subscription_deleted,
    subscription_paused,
    trial_signup,
)
from events.scenarios.story import DAY, DEFAULT_PARAMS, Scenario, ScenarioParams, Story, add_months
from events.stripe import objects as samples


def trial_converts(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("trial_converts", params)
    subscription, _ = trial_signup(story, missing_payment_method="cancel", with_payment_method=True)
    renewal_paid(story, subscription, status="active")
    return story.scenario(
        "A 14-day trial with a card on file: trialing, trial_will_end 3 days before the end, then "
        "the first real invoice is paid and the subscription turns active.",
    )


def trial_ends_without_payment_method(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("trial_ends_without_payment_method", params)
    subscription, trial_end = trial_signup(story, missing_payment_method="cancel", with_payment_method=False)
    subscription_deleted(story, subscription, trial_end)
    return story.scenario(
        "A trial without a payment method and end_behavior.missing_payment_method=cancel: the "
        "subscription is canceled when the trial ends.",
    )


def trial_ends_without_payment_method_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("trial_ends_without_payment_method_paused", params)
    subscription, trial_end = trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    subscription_paused(story, subscription, trial_end)
    return story.scenario(
        "A trial without a payment method and end_behavior.missing_payment_method=pause: the "
        "subscription turns paused when the trial ends (no invoice).",
    )


def trial_ends_without_payment_method_invoice(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("trial_ends_without_payment_method_invoice", params)
    subscription, trial_end = trial_signup(
        story, missing_payment_method="create_invoice", with_payment_method=False
    )
    renewal_fails(story, subscription, retry_at=trial_end + 3 * DAY, status="active")
    return story.scenario(
        "A trial without a payment method and missing_payment_method=create_invoice: the first "
        "invoice cannot be paid and the subscription goes past_due.",
    )


def pause_and_resume(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("pause_and_resume", params)
    subscription, trial_end = trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    subscription_paused(story, subscription, trial_end)
    resumed = trial_end + 5 * DAY
    request = story.request()
    new_end = add_months(resumed, 1)
    invoice = invoice_created(
        story,
        subscription,
        resumed,
        request,
        billing_reason="subscription_update",
        period=(resumed, resumed),
        line_period=(resumed, new_end),
    )
    finalized_and_paid(story, invoice, resumed, request)
    before, after = subscription.change(
        status="active",
        period_start=resumed,
        period_end=new_end,
        billing_cycle_anchor=resumed,
        latest_invoice=invoice.id,
        default_payment_method=story.payment_method,
    )
    story.period = (resumed, new_end)
    story.emit("customer.subscription.resumed", after, resumed, request)
    story.emit(
        "customer.subscription.updated", after, resumed, request, samples.previous_attributes(before, after)
    )
    return story.scenario(
        "A trial ends without a payment method and pauses the subscription; five days later the "
        "customer adds a card and resumes it (paid invoice, new billing cycle).",
    )
