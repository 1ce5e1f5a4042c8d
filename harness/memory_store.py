"""Test doubles for the applier's ports: an in-memory table that enforces the same conditions as the
DynamoDB store (newer stamp on the record, per-customer state version, entitlements computed from a
newer state), and a scripted Stripe API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.live_records import LiveRecords
from domain.records import RecordKind, Snapshot
from domain.sync import (
    ConcurrentChange,
    CustomerChange,
    CustomerState,
    DuplicateEvent,
    EventView,
    StaleWrite,
    StoredEntitlements,
)
from domain.user_entitlements import UserEntitlements, with_part
from events.scenarios import Scenario


@dataclass
class MemoryStore:
    records: dict[str, dict[tuple[RecordKind, str], Snapshot]] = field(default_factory=dict)
    entitlements: dict[str, StoredEntitlements] = field(default_factory=dict)
    records_versions: dict[str, int] = field(default_factory=dict)  # the state item's version
    states: dict[str, LiveRecords] = field(default_factory=dict)
    computed_from: dict[str, int] = field(default_factory=dict)  # entitlements' records_version
    users: dict[tuple[str, bool], str] = field(default_factory=dict)
    # (user id, livemode) -> the user entitlements item
    user_entitlements: dict[tuple[str, bool], UserEntitlements] = field(default_factory=dict)
    payments: dict[str, str] = field(default_factory=dict)
    guests: dict[str, Snapshot] = field(default_factory=dict)
    # payment intent (else charge) -> (kind, object id) -> an unmatched dispute or refund
    unmatched: dict[str, dict[tuple[RecordKind, str], Snapshot]] = field(default_factory=dict)
    commits: int = 0
    before_commit: Callable[[CustomerChange], None] | None = None

    def load(self, customer_id: str) -> CustomerState:
        return CustomerState(
            customer_id,
            dict(self.records.get(customer_id, {})),
            self.entitlements.get(customer_id),
            self.records_versions.get(customer_id, 0),
        )

    def read(self, customer_id: str, key: tuple[RecordKind, str]) -> EventView:
        return EventView(
            customer_id,
            self.records.get(customer_id, {}).get(key),
            self.states.get(customer_id),
            self.entitlements.get(customer_id),
            self.records_versions.get(customer_id, 0),
            has_history=customer_id in self.entitlements and customer_id not in self.states,
        )

    def commit(self, change: CustomerChange) -> None:
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None
            hook(change)
        customer = change.customer_id
        for adopted in change.adopted:
            held = self.records.setdefault(customer, {}).get(adopted.key)
            if held is None or adopted.stamp > held.stamp:
                self.records[customer][adopted.key] = adopted
            for group in self.unmatched.values():
                if (stored := group.get(adopted.key)) is not None and stored.stamp == adopted.stamp:
                    del group[adopted.key]
        self.unmatched = {ref: group for ref, group in self.unmatched.items() if group}
        if change.snapshot is not None:
            stored = self.records.get(customer, {}).get(change.snapshot.key)
            if stored is not None and stored.stamp.event_id == change.snapshot.stamp.event_id:
                raise DuplicateEvent(change.event_id)
            if stored is not None and not change.snapshot.stamp > stored.stamp:
                raise StaleWrite(change.event_id)
            self.commits += 1
            self.records.setdefault(customer, {})[change.snapshot.key] = change.snapshot
            for link in change.link_users:
                self.users[(link.user_id, link.livemode)] = customer
            for link in change.unlink_users:
                if self.users.get((link.user_id, link.livemode)) == customer:
                    del self.users[(link.user_id, link.livemode)]
            for intent in change.link_payment_intents:
                self.payments[intent] = customer
        if change.live is not None:
            if (customer in self.states) != change.state_exists or self.records_versions.get(
                customer, 0
            ) != change.expected_version:
                raise ConcurrentChange(customer)
            self.states[customer] = change.live
            self.records_versions[customer] = change.new_version
        if change.entitlements is not None and self.computed_from.get(customer, -1) < change.new_version:
            self.entitlements[customer] = StoredEntitlements(
                change.entitlements, change.entitlements_version, change.updated_at
            )
            self.computed_from[customer] = change.new_version
        for user_id, livemode, part in change.user_parts():
            merged = with_part(
                self.user_entitlements.get((user_id, livemode)),
                user_id,
                livemode,
                part,
                change.now,
                repair=change.users_repair,
            )
            if merged is not None:
                self.user_entitlements[(user_id, livemode)] = merged

    def customer_of_payment(self, payment_intent_id: str | None, charge_id: str | None) -> str | None:
        return self.payments.get(payment_intent_id or "") or self.payments.get(charge_id or "")

    def store_unmatched(self, snapshot: Snapshot) -> bool:
        record = snapshot.record
        ref = getattr(record, "payment_intent_id", None) or getattr(record, "charge_id", None) or record.id
        group = self.unmatched.setdefault(ref, {})
        stored = group.get(snapshot.key)
        if stored is not None and not snapshot.stamp > stored.stamp:
            return False
        group[snapshot.key] = snapshot
        return True

    def unmatched_for(self, payment_intent_id: str | None, charge_id: str | None) -> list[Snapshot]:
        found: dict[tuple[RecordKind, str], Snapshot] = {}
        for ref in (payment_intent_id, charge_id):
            if ref:
                found.update(self.unmatched.get(ref, {}))
        return list(found.values())

    def store_guest(self, snapshot: Snapshot, event_type: str) -> bool:
        stored = self.guests.get(snapshot.record.id)
        if stored is not None and not snapshot.stamp > stored.stamp:
            return False
        self.guests[snapshot.record.id] = snapshot
        return True

    def final_state(self) -> dict[str, Any]:
        """What must not depend on delivery order: every record and every customer's access."""
        return {
            "records": {c: {k: s.record for k, s in recs.items()} for c, recs in self.records.items()},
            "entitlements": {
                c: (dict(e.entitlements.features), e.entitlements.payment_issue, e.entitlements.deleted)
                for c, e in self.entitlements.items()
            },
            "users": dict(self.users),
            "user_entitlements": {
                key: (dict(item.features), item.payment_issue, item.deleted, item.customer_ids)
                for key, item in self.user_entitlements.items()
            },
            "guests": {object_id: snapshot.record for object_id, snapshot in self.guests.items()},
            "unmatched": {
                ref: {key: snapshot.record for key, snapshot in group.items()}
                for ref, group in self.unmatched.items()
            },
        }


@dataclass
class ScriptedStripe:
    """Answers fetches from a dict of objects; records every call."""

    objects: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    events: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    thin_events: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    line_items: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    entitlement_keys: dict[str, list[str]] = field(default_factory=dict)
    modes: tuple[bool, ...] = (False,)
    calls: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[str | None] = field(default_factory=list)

    def can_fetch(self, livemode: bool) -> bool:
        return livemode in self.modes

    def fetch_object(
        self, object_type: str, object_id: str, livemode: bool, account: str | None
    ) -> Mapping[str, Any]:
        self.calls.append((object_type, object_id))
        self.accounts.append(account)
        return self.objects[(object_type, object_id)]

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        self.calls.append(("event", event_id))
        self.accounts.append(account)
        return self.events[event_id]

    def fetch_thin_event(self, event_id: str, livemode: bool, account: str | None) -> Mapping[str, Any]:
        self.calls.append(("v2_event", event_id))
        self.accounts.append(account)
        return self.thin_events[event_id]

    def checkout_line_items(
        self, session_id: str, livemode: bool, account: str | None
    ) -> list[Mapping[str, Any]]:
        self.calls.append(("line_items", session_id))
        self.accounts.append(account)
        return self.line_items[session_id]

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]:
        self.calls.append(("active_entitlements", customer_id))
        self.accounts.append(account)
        return self.entitlement_keys[customer_id]


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
