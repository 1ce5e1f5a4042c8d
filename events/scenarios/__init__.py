"""Named sequences of Stripe webhook events for one customer, in the order Stripe creates them.

Based on these Stripe documentation pages:

* Using webhooks with subscriptions: https://docs.stripe.com/billing/subscriptions/webhooks
* How subscriptions work (statuses, lifecycle, failed payments, voiding and marking invoices
  uncollectible): https://docs.stripe.com/billing/subscriptions/overview
* Free trials, `trial_will_end` three days ahead, and
  `trial_settings.end_behavior.missing_payment_method` (cancel | pause | create_invoice):
  https://docs.stripe.com/billing/subscriptions/trials
* Pause payment collection (`pause_collection` never changes the status; only a trial ending
  without a payment method leads to `status=paused`): https://docs.stripe.com/billing/subscriptions/pause-payment
* Test clocks: https://docs.stripe.com/billing/testing/test-clocks
* Fulfil Checkout orders, delayed payment methods (`payment_status` unpaid, then
  `checkout.session.async_payment_succeeded` / `_failed`), expiry: https://docs.stripe.com/checkout/fulfillment
* Refunds: https://docs.stripe.com/refunds; disputes: https://docs.stripe.com/disputes/how-disputes-work
* Entitlements: https://docs.stripe.com/billing/entitlements
* Event ordering is not guaranteed: https://docs.stripe.com/webhooks#event-ordering
* API versions: https://docs.stripe.com/changelog/basil/2025-03-31/deprecate-subscription-current-period-start-and-end,
  https://docs.stripe.com/changelog/basil/2025-03-31/adds-new-parent-field-to-invoicing-objects,
  https://docs.stripe.com/changelog/endive/2026-09-30/invoice-uncollectible-status-detail
* Accounts v2 customers (`customer_account`): https://docs.stripe.com/accounts-v2/use-accounts-as-customers

Where the documentation does not fix an order, the sequences follow event logs people have
published: at a Checkout signup `checkout.session.completed` is created last, after the first
invoice is paid and the subscription is active; at a renewal `invoice.created` comes with the
`customer.subscription.updated` that moves the period, and the invoice is finalized and charged
about an hour later.

Every scenario gives its events distinct, strictly increasing `created` seconds, except
`signup_burst`, where all of them share one second, as Stripe often does at signup.

`story.py` tells a story (its objects, their snapshots as events), `steps.py` holds the steps the
stories share, each family of scenarios has its module; this one lists them (`SCENARIOS`) and
builds them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from events.scenarios.accounts import accounts_v2_signup_paid, connect_signup_paid
from events.scenarios.customers import (
    customer_deleted,
    entitlements_summary_event_lost,
    entitlements_summary_has_more,
    entitlements_summary_then_paused,
    entitlements_summary_updated,
)
from events.scenarios.disputes import (
    guest_purchase_disputed,
    purchase_dispute_lost,
    purchase_dispute_won,
    subscription_payment_disputed,
)
from events.scenarios.purchases import (
    checkout_expired,
    guest_checkout,
    one_time_purchase,
    one_time_purchase_delayed,
    one_time_purchase_delayed_failed,
    purchase_refund_failed,
    purchase_refunded,
)
from events.scenarios.story import (
    DAY,
    DEFAULT_PARAMS,
    DEFAULT_START,
    HOUR,
    Request,
    Scenario,
    ScenarioParams,
    add_months,
    render,
)
from events.scenarios.subscriptions import (
    cancel_at_period_end,
    cancel_scheduled,
    collection_paused,
    invoice_marked_uncollectible,
    invoice_voided,
    multi_item_with_metered,
    payment_action_required,
    payment_failed_then_canceled,
    payment_failed_then_recovered,
    payment_failed_then_unpaid,
    plan_change_then_renewal_fails,
    plan_change_with_unpaid_invoice,
    renewal,
    renewal_on_test_clock,
    send_invoice_overdue,
    signup_burst,
    signup_incomplete_expired,
    signup_paid,
)
from events.scenarios.trials import (
    pause_and_resume,
    trial_converts,
    trial_ends_without_payment_method,
    trial_ends_without_payment_method_invoice,
    trial_ends_without_payment_method_paused,
)

__all__ = [
    "DAY",
    "DEFAULT_PARAMS",
    "DEFAULT_START",
    "HOUR",
    "NEEDS_CUSTOMER_OBJECT",
    "SCENARIOS",
    "Request",
    "Scenario",
    "ScenarioParams",
    "accounts_v2_signup_paid",
    "add_months",
    "all_scenarios",
    "build",
    "cancel_at_period_end",
    "cancel_scheduled",
    "checkout_expired",
    "collection_paused",
    "connect_signup_paid",
    "customer_deleted",
    "entitlements_summary_event_lost",
    "entitlements_summary_has_more",
    "entitlements_summary_then_paused",
    "entitlements_summary_updated",
    "guest_checkout",
    "guest_purchase_disputed",
    "invoice_marked_uncollectible",
    "invoice_voided",
    "multi_item_with_metered",
    "one_time_purchase",
    "one_time_purchase_delayed",
    "one_time_purchase_delayed_failed",
    "pause_and_resume",
    "payment_action_required",
    "payment_failed_then_canceled",
    "payment_failed_then_recovered",
    "payment_failed_then_unpaid",
    "plan_change_then_renewal_fails",
    "plan_change_with_unpaid_invoice",
    "purchase_dispute_lost",
    "purchase_dispute_won",
    "purchase_refund_failed",
    "purchase_refunded",
    "render",
    "renewal",
    "renewal_on_test_clock",
    "send_invoice_overdue",
    "signup_burst",
    "signup_incomplete_expired",
    "signup_paid",
    "subscription_payment_disputed",
    "trial_converts",
    "trial_ends_without_payment_method",
    "trial_ends_without_payment_method_invoice",
    "trial_ends_without_payment_method_paused",
]

SCENARIOS: dict[str, Callable[[ScenarioParams], Scenario]] = {
    "signup_paid": signup_paid,
    "signup_burst": signup_burst,
    "signup_incomplete_expired": signup_incomplete_expired,
    "trial_converts": trial_converts,
    "trial_ends_without_payment_method": trial_ends_without_payment_method,
    "trial_ends_without_payment_method_paused": trial_ends_without_payment_method_paused,
    "trial_ends_without_payment_method_invoice": trial_ends_without_payment_method_invoice,
    "renewal": renewal,
    "payment_failed_then_recovered": payment_failed_then_recovered,
    "payment_failed_then_unpaid": payment_failed_then_unpaid,
    "payment_failed_then_canceled": payment_failed_then_canceled,
    "payment_action_required": payment_action_required,
    "cancel_scheduled": cancel_scheduled,
    "cancel_at_period_end": cancel_at_period_end,
    "pause_and_resume": pause_and_resume,
    "collection_paused": collection_paused,
    "plan_change_with_unpaid_invoice": plan_change_with_unpaid_invoice,
    "plan_change_then_renewal_fails": plan_change_then_renewal_fails,
    "send_invoice_overdue": send_invoice_overdue,
    "multi_item_with_metered": multi_item_with_metered,
    "one_time_purchase": one_time_purchase,
    "one_time_purchase_delayed": one_time_purchase_delayed,
    "one_time_purchase_delayed_failed": one_time_purchase_delayed_failed,
    "checkout_expired": checkout_expired,
    "purchase_refunded": purchase_refunded,
    "purchase_dispute_lost": purchase_dispute_lost,
    "purchase_dispute_won": purchase_dispute_won,
    "guest_checkout": guest_checkout,
    "subscription_payment_disputed": subscription_payment_disputed,
    "guest_purchase_disputed": guest_purchase_disputed,
    "purchase_refund_failed": purchase_refund_failed,
    "customer_deleted": customer_deleted,
    "entitlements_summary_updated": entitlements_summary_updated,
    "entitlements_summary_has_more": entitlements_summary_has_more,
    "entitlements_summary_then_paused": entitlements_summary_then_paused,
    "entitlements_summary_event_lost": entitlements_summary_event_lost,
    "invoice_voided": invoice_voided,
    "invoice_marked_uncollectible": invoice_marked_uncollectible,
    "test_clock_renewal": renewal_on_test_clock,
    "accounts_v2_signup_paid": accounts_v2_signup_paid,
    "connect_signup_paid": connect_signup_paid,
}

# Scenarios that need a Customer object (cus_…): skipped for an Accounts v2 customer id.
NEEDS_CUSTOMER_OBJECT = frozenset(
    {
        "customer_deleted",
        "entitlements_summary_updated",
        "entitlements_summary_has_more",
        "entitlements_summary_then_paused",
        "entitlements_summary_event_lost",
    }
)


def build(name: str, params: ScenarioParams = DEFAULT_PARAMS, *, ends_at: int | None = None) -> Scenario:
    """One scenario by name. With `ends_at`, its start is chosen so its last event is at `ends_at`
    (the demo uses the current time, so that periods and grace periods are still running)."""
    try:
        make = SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise ValueError(f"unknown scenario {name!r}; known: {known}") from None
    scenario = make(params)
    if ends_at is None or not scenario.events:
        return scenario
    for _ in range(4):  # months differ in length: a story spanning several may need a second shift
        last = max(int(event["created"]) for event in scenario.events)
        if last == ends_at:
            break
        params = replace(params, start=params.start + ends_at - last)
        scenario = make(params)
    return scenario


def all_scenarios(params: ScenarioParams = DEFAULT_PARAMS, *, ends_at: int | None = None) -> list[Scenario]:
    """Every scenario for `params` (those needing a Customer object are left out for an `acct_…` id)."""
    accounts_v2 = params.customer_id.startswith("acct_")
    return [
        build(name, params, ends_at=ends_at)
        for name in SCENARIOS
        if not (accounts_v2 and name in NEEDS_CUSTOMER_OBJECT)
    ]
