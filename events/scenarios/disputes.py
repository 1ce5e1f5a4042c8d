"""Disputes: of a purchase (lost, won), of a subscription's payment and of a guest's purchase."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from events.scenarios.steps import new_charge, one_time_checkout, signup
from events.scenarios.story import DAY, DEFAULT_PARAMS, Scenario, ScenarioParams, Story, Tracked
from events.stripe import objects as samples


def _dispute_opened(story: Story, charge: Tracked, intent: Tracked, amount: int, at: int) -> Tracked:
    """charge.dispute.created: the dispute names the charge and payment intent, never a customer."""
    dispute = story.track(
        samples.dispute,
        id=story.ids("dp"),
        charge=charge.id,
        payment_intent=intent.id,
        amount=amount,
        currency=story.p.currency,
        status="needs_response",
        created=at,
        livemode=story.p.livemode,
    )
    story.emit_current("charge.dispute.created", dispute, at, None)
    return dispute


def _dispute_closed(story: Story, dispute: Tracked, at: int, status: Literal["won", "lost"]) -> None:
    story.transition("charge.dispute.closed", dispute, at, None, status=status)
    if status == "won":
        story.emit_current("charge.dispute.funds_reinstated", dispute, at, None)


def _dispute(story: Story) -> tuple[Tracked, int]:
    """The one-time purchase is disputed 10 days later and the funds withdrawn. Returns the
    dispute and when it opened."""
    _, intent, charge = one_time_checkout(story)
    at = story.p.start + 10 * DAY
    charge.change(disputed=True)
    dispute = _dispute_opened(story, charge, intent, story.p.one_time_amount, at)
    story.emit_current("charge.dispute.funds_withdrawn", dispute, at, None)
    return dispute, at


def purchase_dispute_lost(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("purchase_dispute_lost", params)
    dispute, opened = _dispute(story)
    _dispute_closed(story, dispute, opened + 30 * DAY, "lost")
    return story.scenario(
        "The card holder disputes the one-time purchase; the dispute (which names no customer, only "
        "the charge and payment intent) is lost.",
    )


def purchase_dispute_won(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("purchase_dispute_won", params)
    dispute, opened = _dispute(story)
    story.update(
        "charge.dispute.updated",
        dispute,
        opened + 5 * DAY,
        story.request(),
        status="under_review",
        evidence_submitted=True,
    )
    _dispute_closed(story, dispute, opened + 40 * DAY, "won")
    return story.scenario(
        "The card holder disputes the one-time purchase; evidence is submitted and the dispute is won.",
    )


def subscription_payment_disputed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("subscription_payment_disputed", params)
    _, first = signup(story)
    intent = story.find(str(first.fields["payment_intent"]))
    amount = int(first.current["amount_due"])
    # The invoice's charge, as the API answers for it (no event of its own in this story).
    charge = new_charge(story, str(intent.current["latest_charge"]), intent, amount, params.start)
    at = params.start + 10 * DAY
    dispute = _dispute_opened(story, charge, intent, amount, at)
    _dispute_closed(story, dispute, at + 30 * DAY, "lost")
    return story.scenario(
        "The card holder disputes the first subscription invoice's payment and the dispute is lost: it "
        "names only the charge and payment intent, which no one-time purchase knows.",
    )


def guest_purchase_disputed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("guest_purchase_disputed", params)
    _, intent, charge = one_time_checkout(story, guest=True)
    at = params.start + 10 * DAY
    dispute = _dispute_opened(story, charge, intent, params.one_time_amount, at)
    _dispute_closed(story, dispute, at + 30 * DAY, "lost")
    scenario = story.scenario(
        "A guest Checkout purchase (no customer) is disputed and the dispute lost.",
    )
    return replace(scenario, customer_id=None)
