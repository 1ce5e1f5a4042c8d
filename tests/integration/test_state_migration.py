"""A table written before state items (records, an entitlements item carrying `records_version`, the
EVENT# ledger, no STATE item) keeps working: the first event of each customer builds its state from
the partition once, later events read only the state, and the result equals a table written by the
current code from the start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from adapters import sync_table, table_items
from domain.entitlements import EntitlementRules
from domain.sync import EventApplier
from events.scenarios import ScenarioParams, all_scenarios
from harness.memory_store import MemoryStore
from harness.sync_table_fixture import create_sync_table
from tests.support.moto_account import moto_account

RULES = EntitlementRules()
NOW = 2_000_000_000
MIGRATED = {
    "signup_paid",
    "payment_failed_then_unpaid",
    "one_time_purchase",
    "purchase_refunded",
    "purchase_dispute_lost",
    "customer_deleted",
    "entitlements_summary_updated",
}
SCENARIOS = [s for s in all_scenarios(ScenarioParams()) if s.name in MIGRATED]


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with moto_account():
        yield boto3.client("dynamodb")


def seed_old_layout(events: list[dict[str, Any]]) -> None:
    """What the code before state items left after applying `events`: every record, the ledger, and
    the entitlements item whose `records_version` counted the writes (one transaction per event)."""
    memory = MemoryStore()
    applier = EventApplier(memory, RULES, clock=lambda: NOW)
    applied = [event for event in events if applier.apply(event).outcome == "applied"]
    with table_items.SyncItem.batch_write() as batch:
        for customer, records in memory.records.items():
            for snapshot in records.values():
                batch.save(table_items.record_item(table_items.customer_pk(customer), snapshot))
        for customer, stored in memory.entitlements.items():
            e = stored.entitlements
            batch.save(
                table_items.EntitlementsItem(
                    table_items.customer_pk(customer),
                    table_items.ENTITLEMENTS_SK,
                    customer_id=customer,
                    livemode=e.livemode,
                    features=table_items.entitlements_to_attributes(e),
                    payment_issue=e.payment_issue,
                    updated_at=stored.updated_at,
                    version=stored.version,
                    deleted=e.deleted,
                    records_version=len(applied),
                )
            )
        for event in applied:
            batch.save(
                table_items.LedgerItem(
                    f"EVENT#{event['id']}",
                    "EVENT",
                    event_type=event["type"],
                    customer_id=None,
                    record_key=None,
                    applied_at=NOW,
                    expires_at=datetime.fromtimestamp(NOW + 45 * 86_400, UTC),
                )
            )
        for intent, customer in memory.payments.items():
            batch.save(
                table_items.LookupItem(f"PAYMENT#{intent}", "CUSTOMER", customer_id=customer, livemode=False)
            )
        for (user, livemode), customer in memory.users.items():
            batch.save(
                table_items.LookupItem(
                    table_items.user_pk(user, livemode), "CUSTOMER", customer_id=customer, livemode=livemode
                )
            )


def access(store: sync_table.DynamoCustomerStore, customer: str) -> object:
    stored = store.load(customer).entitlements
    assert stored is not None
    e = stored.entitlements
    return (dict(e.features), e.payment_issue, e.deleted, e.livemode, stored.version)


def records(store: sync_table.DynamoCustomerStore, customer: str) -> object:
    return {key: (s.record, s.stamp) for key, s in store.load(customer).snapshots.items()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_table_written_before_state_items_ends_as_one_written_with_them(
    dynamodb: Any, scenario: Any
) -> None:
    customer = scenario.customer_id
    half = len(scenario.events) // 2
    store = sync_table.DynamoCustomerStore()

    create_sync_table(dynamodb, f"fresh-{uuid.uuid4().hex[:8]}")
    fresh = EventApplier(store, RULES, clock=lambda: NOW)
    for event in scenario.events:
        fresh.apply(event)
    expected = (access(store, customer), records(store, customer))

    create_sync_table(dynamodb, f"old-{uuid.uuid4().hex[:8]}")
    seed_old_layout(scenario.events[:half])
    assert store.read(customer, ("profile", customer)).live is None, "seeded without a state item"
    migrated = EventApplier(store, RULES, clock=lambda: NOW)
    for event in scenario.events[half:]:
        migrated.apply(event)
    assert (access(store, customer), records(store, customer)) == expected
    assert store.read(customer, ("profile", customer)).live is not None


def test_after_the_first_event_a_migrated_customer_is_never_queried_again(dynamodb: Any) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "signup_paid")
    customer = scenario.customer_id
    create_sync_table(dynamodb, f"old-{uuid.uuid4().hex[:8]}")
    seed_old_layout(scenario.events[:3])
    store = sync_table.DynamoCustomerStore()
    queries: list[str] = []
    original = store.load

    def counted(customer_id: str) -> Any:
        queries.append(customer_id)
        return original(customer_id)

    store.load = counted  # type: ignore[method-assign]
    applier = EventApplier(store, RULES, clock=lambda: NOW)
    for event in scenario.events[3:]:
        applier.apply(event)
    assert queries == [customer]
