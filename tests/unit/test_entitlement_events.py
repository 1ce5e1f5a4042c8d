"""domain.entitlement_events and entitlements_from_event: stream record in, "entitlements changed" out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain.entitlement_events import (
    CUSTOMER_DETAIL_TYPE,
    SOURCE,
    USER_DETAIL_TYPE,
    MalformedStreamRecord,
    change_entry,
)
from entitlements_reader import NotAnEntitlementsEvent, entitlements_from_event, parse_entitlements_item
from tests.support.aws_event_shapes import customer_item, eventbridge_event, image, stream_record

PRO = {"pro": {"source": "sub_1SkQ2hB7WZ01zgkW4yVd9aLm", "until": 1769940000}}
FOREVER = {"lifetime": {"source": "cs_test_a1B2c3"}}


def published(record: dict[str, Any]) -> dict[str, Any]:
    """The event a consumer receives for `record`: the entry in EventBridge's envelope."""
    entry = change_entry(record)
    assert entry is not None
    return eventbridge_event(SOURCE, entry.detail_type, json.loads(entry.detail_text()))


def test_a_feature_gained_publishes_before_and_after_with_the_cause_and_version() -> None:
    old = customer_item(version=1)
    new = customer_item(version=2, features=PRO, cause_event_id="evt_paid", account="acct_1Nv0FGQ9RKHgCVdK")

    entry = change_entry(stream_record(old, new))

    assert entry is not None
    assert entry.detail_type == CUSTOMER_DETAIL_TYPE
    assert entry.detail == {
        "customer_id": "cus_TgS1o8vcGmoR32",
        "user_id": "user-42",
        "livemode": False,
        "account": "acct_1Nv0FGQ9RKHgCVdK",
        "version": 2,
        "updated_at": 1767261600,
        "cause_event_id": "evt_paid",
        "before": {"features": {}, "payment_issue": False, "deleted": False},
        "after": {
            "features": {"pro": {"until": 1769940000, "source": "sub_1SkQ2hB7WZ01zgkW4yVd9aLm"}},
            "payment_issue": False,
            "deleted": False,
        },
    }


@pytest.mark.parametrize(
    "change",
    [
        {"features": {"pro": {**PRO["pro"], "until": 1772618400}}},  # renewed: a later end
        {"features": {"pro": {**PRO["pro"], "source": "sub_other"}}},  # another source
        {"features": {**PRO, **FOREVER}},  # one more feature
        {"features": {}},  # lost
        {"payment_issue": True},
        {"deleted": True},
        {"livemode": True},
    ],
)
def test_every_change_a_backend_reads_publishes(change: dict[str, Any]) -> None:
    old = customer_item(features=PRO)
    assert change_entry(stream_record(old, {**old, **change, "version": 2})) is not None


def test_nothing_is_published_when_only_what_no_backend_reads_changed() -> None:
    old = customer_item(features=PRO)
    new = {**old, "version": 2, "updated_at": 1767300000, "records_version": 9, "cause_event_id": "evt_x"}
    assert change_entry(stream_record(old, new)) is None


def test_an_item_that_appears_granting_nothing_publishes_nothing() -> None:
    # customer.created: the item is written with no feature; a backend reads no access either way.
    assert change_entry(stream_record(None, customer_item())) is None
    assert change_entry(stream_record(customer_item(), None)) is None
    assert change_entry(stream_record(None, customer_item(deleted=True))) is not None
    assert change_entry(stream_record(None, customer_item(payment_issue=True))) is not None


def test_a_feature_without_an_end_stays_without_one() -> None:
    entry = change_entry(stream_record(customer_item(), customer_item(features=FOREVER, version=2)))
    assert entry is not None
    assert entry.detail["after"]["features"] == {"lifetime": {"until": None, "source": "cs_test_a1B2c3"}}


def test_a_new_item_has_no_before_and_a_deleted_one_no_after() -> None:
    created = change_entry(stream_record(None, customer_item(features=PRO)))
    removed = change_entry(stream_record(customer_item(features=PRO), None))
    assert created is not None
    assert created.detail["before"] is None
    assert created.detail["after"]["features"] == {
        "pro": {"until": 1769940000, "source": PRO["pro"]["source"]}
    }
    assert removed is not None
    assert removed.detail["after"] is None


def test_a_user_item_publishes_a_user_change_with_its_customers() -> None:
    user = {
        "pk": "USER#live#user-42",
        "sk": "ENTITLEMENTS",
        "user_id": "user-42",
        "customer_ids": ["cus_A", "cus_B"],
        "livemode": True,
        "features": {},
        "payment_issue": False,
        "deleted": False,
        "updated_at": 1767261600,
        "version": 3,
    }
    entry = change_entry(stream_record(user, {**user, "features": PRO, "version": 4}))
    assert entry is not None
    assert entry.detail_type == USER_DETAIL_TYPE
    assert entry.detail["customer_ids"] == ["cus_A", "cus_B"]
    assert entry.detail["customer_id"] is None
    assert (entry.detail["user_id"], entry.detail["livemode"], entry.detail["version"]) == (
        "user-42",
        True,
        4,
    )


@pytest.mark.parametrize(
    "keys",
    [("CUSTOMER#cus_1", "STATE"), ("CUSTOMER#cus_1", "SUBSCRIPTION#sub_1"), ("RECONCILE", "ENTITLEMENTS")],
)
def test_other_items_publish_nothing(keys: tuple[str, str]) -> None:
    old = customer_item(pk=keys[0], sk=keys[1])
    assert change_entry(stream_record(old, {**old, "features": PRO})) is None


def test_a_stream_without_new_images_is_refused_with_a_reason() -> None:
    record = stream_record(customer_item(), customer_item(features=PRO))
    del record["dynamodb"]["NewImage"]
    with pytest.raises(MalformedStreamRecord, match="NEW_AND_OLD_IMAGES"):
        change_entry(record)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.pop("dynamodb"), "no dynamodb"),
        (lambda r: r["dynamodb"].pop("Keys"), "no Keys"),
        (lambda r: r["dynamodb"]["NewImage"].update(features={"B": "AAEC"}), "attribute type B"),
        (lambda r: r["dynamodb"]["NewImage"].update(features={"S": "pro"}), "not a map"),
        (lambda r: r["dynamodb"]["NewImage"]["features"]["M"]["pro"]["M"].pop("source"), "no source"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(mutate: Any, reason: str) -> None:
    record = stream_record(customer_item(), customer_item(features=PRO))
    mutate(record)
    with pytest.raises(MalformedStreamRecord, match=reason):
        change_entry(record)


# --- the reader library ---------------------------------------------------------------------------


def test_the_reader_turns_the_event_into_what_it_reads_from_the_table() -> None:
    new = customer_item(features={**PRO, **FOREVER}, payment_issue=True, version=7, updated_at=1767300000)

    event = published(stream_record(customer_item(features=PRO, version=6), new))

    assert entitlements_from_event(event) == parse_entitlements_item(image(new))


def test_the_reader_reads_a_deleted_item_as_no_entitlements() -> None:
    assert entitlements_from_event(published(stream_record(customer_item(features=PRO), None))) is None


def test_the_reader_keeps_time_bound_access_time_bound() -> None:
    access = entitlements_from_event(published(stream_record(customer_item(), customer_item(features=PRO))))
    assert access is not None
    assert access.has("pro", now=1769939999)
    assert not access.has("pro", now=1769940000)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (eventbridge_event("aws.partner/stripe.com/ed_1", CUSTOMER_DETAIL_TYPE, {}), "not an event of"),
        (eventbridge_event(SOURCE, USER_DETAIL_TYPE, {}), "detail-type"),
        ({**eventbridge_event(SOURCE, CUSTOMER_DETAIL_TYPE, {}), "detail": "x"}, "no detail"),
        (eventbridge_event(SOURCE, CUSTOMER_DETAIL_TYPE, {"after": {"features": {}}}), "not an entitlements"),
    ],
)
def test_the_reader_refuses_other_events_with_a_reason(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(NotAnEntitlementsEvent, match=reason):
        entitlements_from_event(event)
