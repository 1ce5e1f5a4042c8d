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
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, NotRequired, TypedDict, Unpack

from events.stripe import objects as samples
from events.stripe.objects import ApiShape, FeatureSpec, IdFactory, ItemSpec, JsonObject, PriceSpec

DAY = 86400
HOUR = 3600
DEFAULT_START = 1767225600  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class ScenarioParams:
    """Who and what a scenario is about. `customer_id` may be a `cus_…` or, for Accounts v2, an
    `acct_…` id (then objects carry `customer_account` and no Customer object exists)."""

    customer_id: str = "cus_R7fTQm2pLx9bNc"
    user_id: str = "user_1001"
    product_id: str = "prod_SamplePro0001"
    price_id: str = "price_1SamplePro0Monthly0001"
    lookup_key: str | None = "pro_monthly"
    unit_amount: int = 2000
    upgrade_product_id: str = "prod_SampleTeam001"
    upgrade_price_id: str = "price_1SampleTeam0Monthly001"
    upgrade_lookup_key: str | None = "team_monthly"
    upgrade_unit_amount: int = 5000
    metered_product_id: str = "prod_SampleApi0001"
    metered_price_id: str = "price_1SampleApiCalls0Meter1"
    metered_lookup_key: str | None = "api_calls_metered"
    one_time_product_id: str = "prod_SampleCourse1"
    one_time_price_id: str = "price_1SampleCourse0Once0001"
    one_time_lookup_key: str | None = "course_lifetime"
    one_time_amount: int = 9900
    currency: str = "usd"
    features: tuple[FeatureSpec, ...] = (
        FeatureSpec("pro_reports", "Pro reports"),
        FeatureSpec("priority_support", "Priority support"),
    )
    start: int = DEFAULT_START
    api: ApiShape = "current"
    livemode: bool = False
    # The Connect account the events come from (events then carry `account`).
    account: str | None = None
    # Used by the Accounts v2 and Connect variants in `all_scenarios`.
    accounts_v2_customer: str = "acct_1SampleCustomerAcct01"
    connect_account: str = "acct_1SampleConnectedAcct1"

    @property
    def pro_price(self) -> PriceSpec:
        return PriceSpec(
            self.price_id, self.product_id, self.lookup_key, self.unit_amount, self.currency, nickname="Pro"
        )

    @property
    def upgrade_price(self) -> PriceSpec:
        return PriceSpec(
            self.upgrade_price_id,
            self.upgrade_product_id,
            self.upgrade_lookup_key,
            self.upgrade_unit_amount,
            self.currency,
            nickname="Team",
        )

    @property
    def metered_price(self) -> PriceSpec:
        return PriceSpec(
            self.metered_price_id,
            self.metered_product_id,
            self.metered_lookup_key,
            unit_amount=1,
            currency=self.currency,
            usage_type="metered",
            nickname="API calls",
        )

    @property
    def one_time_price(self) -> PriceSpec:
        return PriceSpec(
            self.one_time_price_id,
            self.one_time_product_id,
            self.one_time_lookup_key,
            self.one_time_amount,
            self.currency,
            recurring=False,
            nickname="Video course",
        )


DEFAULT_PARAMS = ScenarioParams()


@dataclass(frozen=True)
class Scenario:
    """One customer's events, and what the Stripe API would answer afterwards.

    What a story ends in is not written here: the demo derives it from the rules
    (local_runtime.demo.expected_entitlements).
    `api_objects` holds the final state of every object by id as the API returns it at the SDK's
    version (`current` shape), for fetch mocks and tie-breaking; `api_lists` holds list answers by
    request path (Checkout line items, active entitlements).
    """

    name: str
    customer_id: str | None
    story: str
    events: list[JsonObject]
    api_objects: dict[str, JsonObject] = field(default_factory=dict)
    api_lists: dict[str, JsonObject] = field(default_factory=dict)

    def bodies(self) -> list[bytes]:
        return [render(event) for event in self.events]


def render(event: JsonObject) -> bytes:
    """The exact bytes Stripe posts: pretty-printed JSON with two-space indents, UTF-8."""
    return json.dumps(event, indent=2, ensure_ascii=False).encode()


def add_months(timestamp: int, months: int) -> int:
    """Stripe's monthly periods: same day of month, clamped to the month's last day."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


type Request = tuple[str, str] | None


class _Tracked:
    """One Stripe object whose successive snapshots the story emits."""

    def __init__(self, build: Callable[..., JsonObject], fields: dict[str, Any]) -> None:
        self._build = build
        self.fields = fields
        self.current = build(**fields)

    @property
    def id(self) -> str:
        return str(self.current["id"])

    def change(self, **changes: Any) -> tuple[JsonObject, JsonObject]:
        before = self.current
        self.fields.update(changes)
        self.current = self._build(**self.fields)
        return before, self.current

    def fetched(self) -> JsonObject:
        # The worker fetches with the pinned SDK, whatever version the webhook endpoint uses.
        if "api" in self.fields:
            return self._build(**{**self.fields, "api": "current"})
        return self.current


class _Story:
    def __init__(self, name: str, params: ScenarioParams, *, same_second: bool = False) -> None:
        self.name = name
        self.p = params
        self.ids = IdFactory(f"{name}|{params.customer_id}|{params.api}|{params.livemode}|{params.account}")
        self.events: list[JsonObject] = []
        self.same_second = same_second
        # Test clocks: objects live in simulated time while events are created in real time;
        # once set, events are created at this real time onwards, whatever the simulated time.
        self.real_time: int | None = None
        self.test_clock: str | None = None
        self.period = (params.start, add_months(params.start, 1))
        self.payment_method = samples.derived_id("pm", params.customer_id)
        self._last_created: int | None = None
        self._tracked: list[_Tracked] = []
        self._deleted_customers: set[str] = set()
        self.api_lists: dict[str, JsonObject] = {}

    @property
    def accounts_v2(self) -> bool:
        return self.p.customer_id.startswith("acct_")

    @property
    def customer(self) -> str | None:
        return None if self.accounts_v2 else self.p.customer_id

    @property
    def customer_account(self) -> str | None:
        return self.p.customer_id if self.accounts_v2 else None

    def request(self) -> Request:
        return self.ids("req"), self.ids.idempotency_key()

    def track(self, build: Callable[..., JsonObject], **fields: Any) -> _Tracked:
        tracked = _Tracked(partial(build, self.ids), fields)
        self._tracked.append(tracked)
        return tracked

    def emit(
        self, type: str, obj: JsonObject, at: int, request: Request, previous: JsonObject | None = None
    ) -> int:
        created = at if self.real_time is None else self.real_time
        if not self.same_second and self._last_created is not None and created <= self._last_created:
            created = self._last_created + 1
        self._last_created = created
        self.events.append(
            samples.event(
                self.ids,
                type,
                obj,
                created=created,
                livemode=self.p.livemode,
                account=self.p.account,
                previous_attributes=previous,
                api_version=samples.api_version_for(self.p.api),
                request_id=request[0] if request else None,
                idempotency_key=request[1] if request else None,
            )
        )
        return created

    def emit_current(self, type: str, tracked: _Tracked, at: int, request: Request) -> None:
        self.emit(type, tracked.current, at, request)

    def update(self, type: str, tracked: _Tracked, at: int, request: Request, **changes: Any) -> None:
        """An `*.updated` event: carries `previous_attributes`."""
        before, after = tracked.change(**changes)
        self.emit(type, after, at, request, samples.previous_attributes(before, after))

    def transition(self, type: str, tracked: _Tracked, at: int, request: Request, **changes: Any) -> None:
        """Any other event about a changed object (invoice.paid, customer.subscription.deleted…)."""
        tracked.change(**changes)
        self.emit(type, tracked.current, at, request)

    def find(self, object_id: str) -> _Tracked:
        return next(tracked for tracked in self._tracked if tracked.current.get("id") == object_id)

    def delete_customer(self, customer_id: str) -> None:
        self._deleted_customers.add(customer_id)

    def scenario(self, story: str) -> Scenario:
        objects: dict[str, JsonObject] = {}
        for tracked in self._tracked:
            if "id" in tracked.current:
                objects[tracked.id] = tracked.fetched()
        for customer_id in self._deleted_customers:
            objects[customer_id] = samples.deleted_customer(customer_id)
        return Scenario(
            name=self.name,
            customer_id=self.p.customer_id,
            story=story,
            events=self.events,
            api_objects=objects,
            api_lists=dict(self.api_lists),
        )


def _new_customer(story: _Story, at: int, request: Request) -> _Tracked | None:
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


def _needs_a_customer(story: _Story, what: str) -> None:
    if story.accounts_v2:
        raise ValueError(f"{what} a Customer (cus_…), not an Accounts v2 account")


def _new_subscription(
    story: _Story,
    at: int,
    items: list[ItemSpec],
    *,
    status: samples.SubscriptionStatus,
    period_end: int,
    trial: bool = False,
    missing_payment_method: samples.MissingPaymentMethod = "create_invoice",
    default_payment_method: str | None = None,
) -> _Tracked:
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


class _InvoiceTerms(TypedDict):
    """Why a subscription's invoice bills and for when; `items` default to the subscription's."""

    billing_reason: samples.BillingReason
    period: tuple[int, int]
    line_period: tuple[int, int]
    items: NotRequired[list[ItemSpec]]


def _invoice_fields(
    story: _Story, subscription: _Tracked, at: int, **terms: Unpack[_InvoiceTerms]
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


def _new_invoice(
    story: _Story,
    subscription: _Tracked,
    at: int,
    *,
    amount_due: int | None = None,
    metered_usage: int = 0,
    proration: bool = False,
    trial: bool = False,
    **terms: Unpack[_InvoiceTerms],
) -> _Tracked:
    return story.track(
        samples.invoice,
        id=story.ids("in"),
        **_invoice_fields(story, subscription, at, **terms),
        amount_due=amount_due,
        metered_usage=metered_usage,
        proration=proration,
        trial=trial,
    )


def _invoice_created(
    story: _Story, subscription: _Tracked, at: int, request: Request, **invoice: Any
) -> _Tracked:
    """invoice.created for a new draft invoice of the subscription."""
    created = _new_invoice(story, subscription, at, **invoice)
    story.emit_current("invoice.created", created, at, request)
    return created


def _first_invoice(story: _Story, subscription: _Tracked, at: int, **invoice: Any) -> _Tracked:
    """The subscription's first invoice (subscription_create), a draft the subscription names."""
    first = _new_invoice(
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


def _subscription_opened(
    story: _Story,
    at: int,
    request: Request,
    items: list[ItemSpec],
    *,
    status: samples.SubscriptionStatus = "incomplete",
    metered_usage: int = 0,
) -> tuple[_Tracked, _Tracked]:
    """The customer (customer.created) and a monthly subscription with its first invoice, as the
    API creates them; their own events follow (`_subscription_created`)."""
    _new_customer(story, at, request)
    subscription = _new_subscription(story, at, items, status=status, period_end=add_months(at, 1))
    return subscription, _first_invoice(story, subscription, at, metered_usage=metered_usage)


def _subscription_created(
    story: _Story, subscription: _Tracked, first: _Tracked, at: int, request: Request
) -> None:
    story.emit_current("customer.subscription.created", subscription, at, request)
    story.emit_current("invoice.created", first, at, request)


def _subscription_turns(
    story: _Story,
    subscription: _Tracked,
    status: samples.SubscriptionStatus,
    at: int,
    request: Request = None,
    **changes: Any,
) -> None:
    """customer.subscription.updated for a new status (and what changes with it)."""
    story.update("customer.subscription.updated", subscription, at, request, status=status, **changes)


def _subscription_paused(story: _Story, subscription: _Tracked, at: int) -> None:
    """A trial ended without a payment method (missing_payment_method=pause): paused, no invoice."""
    _subscription_turns(story, subscription, "paused", at)
    story.emit_current("customer.subscription.paused", subscription, at, None)


def _subscription_deleted(
    story: _Story,
    subscription: _Tracked,
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


def _payment_intent(
    story: _Story,
    invoice: _Tracked | None,
    at: int,
    amount: int,
    status: samples.PaymentIntentStatus,
    *,
    guest: bool = False,
    **kw: Any,
) -> _Tracked:
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


def _charge(story: _Story, charge_id: str, intent: _Tracked, amount: int, at: int, **kw: Any) -> _Tracked:
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


def _finalize(story: _Story, invoice: _Tracked, at: int, request: Request) -> None:
    story.transition("invoice.finalized", invoice, at, request, status="open", finalized_at=at)


def _collect(story: _Story, invoice: _Tracked, at: int, request: Request, *, attempt: int = 1) -> None:
    """A successful charge of an open invoice: payment_intent.succeeded, invoice.paid, payment_succeeded."""
    amount = int(invoice.current["amount_due"])
    intent_id = invoice.fields.get("payment_intent")
    if amount > 0:
        if intent_id is None:
            intent = _invoice_intent(story, invoice, at, "succeeded", latest_charge=story.ids("ch"))
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


def _finalized_and_paid(story: _Story, invoice: _Tracked, at: int, request: Request) -> None:
    """Stripe finalizes the invoice and charges it at once, successfully."""
    _finalize(story, invoice, at, request)
    _collect(story, invoice, at, request)


def _invoice_intent(
    story: _Story, invoice: _Tracked, at: int, status: samples.PaymentIntentStatus, **kw: Any
) -> _Tracked:
    """The payment intent Stripe creates to charge the invoice with the customer's card."""
    reason = invoice.fields["billing_reason"]
    return _payment_intent(
        story,
        invoice,
        at,
        int(invoice.current["amount_due"]),
        status,
        payment_method=story.payment_method,
        description="Subscription creation" if reason == "subscription_create" else "Subscription update",
        **kw,
    )


def _fail(
    story: _Story,
    invoice: _Tracked,
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
        intent = _invoice_intent(story, invoice, at, status, declined=not action_required)
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


def _invoice_voided(story: _Story, invoice: _Tracked, at: int, request: Request = None) -> None:
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


def _invoice_marked_uncollectible(story: _Story, invoice: _Tracked, at: int, request: Request) -> None:
    story.transition(
        "invoice.marked_uncollectible",
        invoice,
        at,
        request,
        status="uncollectible",
        marked_uncollectible_at=at,
        next_payment_attempt=None,
    )


def _signup(
    story: _Story, items: list[ItemSpec] | None = None, *, metered_usage: int = 0
) -> tuple[_Tracked, _Tracked]:
    """Subscription created through the API and paid at once (charge_automatically)."""
    at, request = story.p.start, story.request()
    subscription, first = _subscription_opened(
        story, at, request, items or [ItemSpec(story.p.pro_price)], metered_usage=metered_usage
    )
    _subscription_created(story, subscription, first, at, request)
    _first_payment_succeeds(story, subscription, first, at, request)
    return subscription, first


def _first_payment_succeeds(
    story: _Story, subscription: _Tracked, first: _Tracked, at: int, request: Request
) -> None:
    """The first invoice is finalized and paid; the subscription turns active with the card."""
    _finalized_and_paid(story, first, at, request)
    _subscription_turns(
        story, subscription, "active", at, request, default_payment_method=story.payment_method
    )


def _renew(
    story: _Story,
    subscription: _Tracked,
    *,
    metered_usage: int = 0,
    upcoming: bool = False,
    **subscription_changes: Any,
) -> _Tracked:
    """The period ends: Stripe creates the next invoice and moves the subscription's period
    (with `subscription_changes` in the same update, such as a trial turning active).

    Returns the draft invoice; Stripe finalizes and charges it about an hour later.
    """
    old_start, old_end = story.period
    new_end = add_months(old_end, 1)
    if upcoming:
        preview = samples.invoice(
            story.ids,
            **_invoice_fields(
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
    invoice = _invoice_created(
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


def _renewal_paid(story: _Story, subscription: _Tracked, **renewal: Any) -> None:
    """The period ends; an hour later the renewal invoice is finalized and paid."""
    invoice = _renew(story, subscription, **renewal)
    _finalized_and_paid(story, invoice, story.period[0] + HOUR, None)


def _renewal_fails(
    story: _Story,
    subscription: _Tracked,
    *,
    action_required: bool = False,
    retry_at: int | None = None,
    **renewal: Any,
) -> tuple[_Tracked, int]:
    """The period ends; an hour later the renewal's charge fails and the subscription goes past_due.
    A declined card is retried at `retry_at` (3 days after the failure unless given); a charge
    waiting for 3-D Secure waits for the customer.

    Returns the open invoice and when its charge failed.
    """
    invoice = _renew(story, subscription, **renewal)
    failed_at = story.period[0] + HOUR
    if retry_at is None:
        retry_at = failed_at + 3 * DAY
    _finalize(story, invoice, failed_at, None)
    _fail(
        story,
        invoice,
        failed_at,
        attempt=1,
        next_attempt=None if action_required else retry_at,
        action_required=action_required,
    )
    _subscription_turns(story, subscription, "past_due", failed_at)
    return invoice, failed_at


def _every_retry_fails(story: _Story) -> tuple[_Tracked, int]:
    """A signup whose first renewal fails, as do Stripe's retries 3, 5 and 7 days later.
    Returns the subscription and the time of the last retry."""
    subscription, _ = _signup(story)
    invoice, failed_at = _renewal_fails(story, subscription)
    last = failed_at
    for attempt, days in ((2, 3), (3, 5), (4, 7)):
        last = failed_at + days * DAY
        _fail(story, invoice, last, attempt=attempt, next_attempt=None if attempt == 4 else last + 2 * DAY)
    return subscription, last


def _failed_renewal_closed(story: _Story, close: Callable[[_Story, _Tracked, int, Request], None]) -> None:
    """A signup whose renewal fails (past_due); two days later the merchant closes the invoice
    (`close`) and Stripe moves the subscription back to active."""
    subscription, _ = _signup(story)
    invoice, failed_at = _renewal_fails(story, subscription)
    at, request = failed_at + 2 * DAY, story.request()
    close(story, invoice, at, request)
    _subscription_turns(story, subscription, "active", at, request)


def _trial_signup(
    story: _Story,
    *,
    missing_payment_method: samples.MissingPaymentMethod,
    with_payment_method: bool,
    trial_days: int = 14,
) -> tuple[_Tracked, int]:
    """A trial: subscription `trialing`, a $0 invoice paid at once, trial_will_end 3 days ahead."""
    at, request = story.p.start, story.request()
    trial_end = at + trial_days * DAY
    _new_customer(story, at, request)
    subscription = _new_subscription(
        story,
        at,
        [ItemSpec(story.p.pro_price)],
        status="trialing",
        period_end=trial_end,
        trial=True,
        missing_payment_method=missing_payment_method,
        default_payment_method=story.payment_method if with_payment_method else None,
    )
    zero = _first_invoice(story, subscription, at, amount_due=0, trial=True)
    _subscription_created(story, subscription, zero, at, request)
    _finalized_and_paid(story, zero, at, request)
    story.emit_current("customer.subscription.trial_will_end", subscription, trial_end - 3 * DAY, None)
    return subscription, trial_end


def _session_id(story: _Story) -> str:
    return story.ids("cs_live" if story.p.livemode else "cs_test")


def _line_items_listed(story: _Story, session: _Tracked, price: PriceSpec) -> None:
    """What the API lists as the session's line items (the webhook's session carries none)."""
    story.api_lists[f"/v1/checkout/sessions/{session.id}/line_items"] = samples.checkout_line_items(
        session_id=session.id, prices=[(price, 1)], livemode=story.p.livemode
    )


def _payment_session(
    story: _Story,
    *,
    status: samples.CheckoutStatus,
    payment_status: samples.CheckoutPaymentStatus,
    created: int,
    guest: bool = False,
    **kw: Any,
) -> _Tracked:
    """A Checkout Session in payment mode for the one-time price; a guest's names no customer."""
    p = story.p
    return story.track(
        samples.checkout_session,
        id=_session_id(story),
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


def _one_time_checkout(
    story: _Story, *, delayed: bool = False, guest: bool = False
) -> tuple[_Tracked, _Tracked, _Tracked]:
    """A Checkout payment-mode purchase. Returns (session, payment intent, charge)."""
    p = story.p
    at = p.start
    request = story.request()
    if not guest:
        _new_customer(story, at - 600, story.request())
    methods = ("us_bank_account",) if delayed else ("card",)
    charge_id = story.ids("ch")
    intent = _payment_intent(
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
    charge = _charge(
        story, charge_id, intent, p.one_time_amount, at, status="pending" if delayed else "succeeded"
    )
    session = _payment_session(
        story,
        status="complete",
        payment_status="unpaid" if delayed else "paid",
        created=at - 300,
        guest=guest,
        payment_intent=intent.id,
        payment_method_types=methods,
    )
    _line_items_listed(story, session, p.one_time_price)
    if not delayed:
        story.emit_current("payment_intent.succeeded", intent, at, request)
    story.emit_current("checkout.session.completed", session, at, request)
    return session, intent, charge


def _settle_delayed(
    story: _Story, session: _Tracked, intent: _Tracked, charge: _Tracked, at: int, *, succeeded: bool
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


def _refunded_in_full(
    story: _Story, intent: _Tracked, charge: _Tracked, at: int, *, customer: str | None
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


def _dispute_opened(story: _Story, charge: _Tracked, intent: _Tracked, amount: int, at: int) -> _Tracked:
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


def _dispute_closed(story: _Story, dispute: _Tracked, at: int, status: Literal["won", "lost"]) -> None:
    story.transition("charge.dispute.closed", dispute, at, None, status=status)
    if status == "won":
        story.emit_current("charge.dispute.funds_reinstated", dispute, at, None)


def _summary_updated(story: _Story, *, has_more: bool = False) -> None:
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


# --------------------------------------------------------------------------------------------
# Subscriptions: signup
# --------------------------------------------------------------------------------------------


def _checkout_signup(name: str, params: ScenarioParams, *, same_second: bool) -> _Story:
    story = _Story(name, params, same_second=same_second)
    p = params
    at, request = p.start, story.request()
    subscription, first = _subscription_opened(story, at, request, [ItemSpec(p.pro_price)])
    session = story.track(
        samples.checkout_session,
        id=_session_id(story),
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
    _line_items_listed(story, session, p.pro_price)
    _subscription_created(story, subscription, first, at, request)
    _first_payment_succeeds(story, subscription, first, at, request)
    # Created last: the session completes once the first invoice is paid.
    story.emit_current("checkout.session.completed", session, at, request)
    return story


def signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return _signup_paid("signup_paid", params)


def _signup_paid(name: str, params: ScenarioParams, story_note: str = "") -> Scenario:
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
    story = _Story("signup_incomplete_expired", params)
    at, request = params.start, story.request()
    subscription, first = _subscription_opened(story, at, request, [ItemSpec(params.pro_price)])
    _subscription_created(story, subscription, first, at, request)
    _finalize(story, first, at, request)
    _fail(story, first, at, attempt=1, next_attempt=None)
    expired = at + 23 * HOUR
    _invoice_voided(story, first, expired)
    _subscription_turns(story, subscription, "incomplete_expired", expired)
    return story.scenario(
        "The first payment fails; 23 hours later the subscription is incomplete_expired and its "
        "invoice void.",
    )


# --------------------------------------------------------------------------------------------
# Subscriptions: trials
# --------------------------------------------------------------------------------------------


def trial_converts(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("trial_converts", params)
    subscription, _ = _trial_signup(story, missing_payment_method="cancel", with_payment_method=True)
    _renewal_paid(story, subscription, status="active")
    return story.scenario(
        "A 14-day trial with a card on file: trialing, trial_will_end 3 days before the end, then "
        "the first real invoice is paid and the subscription turns active.",
    )


def trial_ends_without_payment_method(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("trial_ends_without_payment_method", params)
    subscription, trial_end = _trial_signup(story, missing_payment_method="cancel", with_payment_method=False)
    _subscription_deleted(story, subscription, trial_end)
    return story.scenario(
        "A trial without a payment method and end_behavior.missing_payment_method=cancel: the "
        "subscription is canceled when the trial ends.",
    )


def trial_ends_without_payment_method_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("trial_ends_without_payment_method_paused", params)
    subscription, trial_end = _trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    _subscription_paused(story, subscription, trial_end)
    return story.scenario(
        "A trial without a payment method and end_behavior.missing_payment_method=pause: the "
        "subscription turns paused when the trial ends (no invoice).",
    )


def trial_ends_without_payment_method_invoice(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("trial_ends_without_payment_method_invoice", params)
    subscription, trial_end = _trial_signup(
        story, missing_payment_method="create_invoice", with_payment_method=False
    )
    _renewal_fails(story, subscription, retry_at=trial_end + 3 * DAY, status="active")
    return story.scenario(
        "A trial without a payment method and missing_payment_method=create_invoice: the first "
        "invoice cannot be paid and the subscription goes past_due.",
    )


# --------------------------------------------------------------------------------------------
# Subscriptions: renewals and failed payments
# --------------------------------------------------------------------------------------------


def renewal(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("renewal", params)
    subscription, _ = _signup(story)
    _renewal_paid(story, subscription, upcoming=True)
    return story.scenario(
        "An active subscription renews: invoice.upcoming (a preview without an id) 3 days ahead, "
        "then the next invoice, the period moves, and the invoice is paid an hour later.",
    )


def payment_failed_then_recovered(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("payment_failed_then_recovered", params)
    subscription, _ = _signup(story)
    invoice, failed_at = _renewal_fails(story, subscription)
    retry = failed_at + 3 * DAY
    _collect(story, invoice, retry, None, attempt=2)
    _subscription_turns(story, subscription, "active", retry)
    return story.scenario(
        "The renewal payment fails (past_due); Stripe's retry 3 days later succeeds (active).",
    )


def payment_failed_then_unpaid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("payment_failed_then_unpaid", params)
    subscription, last = _every_retry_fails(story)
    _subscription_turns(story, subscription, "unpaid", last)
    return story.scenario(
        "The renewal payment fails and every retry fails; the subscription settings say 'mark unpaid': "
        "the subscription turns unpaid and its invoice stays open.",
    )


def payment_failed_then_canceled(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("payment_failed_then_canceled", params)
    subscription, last = _every_retry_fails(story)
    _subscription_deleted(story, subscription, last, reason="payment_failed")
    return story.scenario(
        "The renewal payment fails and every retry fails; the subscription settings say 'cancel': "
        "customer.subscription.deleted with cancellation_details.reason=payment_failed.",
    )


def payment_action_required(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("payment_action_required", params)
    subscription, _ = _signup(story)
    _renewal_fails(story, subscription, action_required=True)
    return story.scenario(
        "The renewal payment needs 3-D Secure: invoice.payment_action_required and the subscription "
        "goes past_due until the customer authenticates.",
    )


# --------------------------------------------------------------------------------------------
# Subscriptions: cancellation, pauses, plan changes, several items
# --------------------------------------------------------------------------------------------


def _schedule_cancel(story: _Story, subscription: _Tracked) -> int:
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
    story = _Story("cancel_scheduled", params)
    subscription, _ = _signup(story)
    _schedule_cancel(story, subscription)
    return story.scenario(
        "The customer cancels at period end: status stays active with cancel_at_period_end=true.",
    )


def cancel_at_period_end(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("cancel_at_period_end", params)
    subscription, _ = _signup(story)
    _schedule_cancel(story, subscription)
    _subscription_deleted(story, subscription, story.period[1])
    return story.scenario(
        "Cancel at period end, then at the period end customer.subscription.deleted (canceled).",
    )


def pause_and_resume(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("pause_and_resume", params)
    subscription, trial_end = _trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    _subscription_paused(story, subscription, trial_end)
    resumed = trial_end + 5 * DAY
    request = story.request()
    new_end = add_months(resumed, 1)
    invoice = _invoice_created(
        story,
        subscription,
        resumed,
        request,
        billing_reason="subscription_update",
        period=(resumed, resumed),
        line_period=(resumed, new_end),
    )
    _finalized_and_paid(story, invoice, resumed, request)
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


def collection_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("collection_paused", params)
    subscription, _ = _signup(story)
    paused_at = params.start + 5 * DAY
    resumes_at = add_months(story.period[1], 1)
    story.update(
        "customer.subscription.updated",
        subscription,
        paused_at,
        story.request(),
        pause_collection={"behavior": "void", "resumes_at": resumes_at},
    )
    invoice = _renew(story, subscription)
    _invoice_voided(story, invoice, story.period[0])
    return story.scenario(
        "Payment collection paused with behavior=void: the renewal invoice is voided at once and the "
        "subscription stays active (pause_collection is not status=paused).",
    )


def plan_change_with_unpaid_invoice(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("plan_change_with_unpaid_invoice", params)
    unpaid = _plan_change_leaving_an_unpaid_invoice(story)[1]
    return story.scenario(
        "The renewal fails (past_due), then the customer upgrades to Team with an immediate proration "
        "invoice, which is paid: Stripe shows the subscription active although the earlier renewal "
        f"invoice {unpaid.id} stays open and unpaid, and its last retry fails; Stripe will not "
        "charge it again.",
    )


def plan_change_then_renewal_fails(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("plan_change_then_renewal_fails", params)
    subscription, unpaid = _plan_change_leaving_an_unpaid_invoice(story)
    _renewal_fails(story, subscription)
    return story.scenario(
        f"After a plan change left invoice {unpaid.id} open (Stripe no longer retries it), the next "
        "renewal's payment fails and the subscription goes past_due.",
    )


def _plan_change_leaving_an_unpaid_invoice(story: _Story) -> tuple[_Tracked, _Tracked]:
    params = story.p
    subscription, _ = _signup(story)
    unpaid, failed_at = _renewal_fails(story, subscription)
    changed_at = failed_at + DAY
    request = story.request()
    item_id = samples.subscription_item_id(subscription.id, params.price_id)
    upgraded = [ItemSpec(params.upgrade_price, item_id=item_id, created=params.start)]
    proration = _invoice_created(
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
    _finalized_and_paid(story, proration, changed_at, request)
    _subscription_turns(story, subscription, "active", changed_at, request)
    last_retry = failed_at + 3 * DAY
    _fail(story, unpaid, last_retry, attempt=2, next_attempt=None)
    return subscription, unpaid


def multi_item_with_metered(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("multi_item_with_metered", params)
    items = [ItemSpec(params.pro_price, quantity=3), ItemSpec(params.metered_price, quantity=None)]
    subscription, _ = _signup(story, items)
    _renewal_paid(story, subscription, metered_usage=12840)
    return story.scenario(
        "One subscription with two items: Pro for 3 seats (licensed) and API calls (metered, no "
        "quantity); the renewal bills the seats and the month's usage.",
    )


# --------------------------------------------------------------------------------------------
# One-time purchases
# --------------------------------------------------------------------------------------------


def one_time_purchase(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("one_time_purchase", params)
    _one_time_checkout(story)
    return story.scenario(
        "Checkout in payment mode, paid by card: payment_intent.succeeded, then checkout.session.completed "
        "with payment_status=paid.",
    )


def one_time_purchase_delayed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("one_time_purchase_delayed", params)
    session, intent, charge = _one_time_checkout(story, delayed=True)
    settled = params.start + 4 * DAY
    _settle_delayed(story, session, intent, charge, settled, succeeded=True)
    return story.scenario(
        "Checkout paid by bank debit: checkout.session.completed says payment_status=unpaid; four days "
        "later the payment clears and checkout.session.async_payment_succeeded says paid.",
    )


def one_time_purchase_delayed_failed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("one_time_purchase_delayed_failed", params)
    session, intent, charge = _one_time_checkout(story, delayed=True)
    _settle_delayed(story, session, intent, charge, params.start + 4 * DAY, succeeded=False)
    return story.scenario(
        "Checkout paid by bank debit; the debit fails: checkout.session.async_payment_failed.",
    )


def checkout_expired(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("checkout_expired", params)
    _new_customer(story, params.start - 600, story.request())
    session = _payment_session(story, status="open", payment_status="unpaid", created=params.start)
    expired = params.start + DAY
    story.transition("checkout.session.expired", session, expired, None, status="expired")
    return story.scenario(
        "A Checkout Session is abandoned and expires after 24 hours.",
    )


def purchase_refunded(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("purchase_refunded", params)
    _, intent, charge = _one_time_checkout(story)
    _refunded_in_full(story, intent, charge, params.start + 5 * DAY, customer=story.customer)
    return story.scenario(
        "A paid one-time purchase is refunded in full five days later (charge.refunded).",
    )


def _dispute(story: _Story) -> tuple[_Tracked, int]:
    """The one-time purchase is disputed 10 days later and the funds withdrawn. Returns the
    dispute and when it opened."""
    _, intent, charge = _one_time_checkout(story)
    at = story.p.start + 10 * DAY
    charge.change(disputed=True)
    dispute = _dispute_opened(story, charge, intent, story.p.one_time_amount, at)
    story.emit_current("charge.dispute.funds_withdrawn", dispute, at, None)
    return dispute, at


def purchase_dispute_lost(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("purchase_dispute_lost", params)
    dispute, opened = _dispute(story)
    _dispute_closed(story, dispute, opened + 30 * DAY, "lost")
    return story.scenario(
        "The card holder disputes the one-time purchase; the dispute (which names no customer, only "
        "the charge and payment intent) is lost.",
    )


def purchase_dispute_won(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("purchase_dispute_won", params)
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


def guest_checkout(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("guest_checkout", params)
    _one_time_checkout(story, guest=True)
    scenario = story.scenario(
        "Checkout in payment mode without a customer: customer is null everywhere; only "
        "customer_details.email says who paid.",
    )
    return replace(scenario, customer_id=None)


# --------------------------------------------------------------------------------------------
# Customers, entitlements, invoices
# --------------------------------------------------------------------------------------------


def customer_deleted(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("customer_deleted", params)
    _needs_a_customer(story, "customer_deleted needs")
    subscription, _ = _signup(story)
    customer = story.find(params.customer_id)
    at = params.start + 10 * DAY
    request = story.request()
    _subscription_deleted(story, subscription, at, request, reason="cancellation_requested")
    # The event carries the customer as it was; fetching it afterwards gives {"deleted": true}.
    story.emit_current("customer.deleted", customer, at, request)
    story.delete_customer(customer.id)
    return story.scenario(
        "The customer is deleted: Stripe cancels the subscription, then sends customer.deleted "
        "(with the full customer object).",
    )


def _entitlements(story: _Story, *, has_more: bool) -> None:
    _needs_a_customer(story, "entitlement summaries name")
    _signup(story)
    customer = story.p.customer_id
    full = samples.active_entitlement_summary(
        customer=customer, features=list(story.p.features), livemode=story.p.livemode
    )
    story.api_lists[f"/v1/entitlements/active_entitlements?customer={customer}"] = full["entitlements"]
    _summary_updated(story, has_more=has_more)


def entitlements_summary_updated(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("entitlements_summary_updated", params)
    _entitlements(story, has_more=False)
    return story.scenario(
        "The account uses Stripe Entitlements: after the signup, the active entitlement summary lists "
        "the customer's features.",
    )


def entitlements_summary_has_more(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("entitlements_summary_has_more", params)
    _entitlements(story, has_more=True)
    return story.scenario(
        "The summary's entitlement list is truncated (has_more=true): the rest must be fetched from "
        "/v1/entitlements/active_entitlements.",
    )


def invoice_voided(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("invoice_voided", params)
    _failed_renewal_closed(story, _invoice_voided)
    return story.scenario(
        "The renewal payment fails (past_due); the merchant voids the invoice and Stripe moves the "
        "subscription back to active.",
    )


def invoice_marked_uncollectible(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("invoice_marked_uncollectible", params)
    _failed_renewal_closed(story, _invoice_marked_uncollectible)
    return story.scenario(
        "The renewal payment fails (past_due); the merchant marks the invoice uncollectible (bad debt) "
        "and Stripe moves the subscription back to active.",
    )


def _sent_as_invoice(tracked: _Tracked, days_until_due: int) -> None:
    """collection_method=send_invoice: Stripe emails the invoice and waits for its due date."""
    build = tracked._build

    def sent(**fields: Any) -> JsonObject:
        obj = build(**fields)
        obj["collection_method"] = "send_invoice"
        if obj.get("object") == "subscription":
            obj["days_until_due"] = days_until_due
        return obj

    tracked._build = sent
    tracked.current = sent(**tracked.fields)


def send_invoice_overdue(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("send_invoice_overdue", params)
    at, request = params.start, story.request()
    subscription, first = _subscription_opened(
        story, at, request, [ItemSpec(params.pro_price)], status="active"
    )
    _sent_as_invoice(subscription, 30)
    _sent_as_invoice(first, 30)
    _subscription_created(story, subscription, first, at, request)
    due = at + 30 * DAY
    story.transition("invoice.finalized", first, at, request, status="open", finalized_at=at, due_date=due)
    story.emit_current("invoice.sent", first, at, request)
    story.emit_current("invoice.overdue", first, due, None)
    _subscription_turns(story, subscription, "past_due", due)
    return story.scenario(
        "A subscription billed with collection_method=send_invoice: the first invoice is emailed at "
        "once and due 30 days later; when the due date passes unpaid, the subscription goes past_due.",
    )


def subscription_payment_disputed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("subscription_payment_disputed", params)
    _, first = _signup(story)
    intent = story.find(str(first.fields["payment_intent"]))
    amount = int(first.current["amount_due"])
    # The invoice's charge, as the API answers for it (no event of its own in this story).
    charge = _charge(story, str(intent.current["latest_charge"]), intent, amount, params.start)
    at = params.start + 10 * DAY
    dispute = _dispute_opened(story, charge, intent, amount, at)
    _dispute_closed(story, dispute, at + 30 * DAY, "lost")
    return story.scenario(
        "The card holder disputes the first subscription invoice's payment and the dispute is lost: it "
        "names only the charge and payment intent, which no one-time purchase knows.",
    )


def guest_purchase_disputed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("guest_purchase_disputed", params)
    _, intent, charge = _one_time_checkout(story, guest=True)
    at = params.start + 10 * DAY
    dispute = _dispute_opened(story, charge, intent, params.one_time_amount, at)
    _dispute_closed(story, dispute, at + 30 * DAY, "lost")
    scenario = story.scenario(
        "A guest Checkout purchase (no customer) is disputed and the dispute lost.",
    )
    return replace(scenario, customer_id=None)


def purchase_refund_failed(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("purchase_refund_failed", params)
    _, intent, charge = _one_time_checkout(story)
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


def entitlements_summary_then_paused(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("entitlements_summary_then_paused", params)
    _needs_a_customer(story, "entitlement summaries name")
    subscription, trial_end = _trial_signup(story, missing_payment_method="pause", with_payment_method=False)
    _summary_updated(story)
    _subscription_paused(story, subscription, trial_end)
    return story.scenario(
        "The account uses Stripe Entitlements; the trial ends without a payment method and the "
        "subscription pauses. Stripe does not remove a paused subscription's entitlements, so no new "
        "summary event comes.",
    )


def entitlements_summary_event_lost(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("entitlements_summary_event_lost", params)
    _needs_a_customer(story, "entitlement summaries name")
    subscription, _ = _signup(story)
    _summary_updated(story)
    _subscription_deleted(story, subscription, params.start + 10 * DAY, reason="cancellation_requested")
    return story.scenario(
        "The account uses Stripe Entitlements; the subscription is canceled and the summary event "
        "that would empty the customer's entitlements never arrives.",
    )


# --------------------------------------------------------------------------------------------
# Test clocks, Accounts v2, Connect
# --------------------------------------------------------------------------------------------


def renewal_on_test_clock(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    story = _Story("test_clock_renewal", params)
    story.test_clock = story.ids("clock")
    subscription, _ = _signup(story)
    # Five minutes later (real time) the clock is advanced past the period end (simulated time).
    story.real_time = params.start + 300
    _renewal_paid(story, subscription)
    return story.scenario(
        "A subscription on a test clock, advanced one month: the objects carry simulated times (a "
        "month ahead) while the events are created minutes apart in real time.",
    )


def accounts_v2_signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return _signup_paid(
        "accounts_v2_signup_paid",
        replace(params, customer_id=params.accounts_v2_customer),
        " An Accounts v2 customer: objects carry customer_account (acct_…) and customer null; "
        "there is no Customer object and no customer.created.",
    )


def connect_signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return _signup_paid(
        "connect_signup_paid",
        replace(params, account=params.connect_account),
        " On a connected account: every event carries `account`.",
    )


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
