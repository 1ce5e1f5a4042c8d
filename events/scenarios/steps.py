"""The steps the stories are told in: Stripe objects created and their events, each named for
what happens to the customer's subscription, invoice, payment or Checkout Session."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, Unpack

from events.scenarios.story import DAY, HOUR, Request, Story, Tracked, add_months
from events.stripe import objects as samples
from events.stripe.objects import ItemSpec, PriceSpec

# --------------------------------------------------------------------------------------------
# Customers and subscriptions
# --------------------------------------------------------------------------------------------


def new_customer(story: Story, at: int, request: Request) -> Tracked | None:
    """customer.created, with the user id in its metadata."""
    if story.accounts_v2:
        return None  # an Accounts v2 customer is an Account: no Customer object, no customer.* events
    customer = story.track(
        samples.customer,
        id=story.p.customer_id,
        created=at,
        metadata={"user_id": story.p.user_id},
        livemode=story.p.livemode,
        test_clock=story.test_clock,
    )
    story.emit_current("customer.created", customer, at, request)
    return customer


def new_subscription(
    story: Story,
    at: int,
    items: list[ItemSpec],
    *,
    status: samples.SubscriptionStatus,
    period_end: int,
    trial: bool = False,
    missing_payment_method: samples.MissingPaymentMethod = "create_invoice",
    default_payment_method: str | None = None,
) -> Tracked:
    story.period = (at, period_end)
    return story.track(
        samples.subscription,
        billing_cycle_anchor=period_end if trial else at,
        id=story.ids("sub"),
        customer=story.customer,
        customer_account=story.customer_account,
        items=items,
        status=status,
        created=at,
        period_start=at,
        period_end=period_end,
        api=story.p.api,
        livemode=story.p.livemode,
        trial_start=at if trial else None,
        trial_end=period_end if trial else None,
        missing_payment_method=missing_payment_method,
        default_payment_method=default_payment_method,
        metadata={"user_id": story.p.user_id},
        test_clock=story.test_clock,
    )


def subscription_opened(
    story: Story,
    at: int,
    request: Request,
    items: list[ItemSpec],
    *,
    status: samples.SubscriptionStatus = "incomplete",
    metered_usage: int = 0,
) -> tuple[Tracked, Tracked]:
    """The customer (customer.created) and a monthly subscription with its first invoice, as the
    API creates them; their own events follow (`subscription_created`)."""
    new_customer(story, at, request)
    subscription = new_subscription(story, at, items, status=status, period_end=add_months(at, 1))
    return subscription, first_invoice(story, subscription, at, metered_usage=metered_usage)


def subscription_created(
    story: Story, subscription: Tracked, first: Tracked, at: int, request: Request
) -> None:
    """customer.subscription.created, then invoice.created for its first invoice."""
    story.emit_current("customer.subscription.created", subscription, at, request)
    story.emit_current("invoice.created", first, at, request)


def subscription_turns(
    story: Story,
    subscription: Tracked,
    status: samples.SubscriptionStatus,
    at: int,
    request: Request = None,
    **changes: Any,
) -> None:
    """customer.subscription.updated for a new status (and what changes with it)."""
    story.update("customer.subscription.updated", subscription, at, request, status=status, **changes)


def subscription_paused(story: Story, subscription: Tracked, at: int) -> None:
    """A trial ended without a payment method (missing_payment_method=pause): paused, no invoice."""
    subscription_turns(story, subscription, "paused", at)
    story.emit_current("customer.subscription.paused", subscription, at, None)


def subscription_deleted(
    story: Story,
    subscription: Tracked,
    at: int,
    request: Request = None,
    *,
    reason: Literal["cancellation_requested", "payment_failed"] | None = None,
) -> None:
    """customer.subscription.deleted: the subscription ends now. A cancellation scheduled earlier
    keeps the time it was asked for as `canceled_at`."""
    changes: dict[str, Any] = {"ended_at": at}
    if subscription.fields.get("canceled_at") is None:
        changes["canceled_at"] = at
    if reason is not None:
        changes["cancellation_reason"] = reason
    story.transition("customer.subscription.deleted", subscription, at, request, status="canceled", **changes)


# --------------------------------------------------------------------------------------------
# Invoices and their payment
# --------------------------------------------------------------------------------------------


class InvoiceTerms(TypedDict):
    """Why a subscription's invoice bills and for when; `items` default to the subscription's."""

    billing_reason: samples.BillingReason
    period: tuple[int, int]
    line_period: tuple[int, int]
    items: NotRequired[list[ItemSpec]]


def invoice_fields(
    story: Story, subscription: Tracked, at: int, **terms: Unpack[InvoiceTerms]
) -> dict[str, Any]:
    """What a subscription's draft invoice says about whom it bills, for what and for when
    (shared by the invoices and the upcoming invoice's preview)."""
    period, line_period = terms["period"], terms["line_period"]
    return {
        "customer": story.customer,
        "customer_account": story.customer_account,
        "subscription": subscription.id,
        "items": terms.get("items", subscription.fields["items"]),
        "status": "draft",
        "billing_reason": terms["billing_reason"],
        "created": at,
        "period_start": period[0],
        "period_end": period[1],
        "line_period_start": line_period[0],
        "line_period_end": line_period[1],
        "api": story.p.api,
        "livemode": story.p.livemode,
        "subscription_metadata": {"user_id": story.p.user_id},
        "test_clock": story.test_clock,
    }


def new_invoice(
    story: Story,
    subscription: Tracked,
    at: int,
    *,
    amount_due: int | None = None,
    metered_usage: int = 0,
    proration: bool = False,
    trial: bool = False,
    **terms: Unpack[InvoiceTerms],
) -> Tracked:
    return story.track(
        samples.invoice,
        id=story.ids("in"),
        **invoice_fields(story, subscription, at, **terms),
        amount_due=amount_due,
        metered_usage=metered_usage,
        proration=proration,
        trial=trial,
    )


def invoice_created(
    story: Story, subscription: Tracked, at: int, request: Request, **invoice: Any
) -> Tracked:
    """invoice.created for a new draft invoice of the subscription."""
    created = new_invoice(story, subscription, at, **invoice)
    story.emit_current("invoice.created", created, at, request)
    return created


def first_invoice(story: Story, subscription: Tracked, at: int, **invoice: Any) -> Tracked:
    """The subscription's first invoice (subscription_create), a draft the subscription names."""
    first = new_invoice(
        story,
        subscription,
        at,
        billing_reason="subscription_create",
        period=(at, at),
        line_period=story.period,
        **invoice,
    )
    subscription.change(latest_invoice=first.id)
    return first


def new_payment_intent(
    story: Story,
    invoice: Tracked | None,
    at: int,
    amount: int,
    status: samples.PaymentIntentStatus,
    *,
    guest: bool = False,
    **kw: Any,
) -> Tracked:
    return story.track(
        samples.payment_intent,
        id=story.ids("pi"),
        amount=amount,
        currency=story.p.currency,
        customer=None if guest else story.customer,
        customer_account=None if guest else story.customer_account,
        status=status,
        created=at,
        invoice=invoice.id if invoice else None,
        api=story.p.api,
        livemode=story.p.livemode,
        **kw,
    )


def new_charge(story: Story, charge_id: str, intent: Tracked, amount: int, at: int, **kw: Any) -> Tracked:
    """The payment intent's charge; it names the intent's customer."""
    return story.track(
        samples.charge,
        id=charge_id,
        amount=amount,
        currency=story.p.currency,
        customer=intent.fields["customer"],
        payment_intent=intent.id,
        created=at,
        payment_method=story.payment_method,
        livemode=story.p.livemode,
        **kw,
    )


def invoice_intent(
    story: Story, invoice: Tracked, at: int, status: samples.PaymentIntentStatus, **kw: Any
) -> Tracked:
    """The payment intent Stripe creates to charge the invoice with the customer's card."""
    reason = invoice.fields["billing_reason"]
    return new_payment_intent(
        story,
        invoice,
        at,
        int(invoice.current["amount_due"]),
        status,
        payment_method=story.payment_method,
        description="Subscription creation" if reason == "subscription_create" else "Subscription update",
        **kw,
    )


def finalize(story: Story, invoice: Tracked, at: int, request: Request) -> None:
    story.transition("invoice.finalized", invoice, at, request, status="open", finalized_at=at)


def collect(story: Story, invoice: Tracked, at: int, request: Request, *, attempt: int = 1) -> None:
    """A successful charge of an open invoice: payment_intent.succeeded, invoice.paid, payment_succeeded."""
    amount = int(invoice.current["amount_due"])
    intent_id = invoice.fields.get("payment_intent")
    if amount > 0:
        if intent_id is None:
            intent = invoice_intent(story, invoice, at, "succeeded", latest_charge=story.ids("ch"))
        else:
            intent = story.find(intent_id)
            intent.change(status="succeeded", declined=False, latest_charge=story.ids("ch"))
        story.emit_current("payment_intent.succeeded", intent, at, request)
        intent_id = intent.id
    story.transition(
        "invoice.paid",
        invoice,
        at,
        request,
        status="paid",
        attempted=True,
        attempt_count=attempt if amount > 0 else 0,
        paid_at=at,
        next_payment_attempt=None,
        payment_intent=intent_id,
    )
    story.emit_current("invoice.payment_succeeded", invoice, at, request)


def finalized_and_paid(story: Story, invoice: Tracked, at: int, request: Request) -> None:
    """Stripe finalizes the invoice and charges it at once, successfully."""
    finalize(story, invoice, at, request)
    collect(story, invoice, at, request)


def charge_fails(
    story: Story,
    invoice: Tracked,
    at: int,
    *,
    attempt: int,
    next_attempt: int | None,
    action_required: bool = False,
) -> None:
    """A failed (or authentication-needing) charge of an open invoice."""
    intent_id = invoice.fields.get("payment_intent")
    status: samples.PaymentIntentStatus = "requires_action" if action_required else "requires_payment_method"
    if intent_id is None:
        intent = invoice_intent(story, invoice, at, status, declined=not action_required)
        invoice.change(payment_intent=intent.id)
    else:
        intent = story.find(intent_id)
    if not action_required:
        story.emit_current("payment_intent.payment_failed", intent, at, None)
    story.transition(
        "invoice.payment_action_required" if action_required else "invoice.payment_failed",
        invoice,
        at,
        None,
        attempted=True,
        attempt_count=attempt,
        next_payment_attempt=next_attempt,
    )


def void(story: Story, invoice: Tracked, at: int, request: Request = None) -> None:
    """invoice.voided; a draft is finalized in the same moment (only a finalized invoice is voided)."""
    finalized = {"finalized_at": at} if invoice.fields["status"] == "draft" else {}
    story.transition(
        "invoice.voided",
        invoice,
        at,
        request,
        status="void",
        voided_at=at,
        next_payment_attempt=None,
        **finalized,
    )


def mark_uncollectible(story: Story, invoice: Tracked, at: int, request: Request) -> None:
    story.transition(
        "invoice.marked_uncollectible",
        invoice,
        at,
        request,
        status="uncollectible",
        marked_uncollectible_at=at,
        next_payment_attempt=None,
    )


# --------------------------------------------------------------------------------------------
# Signups, renewals and trials
# --------------------------------------------------------------------------------------------


def signup(
    story: Story, items: list[ItemSpec] | None = None, *, metered_usage: int = 0
) -> tuple[Tracked, Tracked]:
    """Subscription created through the API and paid at once (charge_automatically)."""
    at, request = story.p.start, story.request()
    subscription, first = subscription_opened(
        story, at, request, items or [ItemSpec(story.p.pro_price)], metered_usage=metered_usage
    )
    subscription_created(story, subscription, first, at, request)
    first_payment_succeeds(story, subscription, first, at, request)
    return subscription, first


def first_payment_succeeds(
    story: Story, subscription: Tracked, first: Tracked, at: int, request: Request
) -> None:
    """The first invoice is finalized and paid; the subscription turns active with the card."""
    finalized_and_paid(story, first, at, request)
    subscription_turns(
        story, subscription, "active", at, request, default_payment_method=story.payment_method
    )


def renew(
    story: Story,
    subscription: Tracked,
    *,
    metered_usage: int = 0,
    upcoming: bool = False,
    **subscription_changes: Any,
) -> Tracked:
    """The period ends: Stripe creates the next invoice and moves the subscription's period
    (with `subscription_changes` in the same update, such as a trial turning active).

    Returns the draft invoice; Stripe finalizes and charges it about an hour later.
    """
    old_start, old_end = story.period
    new_end = add_months(old_end, 1)
    if upcoming:
        preview = samples.invoice(
            story.ids,
            **invoice_fields(
                story,
                subscription,
                old_end - 3 * DAY,
                billing_reason="upcoming",
                period=(old_start, old_end),
                line_period=(old_end, new_end),
            ),
            upcoming=True,
        )
        story.emit("invoice.upcoming", preview, old_end - 3 * DAY, None)
    invoice = invoice_created(
        story,
        subscription,
        old_end,
        None,
        billing_reason="subscription_cycle",
        period=(old_start, old_end),
        line_period=(old_end, new_end),
        metered_usage=metered_usage,
    )
    story.update(
        "customer.subscription.updated",
        subscription,
        old_end,
        None,
        period_start=old_end,
        period_end=new_end,
        latest_invoice=invoice.id,
        **subscription_changes,
    )
    story.period = (old_end, new_end)
    return invoice


def renewal_paid(story: Story, subscription: Tracked, **renewal: Any) -> None:
    """The period ends; an hour later the renewal invoice is finalized and paid."""
    invoice = renew(story, subscription, **renewal)
    finalized_and_paid(story, invoice, story.period[0] + HOUR, None)


def renewal_fails(
    story: Story,
    subscription: Tracked,
    *,
    action_required: bool = False,
    retry_at: int | None = None,
    **renewal: Any,
) -> tuple[Tracked, int]:
    """The period ends; an hour later the renewal's charge fails and the subscription goes past_due.
    A declined card is retried at `retry_at` (3 days after the failure unless given); a charge
    waiting for 3-D Secure waits for the customer.

    Returns the open invoice and when its charge failed.
    """
    invoice = renew(story, subscription, **renewal)
    failed_at = story.period[0] + HOUR
    if retry_at is None:
        retry_at = failed_at + 3 * DAY
    finalize(story, invoice, failed_at, None)
    charge_fails(
        story,
        invoice,
        failed_at,
        attempt=1,
        next_attempt=None if action_required else retry_at,
        action_required=action_required,
    )
    subscription_turns(story, subscription, "past_due", failed_at)
    return invoice, failed_at


def trial_signup(
    story: Story,
    *,
    missing_payment_method: samples.MissingPaymentMethod,
    with_payment_method: bool,
    trial_days: int = 14,
) -> tuple[Tracked, int]:
    """A trial: subscription `trialing`, a $0 invoice paid at once, trial_will_end 3 days ahead."""
    at, request = story.p.start, story.request()
    trial_end = at + trial_days * DAY
    new_customer(story, at, request)
    subscription = new_subscription(
        story,
        at,
        [ItemSpec(story.p.pro_price)],
        status="trialing",
        period_end=trial_end,
        trial=True,
        missing_payment_method=missing_payment_method,
        default_payment_method=story.payment_method if with_payment_method else None,
    )
    zero = first_invoice(story, subscription, at, amount_due=0, trial=True)
    subscription_created(story, subscription, zero, at, request)
    finalized_and_paid(story, zero, at, request)
    story.emit_current("customer.subscription.trial_will_end", subscription, trial_end - 3 * DAY, None)
    return subscription, trial_end


# --------------------------------------------------------------------------------------------
# Checkout in payment mode
# --------------------------------------------------------------------------------------------


def session_id(story: Story) -> str:
    return story.ids("cs_live" if story.p.livemode else "cs_test")


def line_items_listed(story: Story, session: Tracked, price: PriceSpec) -> None:
    """What the API lists as the session's line items (the webhook's session carries none)."""
    story.api_lists[f"/v1/checkout/sessions/{session.id}/line_items"] = samples.checkout_line_items(
        session_id=session.id, prices=[(price, 1)], livemode=story.p.livemode
    )


def payment_session(
    story: Story,
    *,
    status: samples.CheckoutStatus,
    payment_status: samples.CheckoutPaymentStatus,
    created: int,
    guest: bool = False,
    **kw: Any,
) -> Tracked:
    """A Checkout Session in payment mode for the one-time price; a guest's names no customer."""
    p = story.p
    return story.track(
        samples.checkout_session,
        id=session_id(story),
        mode="payment",
        status=status,
        payment_status=payment_status,
        customer=None if guest else story.customer,
        customer_account=None if guest else story.customer_account,
        customer_creation="if_required" if guest else None,
        client_reference_id=None if guest else p.user_id,
        amount_total=p.one_time_amount,
        currency=p.currency,
        metadata={"price_id": p.one_time_price_id, "product_id": p.one_time_product_id},
        created=created,
        livemode=p.livemode,
        **kw,
    )


def one_time_checkout(
    story: Story, *, delayed: bool = False, guest: bool = False
) -> tuple[Tracked, Tracked, Tracked]:
    """A Checkout payment-mode purchase. Returns (session, payment intent, charge)."""
    p = story.p
    at = p.start
    request = story.request()
    if not guest:
        new_customer(story, at - 600, story.request())
    methods = ("us_bank_account",) if delayed else ("card",)
    charge_id = story.ids("ch")
    intent = new_payment_intent(
        story,
        None,
        at - 120,
        p.one_time_amount,
        "processing" if delayed else "succeeded",
        guest=guest,
        latest_charge=charge_id,
        payment_method=story.payment_method,
        payment_method_types=methods,
        metadata={"user_id": p.user_id} if not guest else {},
    )
    charge = new_charge(
        story, charge_id, intent, p.one_time_amount, at, status="pending" if delayed else "succeeded"
    )
    session = payment_session(
        story,
        status="complete",
        payment_status="unpaid" if delayed else "paid",
        created=at - 300,
        guest=guest,
        payment_intent=intent.id,
        payment_method_types=methods,
    )
    line_items_listed(story, session, p.one_time_price)
    if not delayed:
        story.emit_current("payment_intent.succeeded", intent, at, request)
    story.emit_current("checkout.session.completed", session, at, request)
    return session, intent, charge
