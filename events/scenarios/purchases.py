"""One-time purchases through Checkout: paid, paid late or never, abandoned, refunded, by a guest."""

from __future__ import annotations

from dataclasses import replace

from events.scenarios.steps import new_customer, one_time_checkout, payment_session
from events.scenarios.story import DAY, DEFAULT_PARAMS, Scenario, ScenarioParams, Story, Tracked
from events.stripe import objects as samples
from events.stripe.objects import JsonObject


def one_time_purchase(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("one_time_purchase", params)
    one_time_checkout(story)
    return story.scenario(
        "Checkout in payment mode, paid by card: payment_intent.succeeded, then checkout.session.completed "
        "with payment_status=paid.",
    )


def _settle_delayed(
    story: Story, session: Tracked, intent: Tracked, charge: Tracked, at: int, *, succeeded: bool
) -> None:
    if succeeded:
        charge.change(status="succeeded", created=charge.fields["created"])
        story.transition("payment_intent.succeeded", intent, at, None, status="succeeded")
        story.transition("checkout.session.async_payment_succeeded", session, at, None, payment_status="paid")
    else:
        charge.change(status="failed")
        story.transition(
            "payment_intent.payment_failed", intent, at, None, status="requires_payment_method", declined=True
        )
        story.emit_current("checkout.session.async_payment_failed", session, at, None)


def one_time_purchase_delayed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("one_time_purchase_delayed", params)
    session, intent, charge = one_time_checkout(story, delayed=True)
    settled = params.start + 4 * DAY
    _settle_delayed(story, session, intent, charge, settled, succeeded=True)
    return story.scenario(
        "Checkout paid by bank debit: checkout.session.completed says payment_status=unpaid; four days "
        "later the payment clears and checkout.session.async_payment_succeeded says paid.",
    )


def one_time_purchase_delayed_failed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("one_time_purchase_delayed_failed", params)
    session, intent, charge = one_time_checkout(story, delayed=True)
    _settle_delayed(story, session, intent, charge, params.start + 4 * DAY, succeeded=False)
    return story.scenario(
        "Checkout paid by bank debit; the debit fails: checkout.session.async_payment_failed.",
    )


def checkout_expired(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("checkout_expired", params)
    new_customer(story, params.start - 600, story.request())
    session = payment_session(story, status="open", payment_status="unpaid", created=params.start)
    expired = params.start + DAY
    story.transition("checkout.session.expired", session, expired, None, status="expired")
    return story.scenario(
        "A Checkout Session is abandoned and expires after 24 hours.",
    )


def _refunded_in_full(
    story: Story, intent: Tracked, charge: Tracked, at: int, *, customer: str | None
) -> JsonObject:
    """charge.refunded: the purchase's whole amount, as one Refund. Returns the Refund."""
    amount = story.p.one_time_amount
    full = samples.refund(
        story.ids,
        charge=charge.id,
        payment_intent=intent.id,
        customer=customer,
        payment_method=story.payment_method,
        amount=amount,
        created=at,
    )
    story.transition("charge.refunded", charge, at, story.request(), amount_refunded=amount, refunds=[full])
    return full


def purchase_refunded(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("purchase_refunded", params)
    _, intent, charge = one_time_checkout(story)
    _refunded_in_full(story, intent, charge, params.start + 5 * DAY, customer=story.customer)
    return story.scenario(
        "A paid one-time purchase is refunded in full five days later (charge.refunded).",
    )


def purchase_refund_failed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("purchase_refund_failed", params)
    _, intent, charge = one_time_checkout(story)
    at = params.start + 5 * DAY
    full = _refunded_in_full(story, intent, charge, at, customer=None)
    failed_at = at + 2 * DAY
    failed = {**full, "status": "failed", "failure_reason": "expired_or_canceled_card"}
    previous = {"status": "succeeded", "failure_reason": None}
    story.emit("charge.refund.updated", failed, failed_at, None, previous)
    return story.scenario(
        "A one-time purchase is refunded in full; two days later the refund fails (the card was "
        "closed) and Stripe sends charge.refund.updated with status=failed.",
    )


def guest_checkout(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("guest_checkout", params)
    one_time_checkout(story, guest=True)
    scenario = story.scenario(
        "Checkout in payment mode without a customer: customer is null everywhere; only "
        "customer_details.email says who paid.",
    )
    return replace(scenario, customer_id=None)
