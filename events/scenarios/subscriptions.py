"""Subscriptions: signups, renewals and failed payments, cancellations, pauses of collection, plan
changes, invoices closed by the merchant or sent, a test clock."""

from __future__ import annotations

from collections.abc import Callable

from events.scenarios.steps import (
    charge_fails,
    collect,
    finalize,
    finalized_and_paid,
    first_payment_succeeds,
    invoice_created,
    line_items_listed,
    mark_uncollectible,
    renew,
    renewal_fails,
    renewal_paid,
    session_id,
    signup,
    subscription_created,
    subscription_deleted,
    subscription_opened,
    subscription_turns,
    void,
)
from events.scenarios.story import (
    DAY,
    DEFAULT_PARAMS,
    HOUR,
    Request,
    Scenario,
    ScenarioParams,
    Story,
    Tracked,
    add_months,
)
from events.stripe import objects as samples
from events.stripe.objects import ItemSpec, JsonObject

# --------------------------------------------------------------------------------------------
# Signup
# --------------------------------------------------------------------------------------------


def _checkout_signup(name: str, params: ScenarioParams, *, same_second: bool) -> Story:
    story = Story(name, params, same_second=same_second)
    p = params
    at, request = p.start, story.request()
    subscription, first = subscription_opened(story, at, request, [ItemSpec(p.pro_price)])
    session = story.track(
        samples.checkout_session,
        id=session_id(story),
        mode="subscription",
        status="complete",
        payment_status="paid",
        customer=story.customer,
        customer_account=story.customer_account,
        client_reference_id=p.user_id,
        subscription=subscription.id,
        invoice=first.id,
        amount_total=p.unit_amount,
        currency=p.currency,
        metadata={"price_id": p.price_id},
        created=at - 120,
        livemode=p.livemode,
    )
    line_items_listed(story, session, p.pro_price)
    subscription_created(story, subscription, first, at, request)
    first_payment_succeeds(story, subscription, first, at, request)
    # Created last: the session completes once the first invoice is paid.
    story.emit_current("checkout.session.completed", session, at, request)
    return story


def signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return paid_checkout_signup("signup_paid", params)


def paid_checkout_signup(name: str, params: ScenarioParams, story_note: str = "") -> Scenario:
    story = _checkout_signup(name, params, same_second=False)
    return story.scenario(
        "Checkout in subscription mode with client_reference_id: the subscription is created "
        "incomplete, its first invoice is paid, it turns active; checkout.session.completed comes last."
        + story_note,
    )


def signup_burst(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _checkout_signup("signup_burst", params, same_second=True)
    return story.scenario(
        "The signup_paid events, all created in the same second: `created` cannot order them "
        "(customer.subscription.created says incomplete, customer.subscription.updated says active).",
    )


def signup_incomplete_expired(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("signup_incomplete_expired", params)
    at, request = params.start, story.request()
    subscription, first = subscription_opened(story, at, request, [ItemSpec(params.pro_price)])
    subscription_created(story, subscription, first, at, request)
    finalize(story, first, at, request)
    charge_fails(story, first, at, attempt=1, next_attempt=None)
    expired = at + 23 * HOUR
    void(story, first, expired)
    subscription_turns(story, subscription, "incomplete_expired", expired)
    return story.scenario(
        "The first payment fails; 23 hours later the subscription is incomplete_expired and its "
        "invoice void.",
    )


# --------------------------------------------------------------------------------------------
# Renewals and failed payments
# --------------------------------------------------------------------------------------------


def renewal(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("renewal", params)
    subscription, _ = signup(story)
    renewal_paid(story, subscription, upcoming=True)
    return story.scenario(
        "An active subscription renews: invoice.upcoming (a preview without an id) 3 days ahead, "
        "then the next invoice, the period moves, and the invoice is paid an hour later.",
    )


def payment_failed_then_recovered(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("payment_failed_then_recovered", params)
    subscription, _ = signup(story)
    invoice, failed_at = renewal_fails(story, subscription)
    retry = failed_at + 3 * DAY
    collect(story, invoice, retry, None, attempt=2)
    subscription_turns(story, subscription, "active", retry)
    return story.scenario(
        "The renewal payment fails (past_due); Stripe's retry 3 days later succeeds (active).",
    )


def _every_retry_fails(story: Story) -> tuple[Tracked, int]:
    """A signup whose first renewal fails, as do Stripe's retries 3, 5 and 7 days later.
    Returns the subscription and the time of the last retry."""
    subscription, _ = signup(story)
    invoice, failed_at = renewal_fails(story, subscription)
    last = failed_at
    for attempt, days in ((2, 3), (3, 5), (4, 7)):
        last = failed_at + days * DAY
        charge_fails(
            story, invoice, last, attempt=attempt, next_attempt=None if attempt == 4 else last + 2 * DAY
        )
    return subscription, last


def payment_failed_then_unpaid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("payment_failed_then_unpaid", params)
    subscription, last = _every_retry_fails(story)
    subscription_turns(story, subscription, "unpaid", last)
    return story.scenario(
        "The renewal payment fails and every retry fails; the subscription settings say 'mark unpaid': "
        "the subscription turns unpaid and its invoice stays open.",
    )


def payment_failed_then_canceled(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("payment_failed_then_canceled", params)
    subscription, last = _every_retry_fails(story)
    subscription_deleted(story, subscription, last, reason="payment_failed")
    return story.scenario(
        "The renewal payment fails and every retry fails; the subscription settings say 'cancel': "
        "customer.subscription.deleted with cancellation_details.reason=payment_failed.",
    )


def payment_action_required(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("payment_action_required", params)
    subscription, _ = signup(story)
    renewal_fails(story, subscription, action_required=True)
    return story.scenario(
        "The renewal payment needs 3-D Secure: invoice.payment_action_required and the subscription "
        "goes past_due until the customer authenticates.",
    )


def renewal_on_test_clock(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("test_clock_renewal", params)
    story.test_clock = story.ids("clock")
    subscription, _ = signup(story)
    # Five minutes later (real time) the clock is advanced past the period end (simulated time).
    story.real_time = params.start + 300
    renewal_paid(story, subscription)
    return story.scenario(
        "A subscription on a test clock, advanced one month: the objects carry simulated times (a "
        "month ahead) while the events are created minutes apart in real time.",
    )


# --------------------------------------------------------------------------------------------
# Cancellation, pauses, plan changes, several items
# --------------------------------------------------------------------------------------------


def _schedule_cancel(story: Story, subscription: Tracked) -> int:
    at = story.p.start + 10 * DAY
    story.update(
        "customer.subscription.updated",
        subscription,
        at,
        story.request(),
        cancel_at_period_end=True,
        cancel_at=story.period[1],
        canceled_at=at,
        cancellation_reason="cancellation_requested",
    )
    return at


def cancel_scheduled(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("cancel_scheduled", params)
    subscription, _ = signup(story)
    _schedule_cancel(story, subscription)
    return story.scenario(
        "The customer cancels at period end: status stays active with cancel_at_period_end=true.",
    )


def cancel_at_period_end(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("cancel_at_period_end", params)
    subscription, _ = signup(story)
    _schedule_cancel(story, subscription)
    subscription_deleted(story, subscription, story.period[1])
    return story.scenario(
        "Cancel at period end, then at the period end customer.subscription.deleted (canceled).",
    )


def collection_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("collection_paused", params)
    subscription, _ = signup(story)
    paused_at = params.start + 5 * DAY
    resumes_at = add_months(story.period[1], 1)
    story.update(
        "customer.subscription.updated",
        subscription,
        paused_at,
        story.request(),
        pause_collection={"behavior": "void", "resumes_at": resumes_at},
    )
    invoice = renew(story, subscription)
    void(story, invoice, story.period[0])
    return story.scenario(
        "Payment collection paused with behavior=void: the renewal invoice is voided at once and the "
        "subscription stays active (pause_collection is not status=paused).",
    )


def plan_change_with_unpaid_invoice(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("plan_change_with_unpaid_invoice", params)
    unpaid = _plan_change_leaving_an_unpaid_invoice(story)[1]
    return story.scenario(
        "The renewal fails (past_due), then the customer upgrades to Team with an immediate proration "
        "invoice, which is paid: Stripe shows the subscription active although the earlier renewal "
        f"invoice {unpaid.id} stays open and unpaid, and its last retry fails; Stripe will not "
        "charge it again.",
    )


def plan_change_then_renewal_fails(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("plan_change_then_renewal_fails", params)
    subscription, unpaid = _plan_change_leaving_an_unpaid_invoice(story)
    renewal_fails(story, subscription)
    return story.scenario(
        f"After a plan change left invoice {unpaid.id} open (Stripe no longer retries it), the next "
        "renewal's payment fails and the subscription goes past_due.",
    )


def _plan_change_leaving_an_unpaid_invoice(story: Story) -> tuple[Tracked, Tracked]:
    params = story.p
    subscription, _ = signup(story)
    unpaid, failed_at = renewal_fails(story, subscription)
    changed_at = failed_at + DAY
    request = story.request()
    item_id = samples.subscription_item_id(subscription.id, params.price_id)
    upgraded = [ItemSpec(params.upgrade_price, item_id=item_id, created=params.start)]
    proration = invoice_created(
        story,
        subscription,
        changed_at,
        request,
        billing_reason="subscription_update",
        period=(changed_at, changed_at),
        line_period=(changed_at, story.period[1]),
        items=upgraded,
        amount_due=params.upgrade_unit_amount - params.unit_amount,
        proration=True,
    )
    story.update(
        "customer.subscription.updated",
        subscription,
        changed_at,
        request,
        items=upgraded,
        latest_invoice=proration.id,
    )
    finalized_and_paid(story, proration, changed_at, request)
    subscription_turns(story, subscription, "active", changed_at, request)
    last_retry = failed_at + 3 * DAY
    charge_fails(story, unpaid, last_retry, attempt=2, next_attempt=None)
    return subscription, unpaid


def multi_item_with_metered(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("multi_item_with_metered", params)
    items = [ItemSpec(params.pro_price, quantity=3), ItemSpec(params.metered_price, quantity=None)]
    subscription, _ = signup(story, items)
    renewal_paid(story, subscription, metered_usage=12840)
    return story.scenario(
        "One subscription with two items: Pro for 3 seats (licensed) and API calls (metered, no "
        "quantity); the renewal bills the seats and the month's usage.",
    )


# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------


def _failed_renewal_closed(story: Story, close: Callable[[Story, Tracked, int, Request], None]) -> None:
    """A signup whose renewal fails (past_due); two days later the merchant closes the invoice
    (`close`) and Stripe moves the subscription back to active."""
    subscription, _ = signup(story)
    invoice, failed_at = renewal_fails(story, subscription)
    at, request = failed_at + 2 * DAY, story.request()
    close(story, invoice, at, request)
    subscription_turns(story, subscription, "active", at, request)


def invoice_voided(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("invoice_voided", params)
    _failed_renewal_closed(story, void)
    return story.scenario(
        "The renewal payment fails (past_due); the merchant voids the invoice and Stripe moves the "
        "subscription back to active.",
    )


def invoice_marked_uncollectible(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("invoice_marked_uncollectible", params)
    _failed_renewal_closed(story, mark_uncollectible)
    return story.scenario(
        "The renewal payment fails (past_due); the merchant marks the invoice uncollectible (bad debt) "
        "and Stripe moves the subscription back to active.",
    )


def _sent_as_invoice(tracked: Tracked, days_until_due: int) -> None:
    """collection_method=send_invoice: Stripe emails the invoice and waits for its due date."""

    def sent(obj: JsonObject) -> None:
        obj["collection_method"] = "send_invoice"
        if obj.get("object") == "subscription":
            obj["days_until_due"] = days_until_due

    tracked.amend(sent)


def send_invoice_overdue(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = Story("send_invoice_overdue", params)
    at, request = params.start, story.request()
    subscription, first = subscription_opened(
        story, at, request, [ItemSpec(params.pro_price)], status="active"
    )
    _sent_as_invoice(subscription, 30)
    _sent_as_invoice(first, 30)
    subscription_created(story, subscription, first, at, request)
    due = at + 30 * DAY
    story.transition("invoice.finalized", first, at, request, status="open", finalized_at=at, due_date=due)
    story.emit_current("invoice.sent", first, at, request)
    story.emit_current("invoice.overdue", first, due, None)
    subscription_turns(story, subscription, "past_due", due)
    return story.scenario(
        "A subscription billed with collection_method=send_invoice: the first invoice is emailed at "
        "once and due 30 days later; when the due date passes unpaid, the subscription goes past_due.",
    )
