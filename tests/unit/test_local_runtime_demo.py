"""`make demo`'s pieces: which secret it signs with, its customers, how it shows entitlements, and
that what it says to expect after each story is what the pipeline writes."""

from __future__ import annotations

import time

import pytest

from adapters.settings import load_rules
from domain.entitlements import EntitlementRules, Entitlements
from domain.sync import EventApplier, StoredEntitlements
from entitlements_reader import CustomerEntitlements, FeatureGrant
from events.scenarios import DEFAULT_PARAMS, Scenario, build
from harness.memory_store import MemoryStore, scripted_stripe
from local_runtime.demo import (
    DEMO_SCENARIOS,
    DemoError,
    demo_customer_id,
    demo_secret,
    entitlements_text,
    expected_entitlements,
    expected_text,
    scenario_line_items,
)


def test_the_demo_signs_with_the_runtimes_secret_for_test_mode() -> None:
    assert demo_secret({"STRIPE_WEBHOOK_SECRET": "whsec_a"}, 3000) == "whsec_a"
    assert demo_secret({"STRIPE_WEBHOOK_SECRET": "live:whsec_live, test:whsec_test"}, 3000) == "whsec_test"
    with pytest.raises(DemoError, match="no secret for test mode"):
        demo_secret({"STRIPE_WEBHOOK_SECRET": "live:whsec_live"}, 3000)
    with pytest.raises(DemoError, match="webhook secret #1") as raised:
        demo_secret({"STRIPE_WEBHOOK_SECRET": "sk_test_not_a_secret"}, 3000)
    assert "sk_test_not_a_secret" not in str(raised.value)


def test_without_the_variable_the_demo_finds_the_generated_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "local_runtime.demo.read_generated_secret", lambda port: "whsec_local_gen" if port == 3007 else None
    )
    assert demo_secret({}, 3007) == "whsec_local_gen"
    with pytest.raises(DemoError, match="same STRIPE_WEBHOOK_SECRET as `make run`"):
        demo_secret({}, 3008)


def test_each_run_and_story_gets_its_own_customer() -> None:
    ids = {demo_customer_id(run, index) for run in (1795454662, 1795454663) for index in (1, 2, 3, 4)}
    assert len(ids) == 8
    assert all(i.startswith("cus_Demo") and len(i) == len("cus_") + 14 for i in ids)


def utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def test_entitlements_in_words() -> None:
    now = time.time()
    access = CustomerEntitlements(
        customer_id="cus_1",
        livemode=False,
        features={
            "pro": FeatureGrant(None, "sub_1"),
            "course": FeatureGrant(int(now) - 60, "cs_1"),
            "api": FeatureGrant(int(now) + 86_400, "sub_1"),
        },
        payment_issue=True,
        deleted=False,
        version=3,
        updated_at=int(now),
    )
    assert entitlements_text(access, now=now) == (
        f"api (until {utc(int(now) + 86_400)}), course (ended {utc(int(now) - 60)}), pro (no end) [payment issue]  v3"
    )
    assert entitlements_text(None) == "no entitlements item yet"


def applied_in_memory(scenario: Scenario, rules: EntitlementRules) -> StoredEntitlements:
    """What the worker writes for the story: every event through the applier, in order, into the
    in-memory table, with the scenario's Stripe answering its fetches."""
    store = MemoryStore()
    last = max(int(event["created"]) for event in scenario.events)
    applier = EventApplier(store, rules, clock=lambda: last + 60, stripe=scripted_stripe(scenario))
    for event in scenario.events:
        applier.apply(event)
    return store.entitlements[str(scenario.customer_id)]


@pytest.mark.parametrize("name", DEMO_SCENARIOS)
def test_each_storys_expectation_is_what_the_pipeline_writes(name: str) -> None:
    rules = load_rules()
    scenario = build(name, ends_at=2_000_000_000)
    expected = expected_entitlements(
        str(scenario.customer_id), scenario.events, scenario_line_items(scenario), rules
    )
    written = applied_in_memory(scenario, rules).entitlements
    assert expected.same_access(written)
    now = 2_000_000_001
    assert expected_text(expected, now) == entitlements_text(reader_view(written), now).rsplit("  v", 1)[0]


def reader_view(written: Entitlements) -> CustomerEntitlements:
    return CustomerEntitlements(
        customer_id=written.customer_id,
        livemode=written.livemode,
        features={name: FeatureGrant(grant.until, grant.source) for name, grant in written.features.items()},
        payment_issue=written.payment_issue,
        deleted=written.deleted,
        version=1,
        updated_at=0,
    )


def test_the_trial_story_expects_the_pro_plan_with_no_end() -> None:
    scenario = build("trial_converts", ends_at=2_000_000_000)
    expected = expected_entitlements(
        str(scenario.customer_id), scenario.events, scenario_line_items(scenario), load_rules()
    )
    assert expected_text(expected, 2_000_000_001) == f"{DEFAULT_PARAMS.product_id} (no end)"


def test_a_refunded_purchase_expects_nothing_and_its_line_items_are_read() -> None:
    scenario = build("purchase_refunded", ends_at=2_000_000_000)
    line_items = scenario_line_items(scenario)
    assert len(line_items) == 1
    rules = load_rules()
    refunded = expected_entitlements(str(scenario.customer_id), scenario.events, line_items, rules)
    assert expected_text(refunded) == "no features"
    before_refund = [e for e in scenario.events if not e["type"].startswith("charge.refund")]
    bought = expected_entitlements(str(scenario.customer_id), before_refund, line_items, rules)
    assert set(bought.features) == {DEFAULT_PARAMS.one_time_product_id}
