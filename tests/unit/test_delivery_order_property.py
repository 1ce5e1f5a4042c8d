"""Stripe delivers at least once and in any order: for any permutation and any duplication of a
customer's event history, the final records and entitlements equal those of the in-order history."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.entitlements import EntitlementRules
from domain.sync import EventApplier
from events.scenarios import Scenario, ScenarioParams, all_scenarios
from harness.memory_store import MemoryStore
from tests.support.sqs_delivery import apply_as_sqs_delivers

SCENARIOS = {scenario.name: scenario for scenario in all_scenarios(ScenarioParams())}
LEGACY = {scenario.name: scenario for scenario in all_scenarios(ScenarioParams(api="legacy"))}
RULES = EntitlementRules(grace_period_seconds=3 * 86_400)
MAX_RECEIVE_COUNT = 5


def apply_all(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Deliver like SQS: a message that asks to be retried (a dispute before its purchase) comes back
    after the others, up to maxReceiveCount times."""
    store = MemoryStore()
    applier = EventApplier(store, RULES, clock=lambda: 2_000_000_000)
    apply_as_sqs_delivers(applier, events, MAX_RECEIVE_COUNT)
    return store.final_state()


def in_order(scenario: Scenario) -> dict[str, Any]:
    return apply_all(scenario.events)


@st.composite
def deliveries(draw: st.DrawFn, scenarios: dict[str, Scenario]) -> tuple[Scenario, list[dict[str, Any]]]:
    scenario = scenarios[draw(st.sampled_from(sorted(scenarios)))]
    shuffled = draw(st.permutations(scenario.events))
    repeats = draw(st.lists(st.sampled_from(scenario.events), max_size=len(scenario.events)))
    delivered = list(shuffled)
    for event in repeats:  # each duplicate lands at a random later position
        delivered.insert(draw(st.integers(0, len(delivered))), event)
    return scenario, delivered


def test_every_scenario_stores_something() -> None:
    for scenario in SCENARIOS.values():
        state = in_order(scenario)
        assert state["records"] or state["guests"], scenario.name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(SCENARIOS))
def test_any_order_and_duplication_ends_where_the_in_order_history_ends(
    case: tuple[Scenario, list[dict[str, Any]]],
) -> None:
    scenario, delivered = case
    assert apply_all(delivered) == in_order(scenario)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(LEGACY))
def test_the_same_holds_for_the_older_api_shapes(case: tuple[Scenario, list[dict[str, Any]]]) -> None:
    scenario, delivered = case
    assert apply_all(delivered) == in_order(scenario)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_reversed_history_ends_in_the_same_state(name: str) -> None:
    scenario = SCENARIOS[name]
    assert apply_all(list(reversed(scenario.events))) == in_order(scenario)
