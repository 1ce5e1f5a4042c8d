"""The user entitlements item through the real DynamoDB store on moto: two customers of one user in
either order, the published shape the reader reads, and a writer of the user's other customer landing
between a read and its conditional write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from adapters import sync_table, table_items
from domain.entitlements import EntitlementRules
from domain.sync import EventApplier
from entitlements_reader import EntitlementsReader
from harness.sync_table_fixture import create_sync_table
from tests.support.moto_account import moto_account
from tests.support.user_purchases import COURSE, EBOOK, T0, purchase, subscription_events

DAY = 86_400


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with moto_account():
        client = boto3.client("dynamodb")
        name = create_sync_table(client, f"users-{uuid.uuid4().hex[:8]}")
        yield client, name


def apply(*events: dict[str, Any]) -> None:
    applier = EventApplier(sync_table.DynamoCustomerStore(), EntitlementRules(), clock=lambda: T0 + DAY)
    for event in events:
        applier.apply(event)


def test_two_customers_of_one_user_in_either_order_read_as_one_answer(dynamodb: tuple[Any, str]) -> None:
    client, table = dynamodb
    course = purchase("cus_course", COURSE, T0)
    ebook = purchase("cus_ebook", EBOOK, T0 + DAY)
    apply(ebook, course)
    reader = EntitlementsReader(table, livemode=False, client=client)
    access = reader.user_entitlements("user_42")
    assert access is not None
    assert access.customer_ids == ("cus_course", "cus_ebook")
    assert access.active_features(now=T0 + DAY) == {"prod_course", "prod_ebook"}
    assert access.features["prod_course"].source == "cs_cus_course"
    # The other order, in a fresh partition of another user: the same answer.
    apply(
        purchase("cus_course2", COURSE, T0, user="user_43"),
        purchase("cus_ebook2", EBOOK, T0 + DAY, "user_43"),
    )
    other = reader.user_entitlements("user_43")
    assert other is not None
    assert other.active_features(now=T0 + DAY) == access.active_features(now=T0 + DAY)
    apply(ebook, course)  # duplicates: nothing readers see changes
    again = reader.user_entitlements("user_42")
    assert again is not None
    assert again.version == access.version


def test_a_write_of_the_users_other_customer_in_between_is_merged_not_lost(
    dynamodb: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, table = dynamodb
    apply(purchase("cus_course", COURSE, T0))
    real_get = table_items.UserEntitlementsItem.get
    interfered: list[bool] = []

    def get_then_other_writer(*args: Any, **kwargs: Any) -> Any:
        item = real_get(*args, **kwargs)
        if not interfered:  # after our read, the other customer's worker writes the item
            interfered.append(True)
            monkeypatch.setattr(table_items.UserEntitlementsItem, "get", real_get)
            apply(purchase("cus_ebook", EBOOK, T0 + DAY))
        return item

    monkeypatch.setattr(table_items.UserEntitlementsItem, "get", get_then_other_writer)
    events = subscription_events("cus_sub")
    apply(*events[:2])

    assert interfered
    access = EntitlementsReader(table, livemode=False, client=client).user_entitlements("user_42")
    assert access is not None
    assert access.customer_ids == ("cus_course", "cus_ebook", "cus_sub")
    assert access.active_features(now=T0 + DAY) == {"prod_course", "prod_ebook", "prod_pro"}
