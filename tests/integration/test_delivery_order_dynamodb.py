"""The delivery-order property again, through the real DynamoDB store on moto, so that the conditional
writes themselves (stamp order, records_version, ledger) are what keeps the table right."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import sync_table
from domain.entitlements import EntitlementRules
from domain.sync import EventApplier
from events.scenarios import Scenario, ScenarioParams, all_scenarios
from harness.sync_table_fixture import create_sync_table
from tests.support.moto_account import moto_account
from tests.support.sqs_delivery import apply_as_sqs_delivers

SCENARIOS = {scenario.name: scenario for scenario in all_scenarios(ScenarioParams())}
RULES = EntitlementRules()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with moto_account():
        yield boto3.client("dynamodb")


def fresh_table(client: Any) -> str:
    name = f"order-{uuid.uuid4().hex[:8]}"
    create_sync_table(client, name)
    return name


def table_state(client: Any, table: str) -> dict[str, Any]:
    """Every item, minus what legitimately depends on the number of writes (versions, times, ledger)."""
    items = client.scan(TableName=table, ConsistentRead=True)["Items"]
    volatile = {"version", "updated_at", "records_version", "expires_at", "applied_at"}
    # What the entitlements item's last access change knew (for its "entitlements changed" event): the
    # item is not rewritten when only these would change, so they depend on the delivery order.
    as_of_last_change = {"cause_event_id", "user_id", "account"}
    state = {}
    for item in items:
        if item["pk"]["S"].startswith("EVENT#"):
            continue
        key = (item["pk"]["S"], item["sk"]["S"])
        # The state item's records are compressed bytes: compared as hex.
        dropped = volatile | as_of_last_change if key[1] == "ENTITLEMENTS" else volatile
        if key[0].startswith("USER#") and key[1] == "ENTITLEMENTS":
            # A user item: its write count and each customer's state version depend on the order.
            dropped = dropped | {"revision"}
            parts = json.loads(item["parts"]["S"])
            shown = {**item, "parts": {p: raw["entitlements"] for p, raw in parts.items()}}
        else:
            shown = item
        state[key] = json.dumps(
            {k: v for k, v in shown.items() if k not in dropped}, sort_keys=True, default=bytes.hex
        )
    return state


def deliver(client: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    table = fresh_table(client)
    applier = EventApplier(sync_table.DynamoCustomerStore(), RULES, clock=lambda: 2_000_000_000)
    apply_as_sqs_delivers(applier, events)
    return table_state(client, table)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Scenario, list[dict[str, Any]]]:
    scenario = SCENARIOS[draw(st.sampled_from(sorted(SCENARIOS)))]
    delivered = list(draw(st.permutations(scenario.events)))
    for event in draw(st.lists(st.sampled_from(scenario.events), max_size=4)):
        delivered.insert(draw(st.integers(0, len(delivered))), event)
    return scenario, delivered


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=deliveries())
def test_shuffled_and_duplicated_delivery_leaves_the_same_table(
    dynamodb: Any, case: tuple[Scenario, list[dict[str, Any]]]
) -> None:
    scenario, delivered = case
    assert deliver(dynamodb, delivered) == deliver(dynamodb, scenario.events)


@pytest.mark.parametrize(
    "name",
    [
        "purchase_dispute_lost",
        "purchase_refund_failed",
        "subscription_payment_disputed",
        "guest_purchase_disputed",
    ],
)
def test_a_dispute_or_refund_before_its_payment_ends_in_the_same_table(dynamodb: Any, name: str) -> None:
    """Reversed, the dispute (or refund) comes first: it is stored unmatched, then moved into the
    customer's records, in the purchase's transaction, when the payment arrives."""
    scenario = SCENARIOS[name]
    assert deliver(dynamodb, list(reversed(scenario.events))) == deliver(dynamodb, scenario.events)
