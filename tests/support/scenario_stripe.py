"""The Stripe API as a scenario says it answers after its events, for the in-memory worker tests."""

from __future__ import annotations

from events.scenarios import Scenario
from harness.memory_store import ScriptedStripe


def scripted_stripe(scenario: Scenario) -> ScriptedStripe:
    """The Stripe API as the scenario says it answers afterwards."""
    stripe = ScriptedStripe(modes=(False, True))
    for object_id, obj in scenario.api_objects.items():
        stripe.objects[(str(obj["object"]), object_id)] = obj
    for path, page in scenario.api_lists.items():
        if path.endswith("/line_items"):
            stripe.line_items[path.split("/")[-2]] = list(page["data"])
        elif path.startswith("/v1/entitlements/active_entitlements"):
            customer = path.split("customer=")[1]
            stripe.entitlement_keys[customer] = [str(e["lookup_key"]) for e in page["data"]]
    return stripe
