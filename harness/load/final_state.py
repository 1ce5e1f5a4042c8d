"""The expected final state (each history applied once, in order) and the runtime's table read back,
compared."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.settings import DEFAULT_RULES_FILE, load_rules
from adapters.table_items import (
    EntitlementsItem,
    LookupItem,
    RecordItem,
    SyncItem,
    entitlements_of,
    snapshot_of_item,
)
from domain.entitlements import EntitlementRules
from domain.records import RecordKind, Snapshot, record_to_dict
from domain.sync import CustomerState, CustomerStore, EventApplier, StoredEntitlements
from harness.load.workload import Workload


def runtime_rules() -> EntitlementRules:
    """The rules the runtime applies (its ENTITLEMENT_RULES_FILE is scrubbed to the default)."""
    return load_rules(DEFAULT_RULES_FILE)


def in_order_state(
    workload: Workload, store: CustomerStore, rules: EntitlementRules | None = None
) -> dict[str, CustomerState]:
    """Each customer's history applied once, in order, on `store` (fresh): what the table must hold."""
    applier = EventApplier(store, rules or runtime_rules(), clock=lambda: int(time.time()))
    for history in workload.histories:
        for event in history.events:
            applier.apply(event)
    return {history.customer_id: store.load(history.customer_id) for history in workload.histories}


@dataclass(frozen=True, slots=True)
class TableState:
    customers: dict[str, CustomerState]
    ledger: frozenset[str]  # event ids the records' stamps carry (a stamp replaced the EVENT# ledger)
    users: dict[str, str]  # USER#<mode>#<user id> -> customer id
    items: int


def table_state(dynamodb: Any, table_name: str) -> TableState:
    """Every item of the runtime's table (one consistent scan), read back through the adapter's models."""
    snapshots: defaultdict[str, dict[tuple[RecordKind, str], Snapshot]] = defaultdict(dict)
    entitlements: dict[str, EntitlementsItem] = {}
    ledger: set[str] = set()
    users: dict[str, str] = {}
    count = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        for raw in page["Items"]:
            count += 1
            item = SyncItem.from_raw_data(raw)
            if isinstance(item, RecordItem) and item.pk.startswith("CUSTOMER#"):
                snapshot = snapshot_of_item(item)
                snapshots[item.pk.removeprefix("CUSTOMER#")][snapshot.key] = snapshot
                if not item.stamp_event.startswith(("fetch_", "sync_")):
                    ledger.add(item.stamp_event)
            elif isinstance(item, EntitlementsItem):
                entitlements[item.pk.removeprefix("CUSTOMER#")] = item
            elif isinstance(item, LookupItem) and item.pk.startswith("USER#"):
                users[item.pk] = item.customer_id
    customers: dict[str, CustomerState] = {}
    for customer in set(snapshots) | set(entitlements):
        stored = entitlements.get(customer)
        customers[customer] = CustomerState(
            customer,
            snapshots.get(customer, {}),
            entitlements_of(stored) if stored is not None else None,
            int(stored.records_version or 0) if stored is not None else 0,
        )
    return TableState(customers, frozenset(ledger), users, count)


def _access(stored: StoredEntitlements | None) -> object:
    """What readers act on; not `version` / `updated_at`, which count the writes a delivery order made."""
    if stored is None:
        return None
    e = stored.entitlements
    return (e.livemode, dict(e.features), e.payment_issue, e.deleted)


def _records(state: CustomerState) -> dict[tuple[RecordKind, str], object]:
    # Compared as plain data: the table's copy went through JSON (tuples come back as lists).
    return {
        key: (json.loads(json.dumps(record_to_dict(s.record))), s.stamp, s.customer_id)
        for key, s in state.snapshots.items()
    }


def differences(expected: Mapping[str, CustomerState], actual: TableState, *, limit: int = 20) -> list[str]:
    """Where the table differs from the in-order result, one line per difference (at most `limit`)."""
    found: list[str] = []
    for customer in sorted(set(expected) | set(actual.customers)):
        want, got = expected.get(customer), actual.customers.get(customer)
        if want is None or got is None:
            found.append(f"{customer}: {'not expected' if want is None else 'missing'} in the table")
            continue
        if _access(want.entitlements) != _access(got.entitlements):
            found.append(
                f"{customer}: entitlements {_access(got.entitlements)!r}, in order {_access(want.entitlements)!r}"
            )
        wanted, stored = _records(want), _records(got)
        for key in sorted(set(wanted) | set(stored)):
            if wanted.get(key) != stored.get(key):
                found.append(f"{customer}: record {key} is {stored.get(key)!r}, in order {wanted.get(key)!r}")
        if len(found) >= limit:
            break
    return found[:limit]
