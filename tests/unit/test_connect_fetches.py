"""Connect: every Stripe API call made for an event of a connected account names that account
(https://docs.stripe.com/connect/authentication: a platform reads a connected account's objects with
the `Stripe-Account` header; v2 thin events carry it as `context`). A fetch that forgets it reads the
platform, fails with "No such …", and the message ends in the DLQ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from domain.entitlements import EntitlementRules
from domain.sync import EventApplier, Outcome
from events.scenarios import SCENARIOS, Scenario, ScenarioParams, build
from events.stripe.objects import IdFactory, thin_event
from harness.memory_store import MemoryStore, ScriptedStripe, scripted_stripe
from tests.support.aws_event_shapes import queued_by_reference

ACCOUNT = "acct_1ConnectedAccount01"


class AccountCheckingStripe(ScriptedStripe):
    """Fails the test at the first call that does not name the event's account."""

    def _check(self, account: str | None, what: str) -> None:
        assert account == ACCOUNT, f"{what} fetched without the connected account"

    def fetch_object(
        self, object_type: str, object_id: str, livemode: bool, account: str | None
    ) -> Mapping[str, Any]:
        self._check(account, object_type)
        return super().fetch_object(object_type, object_id, livemode, account)

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        self._check(account, "event")
        return super().fetch_event(event_id, livemode, account)

    def fetch_thin_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        self._check(account, "v2 event")
        return super().fetch_thin_event(event_id, livemode, account)

    def checkout_line_items(
        self, session_id: str, livemode: bool, account: str | None
    ) -> list[Mapping[str, Any]]:
        self._check(account, "checkout line items")
        self.calls.append(("line_items", session_id))
        return self.line_items.get(session_id, [])

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]:
        self._check(account, "active entitlements")
        return super().active_entitlement_keys(customer_id, livemode, account)


def connected(name: str) -> tuple[Scenario, AccountCheckingStripe]:
    scenario = build(name, ScenarioParams(account=ACCOUNT))
    plain = scripted_stripe(scenario)
    stripe = AccountCheckingStripe(
        objects=plain.objects,
        line_items=plain.line_items,
        entitlement_keys=plain.entitlement_keys,
        modes=(False, True),
    )
    for event in scenario.events:
        stripe.events[str(event["id"])] = event
        obj = event["data"]["object"]
        if "id" in obj:  # objects the scenario does not track answer as their last event shows them
            stripe.objects.setdefault((str(obj["object"]), str(obj["id"])), obj)
    return scenario, stripe


NAMES = sorted(n for n in SCENARIOS if n not in ("accounts_v2_signup_paid", "connect_signup_paid"))


@pytest.mark.parametrize("order", ["in_order", "reversed"])
@pytest.mark.parametrize("name", NAMES)
def test_snapshot_events_of_a_connected_account_fetch_with_it(name: str, order: str) -> None:
    scenario, stripe = connected(name)
    applier = EventApplier(MemoryStore(), EntitlementRules(), clock=lambda: 2_000_000_000, stripe=stripe)
    events = scenario.events if order == "in_order" else list(reversed(scenario.events))
    for event in events:
        assert event["account"] == ACCOUNT
        assert applier.apply(event).outcome is not None
    if name == "one_time_purchase":
        assert any(call[0] == "line_items" for call in stripe.calls)  # the path was taken


@pytest.mark.parametrize("name", NAMES)
def test_thin_and_by_reference_events_of_a_connected_account_fetch_with_it(name: str) -> None:
    scenario, stripe = connected(name)
    applier = EventApplier(MemoryStore(), EntitlementRules(), clock=lambda: 2_000_000_000, stripe=stripe)
    for index, event in enumerate(scenario.events):
        obj = event["data"]["object"]
        if index % 2 == 0:  # queued by reference: the worker reads the v1 event with the account
            body = queued_by_reference(event)
            assert body["account"] == ACCOUNT
        else:  # a thin event: v2 names the account `context`
            body = thin_event(
                IdFactory(index),
                f"v1.{event['type']}",
                created=1_767_225_600,  # 2026-01-01
                related_object=(obj["object"], obj["id"]) if "id" in obj else None,
                livemode=event["livemode"],
                context=ACCOUNT,
                id=f"evt_thin_{index}",
            )
            if "id" not in obj:
                stripe.thin_events[body["id"]] = body | {"snapshot_event": event["id"]}
        result = applier.apply(body)
        assert result.outcome in set(Outcome), result
    assert stripe.calls
