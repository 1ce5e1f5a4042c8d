"""Stripe objects -> records, across API versions, on Stripe's own fixture shapes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from domain.records import (
    ChargeRecord,
    DisputeRecord,
    EntitlementSummaryRecord,
    InvoiceRecord,
    ProfileRecord,
    PurchaseRecord,
    Snapshot,
    SubscriptionRecord,
    record_from_dict,
    record_to_dict,
)
from domain.stripe_objects import (
    OBJECT_KINDS,
    Ignored,
    MalformedEvent,
    NeedsFetch,
    parse_event,
    rank_of,
    record_of,
    snapshot_of,
)
from events.stripe import objects as s
from tests.support.aws_event_shapes import queued_by_reference

# Stripe's own OpenAPI fixtures (a copy in the repository, so every clone runs these checks).
FIXTURES = Path(__file__).resolve().parents[2] / "events" / "stripe_fixtures.json"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(json.loads(FIXTURES.read_text())["resources"])


def event(obj: dict[str, Any], event_type: str = "x.updated") -> dict[str, Any]:
    return s.event(s.IdFactory(0), event_type, obj, created=100, livemode=False)


@pytest.mark.parametrize(
    ("resource", "record_type"),
    [
        ("subscription", SubscriptionRecord),
        ("invoice", InvoiceRecord),
        ("checkout.session", PurchaseRecord),
        ("charge", ChargeRecord),
        ("dispute", DisputeRecord),
        ("customer", ProfileRecord),
        ("entitlements.active_entitlement_summary", EntitlementSummaryRecord),
    ],
)
def test_every_fixture_shape_parses_and_round_trips(
    resources: dict[str, Any], resource: str, record_type: type
) -> None:
    obj = copy.deepcopy(resources[resource])
    if resource in ("charge", "checkout.session"):
        obj["customer"] = "cus_QXg1o8vcGmoR32"
    found = snapshot_of(parse_event(event(obj)))
    assert isinstance(found, Snapshot)
    assert isinstance(found.record, record_type)
    assert (
        record_from_dict(found.record.kind, json.loads(json.dumps(record_to_dict(found.record))))
        == found.record
    )


def test_current_subscription_takes_its_period_from_the_items(resources: dict[str, Any]) -> None:
    obj = copy.deepcopy(resources["subscription"])
    assert "current_period_end" not in obj  # the fixture is the 2025-03-31+ shape
    obj["items"]["data"][0]["current_period_start"] = 1_000
    obj["items"]["data"][0]["current_period_end"] = 2_000
    record = record_of("subscription", obj)
    assert isinstance(record, SubscriptionRecord)
    assert (record.current_period_start, record.current_period_end) == (1_000, 2_000)


def legacy_subscription() -> dict[str, Any]:
    plan = {"id": "plan_1", "object": "plan", "product": "prod_L", "usage_type": "metered"}
    return {
        "id": "sub_L",
        "object": "subscription",
        "customer": "cus_L",
        "status": "active",
        "current_period_start": 10,
        "current_period_end": 20,
        "items": {"object": "list", "data": [{"id": "si_L", "plan": plan, "quantity": None}]},
        "latest_invoice": {"id": "in_L", "object": "invoice"},
    }


def test_legacy_subscription_has_its_period_on_itself_and_plan_instead_of_price() -> None:
    record = record_of("subscription", legacy_subscription())
    assert isinstance(record, SubscriptionRecord)
    assert (record.current_period_start, record.current_period_end) == (10, 20)
    assert record.items[0].product_id == "prod_L"
    assert record.items[0].usage_type == "metered"
    assert record.latest_invoice_id == "in_L"


def test_invoice_names_its_subscription_in_either_shape() -> None:
    legacy = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "status": "open",
        "subscription": "sub_1",
    }
    current = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "status": "open",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}},
    }
    for obj in (legacy, current):
        record = record_of("invoice", obj)
        assert isinstance(record, InvoiceRecord)
        assert record.subscription_id == "sub_1"


def test_customer_account_stands_for_the_customer_in_accounts_v2() -> None:
    obj = {**legacy_subscription(), "customer": None, "customer_account": "acct_v2"}
    found = snapshot_of(parse_event(event(obj)))
    assert isinstance(found, Snapshot)
    assert found.customer_id == "acct_v2"


def test_dispatch_is_on_the_object_not_the_event_type() -> None:
    discount = {"id": "di_1", "object": "discount", "customer": "cus_1"}
    assert isinstance(snapshot_of(parse_event(event(discount, "customer.discount.created"))), Ignored)
    tax_id = {"id": "txi_1", "object": "tax_id", "customer": "cus_1"}
    assert isinstance(snapshot_of(parse_event(event(tax_id, "customer.tax_id.created"))), Ignored)


def test_invoice_upcoming_is_a_preview_and_changes_nothing() -> None:
    preview = s.invoice(
        s.IdFactory(0),
        customer="cus_1",
        subscription="sub_1",
        items=[s.ItemSpec(s.PriceSpec("price_1", "prod_1"))],
        status="draft",
        billing_reason="upcoming",
        upcoming=True,
        created=100,
        period_start=100,
        period_end=200,
    )
    assert "id" not in preview
    found = snapshot_of(parse_event(event(preview, "invoice.upcoming")))
    assert isinstance(found, Ignored)
    assert "preview" in found.reason


def test_customer_deleted_event_marks_the_profile_deleted() -> None:
    # The customer.deleted event carries the whole customer.
    obj = s.customer(s.IdFactory(0), id="cus_1", created=1, email="a@example.com", metadata={"user_id": "u1"})
    found = snapshot_of(parse_event(event(obj, "customer.deleted")))
    assert isinstance(found, Snapshot)
    assert isinstance(found.record, ProfileRecord)
    assert found.record.deleted
    assert found.record.user_id == "u1"


def test_user_id_metadata_key_is_configurable() -> None:
    obj = s.customer(s.IdFactory(0), id="cus_1", created=1, metadata={"app_user": "u9"})
    found = snapshot_of(parse_event(event(obj, "customer.updated")), user_id_key="app_user")
    assert isinstance(found, Snapshot)
    assert isinstance(found.record, ProfileRecord)
    assert found.record.user_id == "u9"


def test_thin_and_by_reference_events_need_a_fetch() -> None:
    thin = s.thin_event(
        s.IdFactory(0),
        "v1.customer.subscription.updated",
        created=1767323045,
        related_object=("subscription", "sub_1"),
        id="evt_thin",
    )
    assert thin["created"] == "2026-01-02T03:04:05.000Z"
    parsed = parse_event(thin)
    assert parsed.created == 1767323045
    assert snapshot_of(parsed) == NeedsFetch("evt_thin", ("subscription", "sub_1"))
    customer = s.customer(s.IdFactory(0), id="cus_1", created=1)
    by_reference = queued_by_reference(
        s.event(s.IdFactory(0), "customer.updated", customer, created=5, id="evt_big")
    )
    assert "data" not in by_reference
    assert snapshot_of(parse_event(by_reference)) == NeedsFetch("evt_big", None)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"object": "event"},
        {"object": "charge", "id": "ch_1", "type": "x", "created": 1},
        {"object": "event", "id": "evt_1", "type": "x"},
        {"object": "event", "id": "evt_1", "type": "x", "created": "yesterday"},
        {"object": "event", "id": "evt_1", "type": "x", "created": True},
        {"object": "event", "id": "evt_1", "type": "x", "created": 1, "data": {"object": "sub_1"}},
    ],
)
def test_malformed_events_are_rejected(body: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(body)


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "sub_1", "object": "subscription", "customer": "cus_1", "items": {"data": []}},  # no status
        {"id": "sub_1", "object": "subscription", "status": "active", "items": {"data": []}},  # no customer
        {"object": "invoice", "customer": "cus_1", "status": "open"},  # no id
        {
            "id": "sub_1",
            "object": "subscription",
            "customer": "cus_1",
            "status": "active",
            "items": {"data": [{"id": "si_1"}]},  # item without price
        },
    ],
)
def test_objects_missing_what_the_rules_need_are_malformed(obj: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        snapshot_of(parse_event(event(obj)))


def test_every_tracked_object_kind_has_a_parser() -> None:
    assert set(OBJECT_KINDS.values()) == {
        "subscription",
        "invoice",
        "purchase",
        "payment",
        "charge",
        "refund",
        "dispute",
        "profile",
        "entitlement_summary",
    }


def test_later_lifecycle_states_rank_higher_within_one_second() -> None:
    def sub(status: str) -> SubscriptionRecord:
        record = record_of("subscription", {**legacy_subscription(), "status": status})
        assert isinstance(record, SubscriptionRecord)
        return record

    assert rank_of(sub("incomplete")) < rank_of(sub("active")) < rank_of(sub("canceled"))
    open_invoice = record_of("invoice", {"id": "in_1", "customer": "c", "status": "open"})
    paid_invoice = record_of("invoice", {"id": "in_1", "customer": "c", "status": "paid"})
    assert rank_of(open_invoice) < rank_of(paid_invoice)
