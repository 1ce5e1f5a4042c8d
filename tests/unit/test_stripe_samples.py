"""The sample Stripe objects and scenarios must look like what Stripe sends, or every test built on
them proves nothing. Shapes are compared with Stripe's OpenAPI fixtures (events/stripe_fixtures.json, a copy
in the repository)."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe

from events import lambda_events
from events import scenarios as sc
from events.stripe import objects as samples

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "events" / "stripe_fixtures.json"  # Stripe's own OpenAPI fixtures, copied

PARAMS = [
    pytest.param(sc.ScenarioParams(api="current"), id="current"),
    pytest.param(sc.ScenarioParams(api="legacy"), id="legacy"),
    pytest.param(
        sc.ScenarioParams(api="current", customer_id="acct_1SampleCustomerAcct01"), id="accounts-v2"
    ),
    pytest.param(
        sc.ScenarioParams(api="legacy", livemode=True, account="acct_1SampleConnected0001"), id="connect"
    ),
]


@dataclass(frozen=True)
class Differs:
    """Where a variant legitimately differs from Stripe's fixture of the resource, and why.

    `missing`: fields the fixture lists that the variant does not render; `extra`: fields it renders
    that the fixture does not list. Nested fields are dotted (`recurring.aggregate_usage`).
    """

    missing: frozenset[str] = frozenset()
    extra: frozenset[str] = frozenset()


# By (resource, variant): the variant is the API shape ("current", "legacy"), a builder case's name,
# or both ("current uncollectible").
DIFFERS: dict[tuple[str, str], Differs] = {
    # 2025-03-31.basil removed invoice.subscription (now parent.subscription_details); the fixture
    # still carries a null stub of it.
    ("invoice", "current"): Differs(missing=frozenset({"subscription"})),
    # The fixture's line pricing leaves out what a price-based line carries.
    ("line_item", "current"): Differs(extra=frozenset({"pricing.price_details"})),
    # Before basil there was no `parent`, and taxes were `tax` / `total_tax_amounts`; the invoice
    # named its subscription (a field the fixture still stubs), payment intent and charge itself and
    # said whether it was `paid`.
    ("invoice", "legacy"): Differs(
        missing=frozenset({"parent", "total_pretax_credit_amounts", "total_taxes"}),
        extra=frozenset(
            {
                "application_fee_amount",
                "charge",
                "discount",
                "paid",
                "paid_out_of_band",
                "payment_intent",
                "quote",
                "subscription_details",
                "tax",
                "total_tax_amounts",
            }
        ),
    ),
    # Before basil a line named its price, plan and subscription item itself, with tax amounts.
    ("line_item", "legacy"): Differs(
        missing=frozenset({"parent", "pricing", "pretax_credit_amounts", "taxes"}),
        extra=frozenset(
            {
                "amount_excluding_tax",
                "invoice_item",
                "plan",
                "price",
                "proration",
                "proration_details",
                "subscription_item",
                "tax_amounts",
                "tax_rates",
                "type",
                "unit_amount_excluding_tax",
            }
        ),
    ),
    # Before basil the period lived on the subscription, not on its items, and one discount did.
    ("subscription_item", "legacy"): Differs(
        missing=frozenset({"current_period_start", "current_period_end"})
    ),
    ("subscription", "legacy"): Differs(
        extra=frozenset({"current_period_start", "current_period_end", "discount"})
    ),
    # Before billing meters, metered usage was aggregated on the price (and its plan view).
    ("price", "legacy"): Differs(extra=frozenset({"recurring.aggregate_usage"})),
    ("plan", "legacy"): Differs(extra=frozenset({"aggregate_usage"})),
    # Basil removed invoice from PaymentIntents.
    ("payment_intent", "legacy"): Differs(extra=frozenset({"invoice"})),
    # Accounts v2: a customer may be an Account; the fixture's customer predates the field.
    ("customer", "current"): Differs(extra=frozenset({"customer_account"})),
    # Radar's risk level, rendered on card charges; the fixture leaves it out.
    ("charge", "current"): Differs(extra=frozenset({"outcome.risk_level"})),
    # Builder cases whose object Stripe renders with fewer or more fields.
    ("subscription_item", "metered"): Differs(missing=frozenset({"quantity"})),  # no quantity
    ("invoice", "upcoming"): Differs(missing=frozenset({"id"})),  # a preview, not an invoice yet
    # Since 2026-09-30.endive, only on uncollectible invoices.
    ("invoice", "current uncollectible"): Differs(extra=frozenset({"status_details"})),
    # The fixture's next_action names only its type; a 3-D Secure step carries use_stripe_sdk.
    ("payment_intent", "requires_action"): Differs(extra=frozenset({"next_action.use_stripe_sdk"})),
    ("event", "updated"): Differs(extra=frozenset({"data.previous_attributes"})),
    ("event", "connect"): Differs(extra=frozenset({"account"})),  # only a connected account's events
}


def all_events(params: sc.ScenarioParams) -> Iterator[tuple[sc.Scenario, dict[str, Any]]]:
    for scenario in sc.all_scenarios(params):
        for event in scenario.events:
            yield scenario, event


def shape_of(event: dict[str, Any]) -> str:
    return "current" if event["api_version"] == samples.CURRENT_API_VERSION else "legacy"


def nested_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every Stripe object (a dict with `object`) inside `value`, including `value` itself."""
    if isinstance(value, dict):
        if isinstance(value.get("object"), str):
            yield value
        for child in value.values():
            yield from nested_objects(child)
    elif isinstance(value, list):
        for child in value:
            yield from nested_objects(child)


@pytest.fixture(scope="module")
def fixtures() -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def missing_keys(fixture: dict[str, Any], built: dict[str, Any], resource: str, shape: str) -> set[str]:
    return set(fixture) - set(built) - DIFFERS.get((resource, shape), Differs()).missing


@pytest.mark.parametrize("params", PARAMS)
def test_every_object_in_every_event_has_the_fixture_keys(
    fixtures: dict[str, dict[str, Any]], params: sc.ScenarioParams
) -> None:
    checked: set[str] = set()
    for scenario, event in all_events(params):
        shape = shape_of(event)
        assert not missing_keys(fixtures["event"], event, "event", shape), scenario.name
        for obj in nested_objects(event["data"]["object"]):
            resource = obj["object"]
            if resource == "list" or resource not in fixtures:
                continue
            missing = missing_keys(fixtures[resource], obj, resource, shape)
            if resource == "subscription_item" and obj["price"]["recurring"]["usage_type"] == "metered":
                missing -= DIFFERS[("subscription_item", "metered")].missing
            if event["type"] == "invoice.upcoming" and resource == "invoice":
                missing -= DIFFERS[("invoice", "upcoming")].missing
            assert not missing, f"{scenario.name}: {resource} lacks {sorted(missing)}"
            checked.add(resource)
    expected = {
        "subscription",
        "subscription_item",
        "price",
        "plan",
        "invoice",
        "line_item",
        "checkout.session",
        "payment_intent",
    }
    if not params.customer_id.startswith("acct_"):
        expected |= {
            "customer",
            "charge",
            "dispute",
            "refund",
            "entitlements.active_entitlement_summary",
            "entitlements.active_entitlement",
            "entitlements.feature",
        }
    assert expected <= checked, f"never checked: {sorted(expected - checked)}"


def test_api_answers_have_the_fixture_keys(fixtures: dict[str, dict[str, Any]]) -> None:
    deleted = sc.build("customer_deleted")
    assert not missing_keys(
        fixtures["deleted_customer"],
        deleted.api_objects[deleted.customer_id or ""],
        "deleted_customer",
        "current",
    )
    for name in ("signup_paid", "one_time_purchase"):
        scenario = sc.build(name)
        (items,) = scenario.api_lists.values()
        for item in items["data"]:
            assert not missing_keys(fixtures["item"], item, "item", "current")
            assert not missing_keys(fixtures["price"], item["price"], "price", "current")


@pytest.mark.parametrize("params", PARAMS)
def test_created_strictly_increases_except_in_the_signup_burst(params: sc.ScenarioParams) -> None:
    for scenario in sc.all_scenarios(params):
        created = [event["created"] for event in scenario.events]
        assert created, scenario.name
        if scenario.name == "signup_burst":
            assert len(set(created)) == 1
        else:
            assert all(later > earlier for earlier, later in itertools.pairwise(created)), scenario.name


def test_the_signup_burst_is_the_signup_in_one_second() -> None:
    burst, paid = sc.build("signup_burst"), sc.build("signup_paid")
    assert [e["type"] for e in burst.events] == [e["type"] for e in paid.events]
    statuses = {
        e["data"]["object"]["status"] for e in burst.events if e["data"]["object"]["object"] == "subscription"
    }
    assert statuses == {"incomplete", "active"}  # a tie that only a fetch or a ranking can settle


@pytest.mark.parametrize("params", PARAMS)
def test_event_ids_are_unique_and_object_ids_keep_their_type(params: sc.ScenarioParams) -> None:
    every_event_id: list[str] = []
    for scenario in sc.all_scenarios(params):
        event_ids = [event["id"] for event in scenario.events]
        assert len(set(event_ids)) == len(event_ids), scenario.name
        assert all(event_id.startswith("evt_") for event_id in event_ids)
        every_event_id += event_ids
        kinds: dict[str, str] = {}
        for event in scenario.events:
            for obj in nested_objects(event["data"]["object"]):
                if "id" in obj:
                    kind = "price" if obj["object"] == "plan" else obj["object"]  # a plan is its price
                    assert kinds.setdefault(obj["id"], kind) == kind, obj["id"]
    # Variants of one scenario (Accounts v2, Connect) are different events.
    assert len(set(every_event_id)) == len(every_event_id)


def test_scenarios_are_deterministic_and_differ_per_customer() -> None:
    first, again = sc.all_scenarios(), sc.all_scenarios()
    assert [s.events for s in first] == [s.events for s in again]
    other = sc.all_scenarios(sc.ScenarioParams(customer_id="cus_OtherCustomer01"))
    # (The Accounts v2 variant uses its own customer, the same for both.)
    ids = {e["id"] for s in first if s.customer_id == sc.DEFAULT_PARAMS.customer_id for e in s.events}
    assert ids.isdisjoint({e["id"] for s in other for e in s.events})
    assert len(ids) > 100


@pytest.mark.parametrize("params", PARAMS)
def test_every_event_names_the_scenario_customer(params: sc.ScenarioParams) -> None:
    for scenario in sc.all_scenarios(params):
        named: set[str] = set()
        for event in scenario.events:
            obj = event["data"]["object"]
            if obj["object"] == "customer":
                named.add(obj["id"])
            named |= {obj[key] for key in ("customer", "customer_account") if obj.get(key) is not None}
        if scenario.name in ("guest_checkout", "guest_purchase_disputed"):
            assert scenario.customer_id is None
            assert not named
        else:
            assert named == {scenario.customer_id}, scenario.name


def test_accounts_v2_objects_name_the_account_and_no_customer() -> None:
    scenario = sc.build("accounts_v2_signup_paid")
    assert scenario.customer_id == sc.DEFAULT_PARAMS.accounts_v2_customer
    assert "customer.created" not in [e["type"] for e in scenario.events]
    for event in scenario.events:
        obj = event["data"]["object"]
        assert obj["customer"] is None
        assert obj["customer_account"] == scenario.customer_id


def test_connect_events_carry_the_account_and_others_do_not() -> None:
    connect = sc.build("connect_signup_paid")
    assert {e.get("account") for e in connect.events} == {sc.DEFAULT_PARAMS.connect_account}
    assert all("account" not in e for e in sc.build("signup_paid").events)


def test_legacy_and_current_shapes_differ_where_stripe_moved_fields() -> None:
    for name in ("renewal", "multi_item_with_metered"):
        current = sc.build(name, sc.ScenarioParams(api="current"))
        legacy = sc.build(name, sc.ScenarioParams(api="legacy"))
        assert {e["api_version"] for e in current.events} == {samples.CURRENT_API_VERSION}
        assert {e["api_version"] for e in legacy.events} == {samples.LEGACY_API_VERSION}
        assert samples.LEGACY_API_VERSION < samples.BASIL_API_VERSION <= samples.CURRENT_API_VERSION
        legacy_subscription = next(
            e["data"]["object"]["id"] for e in legacy.events if e["type"] == "customer.subscription.created"
        )
        for new, old in zip(current.events, legacy.events, strict=True):
            assert new["type"] == old["type"]
            obj_new, obj_old = new["data"]["object"], old["data"]["object"]
            if obj_new["object"] == "subscription":
                assert "current_period_end" not in obj_new
                assert obj_old["current_period_end"] > obj_old["current_period_start"]
                for item_new, item_old in zip(
                    obj_new["items"]["data"], obj_old["items"]["data"], strict=True
                ):
                    assert item_new["current_period_end"] == obj_old["current_period_end"]
                    assert "current_period_end" not in item_old
                    assert item_new["plan"]["id"] == item_new["price"]["id"]
            if obj_new["object"] == "invoice":
                subscription_id = obj_new["parent"]["subscription_details"]["subscription"]
                assert subscription_id.startswith("sub_")
                assert "subscription" not in obj_new
                assert "parent" not in obj_old
                assert obj_old["subscription"] == legacy_subscription
                assert samples.invoice_subscription_id(obj_old) == legacy_subscription
                assert samples.invoice_subscription_id(obj_new) == subscription_id
                line_new, line_old = obj_new["lines"]["data"][0], obj_old["lines"]["data"][0]
                assert line_new["pricing"]["price_details"]["product"] == line_old["price"]["product"]
                assert "price" not in line_new
                assert "paid" in obj_old
                assert "paid" not in obj_new


def test_metered_prices_differ_between_shapes_and_have_no_quantity() -> None:
    current = sc.build("multi_item_with_metered", sc.ScenarioParams(api="current"))
    legacy = sc.build("multi_item_with_metered", sc.ScenarioParams(api="legacy"))

    def metered_item(scenario: sc.Scenario) -> dict[str, Any]:
        created = next(e for e in scenario.events if e["type"] == "customer.subscription.created")
        items = created["data"]["object"]["items"]["data"]
        return next(i for i in items if i["price"]["recurring"]["usage_type"] == "metered")

    new, old = metered_item(current), metered_item(legacy)
    assert "quantity" not in new
    assert "quantity" not in old
    assert new["price"]["recurring"]["meter"].startswith("mtr_")
    assert "aggregate_usage" not in new["price"]["recurring"]
    assert old["price"]["recurring"]["aggregate_usage"] == "sum"


def test_fetched_objects_have_the_sdk_shape_whatever_the_webhook_shape() -> None:
    legacy = sc.build("renewal", sc.ScenarioParams(api="legacy"))
    subscription = next(o for o in legacy.api_objects.values() if o["object"] == "subscription")
    assert "current_period_end" not in subscription
    last = [e for e in legacy.events if e["type"] == "customer.subscription.updated"][-1]["data"]["object"]
    assert subscription["items"]["data"][0]["current_period_end"] == last["current_period_end"]


@pytest.mark.parametrize("params", PARAMS)
def test_events_render_to_json_bytes_stripe_would_post(params: sc.ScenarioParams) -> None:
    for scenario in sc.all_scenarios(params):
        for event, body in zip(scenario.events, scenario.bodies(), strict=True):
            assert json.loads(body.decode("utf-8")) == event
            assert body.startswith(b'{\n  "id": "evt_')


def test_a_signed_body_passes_the_stripe_sdk_verification() -> None:
    secret = "whsec_" + "a" * 32
    event = sc.build("signup_paid").events[-1]
    body = sc.render(event)
    header = lambda_events.signature_header(body, secret)
    parsed = stripe.Webhook.construct_event(body.decode(), header, secret)
    assert parsed.type == "checkout.session.completed"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode() + " ", header, secret)


def test_updated_events_carry_the_previous_values_of_what_changed() -> None:
    seen = 0
    for scenario, event in all_events(sc.DEFAULT_PARAMS):
        previous = event["data"].get("previous_attributes")
        # The entitlement summary is a fresh snapshot of the list: no previous_attributes invented.
        if not event["type"].endswith(".updated") or event["type"].startswith("entitlements."):
            assert previous is None, f"{scenario.name}: {event['type']}"
            continue
        assert previous, f"{scenario.name}: {event['type']} without previous_attributes"
        obj = event["data"]["object"]
        for key, old in previous.items():
            assert obj.get(key) != old, f"{scenario.name}: {key} did not change"
        seen += 1
    assert seen > 20


def test_signup_paid_ends_with_the_checkout_session_that_links_the_user() -> None:
    scenario = sc.build("signup_paid")
    session = scenario.events[-1]["data"]["object"]
    assert scenario.events[-1]["type"] == "checkout.session.completed"
    assert session["mode"] == "subscription"
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    assert session["client_reference_id"] == sc.DEFAULT_PARAMS.user_id
    assert "line_items" not in session
    created = next(e for e in scenario.events if e["type"] == "customer.subscription.created")
    assert created["data"]["object"]["status"] == "incomplete"
    assert session["subscription"] == created["data"]["object"]["id"]
    assert f"/v1/checkout/sessions/{session['id']}/line_items" in scenario.api_lists


def test_trial_will_end_comes_three_days_before_the_trial_ends() -> None:
    scenario = sc.build("trial_converts")
    warning = next(e for e in scenario.events if e["type"] == "customer.subscription.trial_will_end")
    trial = warning["data"]["object"]
    assert trial["status"] == "trialing"
    assert warning["created"] == trial["trial_end"] - 3 * sc.DAY
    final = [e for e in scenario.events if e["type"] == "customer.subscription.updated"][-1]
    assert final["data"]["object"]["status"] == "active"
    assert final["data"]["previous_attributes"]["status"] == "trialing"


@pytest.mark.parametrize(
    ("name", "behaviour", "final_type", "final_status"),
    [
        ("trial_ends_without_payment_method", "cancel", "customer.subscription.deleted", "canceled"),
        ("trial_ends_without_payment_method_paused", "pause", "customer.subscription.paused", "paused"),
        (
            "trial_ends_without_payment_method_invoice",
            "create_invoice",
            "customer.subscription.updated",
            "past_due",
        ),
    ],
)
def test_a_trial_without_payment_method_ends_as_configured(
    name: str, behaviour: str, final_type: str, final_status: str
) -> None:
    last = sc.build(name).events[-1]
    subscription = last["data"]["object"]
    assert last["type"] == final_type
    assert subscription["status"] == final_status
    assert subscription["trial_settings"]["end_behavior"]["missing_payment_method"] == behaviour
    assert subscription["default_payment_method"] is None


def test_an_upcoming_invoice_has_no_id() -> None:
    upcoming = next(e for e in sc.build("renewal").events if e["type"] == "invoice.upcoming")
    assert "id" not in upcoming["data"]["object"]
    assert upcoming["request"] == {"id": None, "idempotency_key": None}


def test_plan_change_leaves_an_earlier_invoice_open_while_the_subscription_is_active() -> None:
    scenario = sc.build("plan_change_with_unpaid_invoice")
    objects = scenario.api_objects.values()
    subscription = next(o for o in objects if o["object"] == "subscription")
    assert subscription["status"] == "active"
    assert subscription["items"]["data"][0]["price"]["id"] == sc.DEFAULT_PARAMS.upgrade_price_id
    open_invoices = [o for o in objects if o["object"] == "invoice" and o["status"] == "open"]
    assert len(open_invoices) == 1
    assert open_invoices[0]["amount_remaining"] > 0
    assert open_invoices[0]["next_payment_attempt"] is None
    assert open_invoices[0]["id"] != subscription["latest_invoice"]


def test_delayed_checkout_is_unpaid_until_the_async_payment_succeeds() -> None:
    events = sc.build("one_time_purchase_delayed").events
    completed = next(e for e in events if e["type"] == "checkout.session.completed")["data"]["object"]
    assert (completed["mode"], completed["payment_status"]) == ("payment", "unpaid")
    assert events[-1]["type"] == "checkout.session.async_payment_succeeded"
    assert events[-1]["data"]["object"]["payment_status"] == "paid"
    failed = sc.build("one_time_purchase_delayed_failed").events[-1]
    assert failed["type"] == "checkout.session.async_payment_failed"
    assert failed["data"]["object"]["payment_status"] == "unpaid"


def test_refunds_and_disputes() -> None:
    refunded = sc.build("purchase_refunded").events[-1]["data"]["object"]
    assert refunded["refunded"] is True
    assert refunded["amount_refunded"] == refunded["amount"]
    assert refunded["customer"] == sc.DEFAULT_PARAMS.customer_id
    lost = sc.build("purchase_dispute_lost").events
    assert [e["type"] for e in lost[-3:]] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
    ]
    dispute = lost[-1]["data"]["object"]
    assert dispute["status"] == "lost"
    assert "customer" not in dispute
    assert dispute["charge"].startswith("ch_")
    assert sc.build("purchase_dispute_won").events[-2]["data"]["object"]["status"] == "won"


def test_guest_checkout_names_no_customer() -> None:
    scenario = sc.build("guest_checkout")
    session = scenario.events[-1]["data"]["object"]
    assert session["customer"] is None
    assert session["customer_details"]["email"]


def test_customer_deleted_sends_the_full_customer_and_fetching_says_deleted() -> None:
    scenario = sc.build("customer_deleted")
    last = scenario.events[-1]
    assert last["type"] == "customer.deleted"
    assert last["data"]["object"]["email"]
    assert scenario.api_objects[scenario.customer_id or ""] == samples.deleted_customer(
        scenario.customer_id or ""
    )


def test_entitlement_summaries() -> None:
    full = sc.build("entitlements_summary_updated").events[-1]["data"]["object"]
    entitlements = full["entitlements"]
    assert entitlements["has_more"] is False
    assert [e["lookup_key"] for e in entitlements["data"]] == [
        f.lookup_key for f in sc.DEFAULT_PARAMS.features
    ]
    assert all(e["feature"]["lookup_key"] == e["lookup_key"] for e in entitlements["data"])
    truncated = sc.build("entitlements_summary_has_more")
    assert truncated.events[-1]["data"]["object"]["entitlements"]["has_more"] is True
    (rest,) = truncated.api_lists.values()
    assert len(rest["data"]) == len(sc.DEFAULT_PARAMS.features)


@pytest.mark.parametrize(
    ("name", "event_type", "status"),
    [
        ("invoice_voided", "invoice.voided", "void"),
        ("invoice_marked_uncollectible", "invoice.marked_uncollectible", "uncollectible"),
    ],
)
def test_voiding_or_writing_off_the_invoice_makes_the_subscription_active(
    name: str, event_type: str, status: str
) -> None:
    events = sc.build(name).events
    assert events[-2]["type"] == event_type
    assert events[-2]["data"]["object"]["status"] == status
    assert events[-1]["data"]["object"]["status"] == "active"
    assert events[-1]["data"]["previous_attributes"] == {"status": "past_due"}


def test_test_clock_objects_run_ahead_of_the_events() -> None:
    scenario = sc.build("test_clock_renewal")
    last = scenario.events[-1]
    assert last["data"]["object"]["test_clock"].startswith("clock_")
    assert last["data"]["object"]["created"] > last["created"] + 20 * sc.DAY


def test_ends_at_moves_the_whole_scenario() -> None:
    ends_at = 1_800_000_000
    for scenario in sc.all_scenarios(ends_at=ends_at):
        assert scenario.events[-1]["created"] == ends_at, scenario.name


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        sc.build("nope")
    with pytest.raises(ValueError, match="Accounts v2"):
        sc.build("customer_deleted", sc.ScenarioParams(customer_id="acct_1SampleCustomerAcct01"))
    ids = samples.IdFactory("bad")
    item = samples.ItemSpec(sc.DEFAULT_PARAMS.pro_price)
    common: dict[str, Any] = {"status": "active", "created": 1, "period_start": 1, "period_end": 2}
    with pytest.raises(ValueError, match="at least one item"):
        samples.subscription(ids, customer="cus_x", items=[], **common)
    with pytest.raises(ValueError, match="customer"):
        samples.subscription(ids, customer=None, items=[item], **common)
    with pytest.raises(ValueError, match="always a draft"):
        samples.invoice(
            ids,
            customer="cus_x",
            subscription=None,
            items=[item],
            status="open",
            billing_reason="upcoming",
            created=1,
            period_start=1,
            period_end=2,
            upcoming=True,
        )


def test_ids_look_like_stripe_ids() -> None:
    ids = samples.IdFactory("look")
    assert len(ids("evt")) == len("evt_1Pgc76B7WZ01zgkWwyRHS12y")
    assert len(ids("cus")) == len("cus_QXg1o8vcGmoR32")
    assert samples.IdFactory("look")("evt") == samples.IdFactory("look")("evt")
    assert ids("sub") != ids("sub")


# -------------------------------------------------------------- every builder against the fixtures

type Cases = dict[str, samples.JsonObject]
_P = sc.DEFAULT_PARAMS
_ITEM = samples.ItemSpec(_P.pro_price)
_METERED = samples.ItemSpec(_P.metered_price, quantity=None)
_CUSTOMER = _P.customer_id


def _subscription_cases(api: samples.ApiShape) -> Cases:
    ids = samples.IdFactory("shapes")
    common: dict[str, Any] = {
        "customer": _CUSTOMER,
        "created": 1,
        "period_start": 1,
        "period_end": 2,
        "api": api,
    }
    return {
        "": samples.subscription(ids, items=[_ITEM], status="active", **common),
        "metered": samples.subscription(ids, items=[_ITEM, _METERED], status="trialing", **common),
    }


def _invoice_cases(api: samples.ApiShape) -> Cases:
    ids = samples.IdFactory("shapes")
    common: dict[str, Any] = {
        "customer": _CUSTOMER,
        "subscription": "sub_1",
        "items": [_ITEM],
        "created": 1,
        "period_start": 1,
        "period_end": 2,
        "api": api,
    }
    return {
        "": samples.invoice(ids, status="paid", billing_reason="subscription_create", **common),
        "upcoming": samples.invoice(ids, status="draft", billing_reason="upcoming", upcoming=True, **common),
        "uncollectible": samples.invoice(ids, status="uncollectible", billing_reason="manual", **common),
    }


def _event_cases(api: samples.ApiShape) -> Cases:
    ids = samples.IdFactory("shapes")
    before = samples.customer(ids, id=_CUSTOMER, created=1)
    after = samples.customer(ids, id=_CUSTOMER, created=1, email="jenny@example.com")
    return {
        "": samples.event(ids, "customer.created", before, created=2),
        "updated": samples.event(
            ids,
            "customer.updated",
            after,
            created=3,
            previous_attributes=samples.previous_attributes(before, after),
        ),
        "connect": samples.event(ids, "customer.created", before, created=2, account=_P.connect_account),
    }


# How each public builder of events.stripe.objects is run: its cases, by name, for an API shape.
BUILDER_CASES: dict[str, Callable[[samples.ApiShape], Cases]] = {
    "price": lambda api: {
        "": samples.price(_P.pro_price, api=api),
        "metered": samples.price(_P.metered_price, api=api),
        "one_time": samples.price(_P.one_time_price, api=api),
    },
    "plan": lambda api: {
        "": samples.plan(_P.pro_price, api=api),
        "metered": samples.plan(_P.metered_price, api=api),
    },
    "subscription_item": lambda api: {
        name: samples.subscription_item(
            item, subscription_id="sub_1", created=1, period_start=1, period_end=2, api=api
        )
        for name, item in (("", _ITEM), ("metered", _METERED))
    },
    "customer": lambda api: {"": samples.customer(samples.IdFactory("shapes"), created=1)},
    "deleted_customer": lambda api: {"": samples.deleted_customer(_CUSTOMER)},
    "subscription": _subscription_cases,
    "invoice": _invoice_cases,
    "checkout_session": lambda api: {
        f"{mode}_{status}": samples.checkout_session(
            samples.IdFactory("shapes"),
            mode=mode,
            status=status,
            payment_status="paid" if status == "complete" else "unpaid",
            customer=_CUSTOMER,
            amount_total=2000,
            created=1,
        )
        for mode in ("payment", "subscription")
        for status in ("open", "complete")
    },
    "checkout_line_items": lambda api: {
        "": samples.checkout_line_items(
            session_id="cs_test_1", prices=[(_P.pro_price, 1), (_P.one_time_price, 2)]
        )
    },
    "payment_intent": lambda api: {
        status: samples.payment_intent(
            samples.IdFactory("shapes"), amount=2000, customer=_CUSTOMER, status=status, created=1, api=api
        )
        for status in ("succeeded", "requires_action", "requires_payment_method")
    },
    "refund": lambda api: {
        "": samples.refund(
            samples.IdFactory("shapes"),
            charge="ch_1",
            payment_intent="pi_1",
            customer=_CUSTOMER,
            amount=1,
            created=1,
        )
    },
    "charge": lambda api: {
        status: samples.charge(
            samples.IdFactory("shapes"),
            amount=2000,
            customer=_CUSTOMER,
            payment_intent="pi_1",
            created=1,
            status=status,
        )
        for status in ("succeeded", "failed")
    },
    "dispute": lambda api: {
        "": samples.dispute(
            samples.IdFactory("shapes"),
            charge="ch_1",
            payment_intent="pi_1",
            amount=1,
            status="lost",
            created=1,
        )
    },
    "active_entitlement_summary": lambda api: {
        "": samples.active_entitlement_summary(customer=_CUSTOMER, features=_P.features)
    },
    "event": _event_cases,
    "subscription_event": lambda api: {
        "": samples.subscription_event(
            samples.IdFactory("shapes"),
            customer=_CUSTOMER,
            price=_P.pro_price,
            status="active",
            started=1,
            period_start=1,
            period_end=2,
            at=3,
        )
    },
}
# Builders of v2 objects, which Stripe's v1 fixtures do not describe: each is checked by a test of
# its own against the fields the Stripe SDKs declare.
V2_BUILDERS = {"thin_event": "test_a_thin_event_has_the_fields_stripe_declares"}
# The module's other public functions: what each does instead of building a Stripe object.
NOT_BUILDERS = {
    "api_version_for": "the api_version string of a shape",
    "derived_id": "an id",
    "subscription_item_id": "an id",
    "invoice_subscription_id": "reads an invoice",
    "previous_attributes": "the old values of what an update changed, inside an event",
}


def public_functions() -> dict[str, inspect.Signature]:
    """Every public function events.stripe.objects defines: a new one is a builder or says why not."""
    return {
        name: inspect.signature(function)
        for name, function in inspect.getmembers(samples, inspect.isfunction)
        if function.__module__ == samples.__name__ and not name.startswith("_")
    }


def shapes_of(signature: inspect.Signature) -> tuple[samples.ApiShape, ...]:
    """A builder with an `api` parameter renders each API shape, the older ones as named variants."""
    return ("current", "legacy") if "api" in signature.parameters else ("current",)


def shape_differences(fixture: Any, built: Any, path: str = "") -> set[str]:
    """The dotted fields one side has and the other lacks, `-` missing and `+` extra, down nested
    hashes (a nested Stripe object is compared with its own fixture)."""
    if not (isinstance(fixture, dict) and isinstance(built, dict)):
        return set()
    found = {f"-{path}{key}" for key in set(fixture) - set(built)}
    found |= {f"+{path}{key}" for key in set(built) - set(fixture)}
    for key in set(fixture) & set(built):
        value = built[key]
        if not (isinstance(value, dict) and isinstance(value.get("object"), str)):
            found |= shape_differences(fixture[key], value, f"{path}{key}.")
    return found


def allowed(resource: str, variants: tuple[str, ...]) -> set[str]:
    stated = [DIFFERS.get((resource, variant), Differs()) for variant in variants]
    return {f"-{f}" for d in stated for f in d.missing} | {f"+{f}" for d in stated for f in d.extra}


def test_every_public_builder_is_run_against_the_fixtures() -> None:
    assert set(public_functions()) == set(BUILDER_CASES) | set(V2_BUILDERS) | set(NOT_BUILDERS)
    assert not set(BUILDER_CASES) & set(NOT_BUILDERS)
    assert not set(V2_BUILDERS) & (set(BUILDER_CASES) | set(NOT_BUILDERS))


def test_a_thin_event_has_the_fields_stripe_declares() -> None:
    """The fields of the SDKs' thin event (`V2.EventBase` and `related_object`, null or id, type and
    url); `context` only on a connected account's events."""
    ids = samples.IdFactory("shapes")
    declared = {"id", "object", "type", "livemode", "created", "related_object"}
    about = samples.thin_event(
        ids,
        "v1.customer.subscription.updated",
        created=1_767_225_600,
        related_object=("subscription", "sub_1"),
    )
    assert set(about) == declared
    assert (about["object"], about["livemode"]) == ("v2.core.event", False)
    assert about["id"].startswith("evt_test_")
    assert about["created"] == "2026-01-01T00:00:00.000Z"  # RFC 3339 with milliseconds
    assert about["related_object"] == {
        "id": "sub_1",
        "type": "subscription",
        "url": "/v1/subscriptions/sub_1",
    }
    unnamed = samples.thin_event(ids, "v1.invoice.paid", created=1, related_object=None)
    assert set(unnamed) == declared
    assert unnamed["related_object"] is None
    connect = samples.thin_event(
        ids,
        "v1.checkout.session.completed",
        created=1,
        related_object=("checkout.session", "cs_test_1"),
        context=_P.connect_account,
    )
    assert set(connect) == declared | {"context"}
    assert connect["context"] == _P.connect_account
    assert connect["related_object"]["url"] == "/v1/checkout/sessions/cs_test_1"


def fixture_name(obj: dict[str, Any]) -> str:
    """The fixture a rendered object is compared with: a deleted object has its own."""
    return f"deleted_{obj['object']}" if obj.get("deleted") is True else str(obj["object"])


@pytest.mark.parametrize(
    ("builder", "shape"),
    [
        (name, shape)
        for name, signature in public_functions().items()
        if name not in NOT_BUILDERS and name not in V2_BUILDERS
        for shape in shapes_of(signature)
    ],
)
def test_each_builder_renders_the_fixture_shape_but_for_the_stated_differences(
    fixtures: dict[str, dict[str, Any]], builder: str, shape: samples.ApiShape
) -> None:
    found: set[str] = set()
    stated: set[str] = set()
    for case, built in BUILDER_CASES[builder](shape).items():
        resources = [obj for obj in nested_objects(built) if obj["object"] != "list"]
        assert resources, f"{builder} {case}: no Stripe object"
        for obj in resources:
            resource = fixture_name(obj)
            assert resource in fixtures, f"{builder} {case}: no fixture for {resource}"
            differences = {f"{resource} {d}" for d in shape_differences(fixtures[resource], obj)}
            allowed_here = {f"{resource} {d}" for d in allowed(resource, (shape, case, f"{shape} {case}"))}
            assert differences <= allowed_here, (
                f"{builder} {case} ({shape}): {sorted(differences - allowed_here)}"
            )
            found |= differences
            stated |= allowed_here
    # A stated difference no case renders is stale: the table must say what is true.
    assert stated <= found, f"{builder} ({shape}) no longer differs in {sorted(stated - found)}"
