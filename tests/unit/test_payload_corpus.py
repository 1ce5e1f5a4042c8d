"""Every real shape is accepted and applied: Stripe's OpenAPI fixture objects (events/stripe_fixtures.json, the current
shapes of every object) and Stripe's documented payloads of older API versions, under every event type
the README tells users to subscribe to. Each ends applied, stale, duplicate, ignored, guest or
unmatched (never failed); a truly malformed payload fails with an error that names what is missing.

Versions: subscription items (2016-07-06; before, a subscription had one `plan` and a `quantity`);
plans without `product`, identified by their `id` (and `name`) before 2018-02-05
(https://docs.stripe.com/changelog/2018-02-05/plans-link-individual-products-several-fields-moved);
`finalized_at` under `status_transitions` (2019-03-14); Checkout's PaymentIntent made only at
confirmation (2022-08-01); `PaymentIntent.charges` replaced by `latest_charge` (2022-11-15, see
tests/unit/test_purchase_term_paths.py);
`invoice.status` (2018-05-21; before, `paid` / `forgiven` / `closed`), `invoice.date` -> `created` and
`billing` -> `collection_method` (2019-03-14); charges stop embedding `refunds` (2022-11-15); periods
move to the items and `invoice.subscription` under `parent` (2025-03-31.basil,
https://docs.stripe.com/changelog/basil/2025-03-31/deprecate-subscription-current-period-start-and-end,
https://docs.stripe.com/changelog/basil/2025-03-31/adds-new-parent-field-to-invoicing-objects).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from domain.entitlements import EntitlementRules
from domain.records import ChargeRecord, InvoiceRecord, SubscriptionRecord
from domain.stripe_objects import MalformedEvent, record_of
from domain.sync import EventApplier, Outcome
from events.stripe import objects as s
from harness.memory_store import MemoryStore, ScriptedStripe

# Stripe's own OpenAPI fixtures (a copy in the repository, so every clone runs these checks).
FIXTURES = Path(__file__).resolve().parents[2] / "events" / "stripe_fixtures.json"
DONE = {Outcome.APPLIED, Outcome.STALE, Outcome.DUPLICATE, Outcome.IGNORED, Outcome.GUEST, Outcome.UNMATCHED}
CUSTOMER = "cus_QXg1o8vcGmoR32"

# Event types the README's dashboard setup subscribes to, with the fixture object each one carries.
SUBSCRIBED: dict[str, str] = {
    "customer.created": "customer",
    "customer.updated": "customer",
    "customer.deleted": "customer",
    "customer.discount.created": "discount",
    "customer.source.updated": "card",
    "customer.tax_id.created": "tax_id",
    **{
        f"customer.subscription.{name}": "subscription"
        for name in (
            "created",
            "updated",
            "deleted",
            "paused",
            "resumed",
            "trial_will_end",
            "pending_update_applied",
            "pending_update_expired",
        )
    },
    **{
        f"invoice.{name}": "invoice"
        for name in (
            "created",
            "finalized",
            "paid",
            "payment_succeeded",
            "payment_failed",
            "payment_action_required",
            "upcoming",
            "voided",
            "marked_uncollectible",
            "overdue",
            "sent",
            "updated",
        )
    },
    **{
        f"checkout.session.{name}": "checkout.session"
        for name in ("completed", "async_payment_succeeded", "async_payment_failed", "expired")
    },
    "payment_intent.succeeded": "payment_intent",
    "payment_intent.payment_failed": "payment_intent",
    "charge.refunded": "charge",
    "charge.refund.updated": "refund",
    **{
        f"charge.dispute.{name}": "dispute"
        for name in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
    },
    "entitlements.active_entitlement_summary.updated": "entitlements.active_entitlement_summary",
}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(json.loads(FIXTURES.read_text())["resources"])


def event(obj: dict[str, Any], event_type: str, *, event_id: str = "evt_1Corpus") -> dict[str, Any]:
    return s.event(
        s.IdFactory(0),
        event_type,
        obj,
        created=1_767_000_000,
        livemode=False,
        id=event_id,
        api_version="2025-09-30.clover",
    )


def apply(body: dict[str, Any], *, with_key: bool = False) -> Outcome:
    stripe = None
    if with_key:
        stripe = ScriptedStripe(
            objects={("charge", "ch_1PgafuB7WZ01zgkWXYmPNZs8"): {"id": "ch_1", "customer": None}},
            line_items={},
            entitlement_keys={CUSTOMER: ["lookup_key"], "customer": ["lookup_key"]},
        )
        stripe.line_items = _AnySession()  # type: ignore[assignment]
    applier = EventApplier(MemoryStore(), EntitlementRules(), clock=lambda: 1_767_000_100, stripe=stripe)
    return applier.apply(body).outcome


class _AnySession(dict[str, list[Any]]):
    def __missing__(self, key: str) -> list[Any]:
        return []


@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "key"])
@pytest.mark.parametrize("event_type", sorted(SUBSCRIBED))
def test_every_subscribed_event_type_with_stripes_fixture_object_is_done_never_failed(
    resources: dict[str, Any], event_type: str, with_key: bool
) -> None:
    obj = copy.deepcopy(resources[SUBSCRIBED[event_type]])
    if event_type == "invoice.upcoming":
        obj.pop("id", None)  # a preview has no id
    assert apply(event(obj, event_type), with_key=with_key) in DONE


@pytest.mark.parametrize(
    "request_field",
    [
        None,
        {"id": None, "idempotency_key": None},
        {"id": "req_1", "idempotency_key": "k"},
        "req_old",
        "missing",
    ],
)
@pytest.mark.parametrize("event_id", ["evt_1Corpus", "evt_test_65RNzF", "wh_evt_0001", "1234"])
def test_event_ids_and_request_fields_of_every_era_are_accepted(
    resources: dict[str, Any], event_id: str, request_field: Any
) -> None:
    body = event(copy.deepcopy(resources["subscription"]), "customer.subscription.updated", event_id=event_id)
    if request_field == "missing":
        del body["request"]
    else:
        body["request"] = request_field  # before 2017-05-25 `request` was the request id, a string
    assert apply(body) is Outcome.APPLIED


def test_the_deleted_customer_fixture_is_applied(resources: dict[str, Any]) -> None:
    assert apply(event(copy.deepcopy(resources["deleted_customer"]), "customer.deleted")) is Outcome.APPLIED


def test_every_fixture_resource_is_applied_or_ignored_under_a_generic_event(
    resources: dict[str, Any],
) -> None:
    for name, obj in resources.items():
        if not isinstance(obj, dict) or "object" not in obj:
            continue
        assert apply(event(copy.deepcopy(obj), f"{name}.updated")) in DONE, name


# -- documented shapes of older and newer API versions -------------------------------------------


def old_subscription() -> dict[str, Any]:
    """2015-2016: one plan and a quantity, no items; the period on the subscription."""
    return {
        "id": "sub_old",
        "object": "subscription",
        "customer": "cus_old",
        "status": "active",
        "plan": {"id": "gold", "object": "plan", "amount": 2000, "interval": "month", "product": "prod_gold"},
        "quantity": 3,
        "start": 1_450_000_000,
        "current_period_start": 1_450_000_000,
        "current_period_end": 1_452_678_400,
        "cancel_at_period_end": False,
        "billing": "charge_automatically",
    }


def test_a_subscription_from_before_items_grants_its_plans_product() -> None:
    record = record_of("subscription", old_subscription())
    assert isinstance(record, SubscriptionRecord)
    assert [(i.product_id, i.quantity) for i in record.items] == [("prod_gold", 3)]
    assert (record.current_period_start, record.created) == (1_450_000_000, 1_450_000_000)
    assert record.collection_method == "charge_automatically"
    assert apply(event(old_subscription(), "customer.subscription.updated")) is Outcome.APPLIED


def pre_product_subscription() -> dict[str, Any]:
    """2017 (API versions before 2018-02-05): items, each with a plan that has a `name` and no
    `product` (plans became linked to products in 2018-02-05; prices came later still)."""
    gold = {
        "id": "gold",
        "object": "plan",
        "amount": 2000,
        "currency": "usd",
        "interval": "month",
        "interval_count": 1,
        "name": "Gold Special",
        "statement_descriptor": None,
        "trial_period_days": None,
        "livemode": False,
        "metadata": {},
        "created": 1_480_000_000,
    }
    return {
        "id": "sub_2017",
        "object": "subscription",
        "customer": "cus_2017",
        "status": "active",
        "items": {
            "object": "list",
            "data": [{"id": "si_2017", "object": "subscription_item", "plan": gold, "quantity": 1}],
            "has_more": False,
        },
        "plan": gold,
        "quantity": 1,
        "start": 1_490_000_000,
        "current_period_start": 1_490_000_000,
        "current_period_end": 1_492_678_400,
        "cancel_at_period_end": False,
        "billing": "charge_automatically",
    }


def test_a_plan_from_before_products_grants_by_the_plan() -> None:
    record = record_of("subscription", pre_product_subscription())
    assert isinstance(record, SubscriptionRecord)
    assert [(i.price_id, i.product_id) for i in record.items] == [("gold", None)]
    store = MemoryStore()
    applier = EventApplier(store, EntitlementRules(), clock=lambda: 1_490_000_100)
    result = applier.apply(event(pre_product_subscription(), "customer.subscription.updated"))
    assert result.outcome is Outcome.APPLIED
    assert set(store.entitlements["cus_2017"].entitlements.features) == {"gold"}  # named after the plan
    mapped = EntitlementRules.from_mapping({"features_by_price": {"gold": ["pro", "api"]}})
    store = MemoryStore()
    result = EventApplier(store, mapped, clock=lambda: 1_490_000_100).apply(
        event(pre_product_subscription(), "customer.subscription.updated")
    )
    assert result.outcome is Outcome.APPLIED
    assert set(store.entitlements["cus_2017"].entitlements.features) == {"pro", "api"}


def test_a_subscription_from_before_items_and_products_grants_by_its_plan() -> None:
    obj = pre_product_subscription()
    del obj["items"]
    record = record_of("subscription", obj)
    assert isinstance(record, SubscriptionRecord)
    assert [(i.price_id, i.product_id, i.quantity) for i in record.items] == [("gold", None, 1)]
    assert apply(event(obj, "customer.subscription.updated")) is Outcome.APPLIED


def test_a_price_without_product_is_still_malformed() -> None:
    obj = pre_product_subscription()
    obj["items"]["data"][0]["price"] = {"id": "price_1", "object": "price"}
    with pytest.raises(MalformedEvent, match="price without product"):
        record_of("subscription", obj)


def test_an_invoices_finalization_before_and_since_status_transitions() -> None:
    """2019-03-14 moved `finalized_at` under `status_transitions` (the grace counts from it)."""
    base = {"id": "in_f", "object": "invoice", "customer": "cus_f", "status": "open", "created": 100}
    for obj in (base | {"finalized_at": 200}, base | {"status_transitions": {"finalized_at": 200}}):
        record = record_of("invoice", obj)
        assert isinstance(record, InvoiceRecord)
        assert record.finalized_at == 200


def test_a_payment_mode_session_without_a_payment_intent_yet() -> None:
    """2022-08-01: Checkout creates the PaymentIntent only when the customer confirms: an open or
    expired session names none (and grants nothing)."""
    obj = s.checkout_session(
        s.IdFactory(0),
        id="cs_open",
        mode="payment",
        status="expired",
        payment_status="unpaid",
        customer="cus_open",
        payment_intent=None,
        amount_total=2000,
        created=100,
    )
    assert apply(event(obj, "checkout.session.expired")) is Outcome.APPLIED


def test_periods_only_on_the_items_since_basil(resources: dict[str, Any]) -> None:
    obj = copy.deepcopy(resources["subscription"])
    for item in obj["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = 100, 200
    record = record_of("subscription", obj)
    assert isinstance(record, SubscriptionRecord)
    assert (record.current_period_start, record.current_period_end) == (100, 200)


@pytest.mark.parametrize(
    "shape",
    [
        {"subscription": "sub_9"},
        {"subscription": None, "parent": {"subscription_details": {"subscription": "sub_9"}}},
        {"subscription": None, "lines": {"data": [{"object": "line_item", "subscription": "sub_9"}]}},
        {
            "subscription": None,
            "parent": None,
            "lines": {
                "data": [
                    {"parent": {"subscription_item_details": {"subscription": "sub_9"}, "type": "x"}},
                ]
            },
        },
    ],
)
def test_an_invoice_names_its_subscription_in_any_of_its_shapes(shape: dict[str, Any]) -> None:
    obj = {"id": "in_9", "object": "invoice", "customer": "cus_9", "status": "open", **shape}
    record = record_of("invoice", obj)
    assert isinstance(record, InvoiceRecord)
    assert record.subscription_id == "sub_9"


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        ({"paid": True, "closed": True}, "paid"),
        ({"paid": False, "forgiven": True, "closed": True}, "uncollectible"),
        ({"paid": False, "closed": False, "attempted": True}, "open"),
        ({"paid": False, "closed": False, "attempted": False}, "draft"),
    ],
)
def test_an_invoice_from_before_status_says_it_with_flags(flags: dict[str, Any], status: str) -> None:
    obj = {
        "id": "in_old",
        "object": "invoice",
        "customer": "cus_old",
        "date": 1_450_000_000,
        "subscription": "sub_old",
        "billing": "send_invoice",
        "due_date": 1_452_000_000,
        **flags,
    }
    record = record_of("invoice", obj)
    assert isinstance(record, InvoiceRecord)
    assert (record.status, record.created, record.collection_method) == (
        status,
        1_450_000_000,
        "send_invoice",
    )


def test_charges_with_and_without_an_embedded_refunds_list(resources: dict[str, Any]) -> None:
    with_list = copy.deepcopy(resources["charge"])
    with_list["refunds"]["data"] = [copy.deepcopy(resources["refund"])]
    without = copy.deepcopy(resources["charge"])
    del without["refunds"]
    for obj in (with_list, without):
        record = record_of("charge", obj)
        assert isinstance(record, ChargeRecord)
        assert apply(event(obj | {"customer": CUSTOMER}, "charge.refunded")) is Outcome.APPLIED
    parsed = record_of("charge", with_list)
    assert isinstance(parsed, ChargeRecord)
    assert [r.id for r in parsed.refunds] == [resources["refund"]["id"]]


@pytest.mark.parametrize("dispute_id", ["dp_1Pgc71B7WZ01zgkW", "du_1Pgc71B7WZ01zgkW"])
def test_disputes_of_either_id_family_are_stored(resources: dict[str, Any], dispute_id: str) -> None:
    obj = copy.deepcopy(resources["dispute"]) | {"id": dispute_id}
    assert apply(event(obj, "charge.dispute.created")) is Outcome.UNMATCHED


def test_objects_without_an_id_are_read_by_what_they_name(resources: dict[str, Any]) -> None:
    summary = copy.deepcopy(resources["entitlements.active_entitlement_summary"])
    assert "id" not in summary
    assert apply(event(summary, "entitlements.active_entitlement_summary.updated")) is Outcome.APPLIED
    preview = copy.deepcopy(resources["invoice"])
    preview.pop("id")
    assert apply(event(preview, "invoice.upcoming")) is Outcome.IGNORED


@pytest.mark.parametrize(
    ("kind", "obj", "missing"),
    [
        ("subscription", {"id": "sub_1", "object": "subscription", "status": "active"}, "names no customer"),
        ("subscription", {"id": "sub_1", "object": "subscription", "customer": "cus_1"}, "no 'status'"),
        ("invoice", {"object": "invoice", "customer": "cus_1", "status": "open"}, "no 'id'"),
        ("dispute", {"id": "dp_1", "object": "dispute", "charge": "ch_1"}, "no 'status'"),
        ("refund", {"object": "refund", "charge": "ch_1"}, "no 'id'"),
    ],
)
def test_a_truly_malformed_payload_fails_naming_what_is_missing(
    kind: str, obj: dict[str, Any], missing: str
) -> None:
    with pytest.raises(MalformedEvent, match=missing):
        record_of(kind, obj)  # type: ignore[arg-type]
