"""`customer show`: a customer's entitlements (as backend services read them) and stored records; by
user id, the user's access across all their customers (the user entitlements item) and each customer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entitlements_reader import CustomerEntitlements, EntitlementsReader, UserEntitlements

if TYPE_CHECKING:
    from adapters.settings import TableSettings


class CustomerNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer_id: str
    entitlements: CustomerEntitlements | None
    records: list[dict[str, Any]]  # kind, id, stamp, record (internal shape, for people)

    def as_dict(self, now: float) -> dict[str, Any]:
        entitlements = self.entitlements
        return {
            "customer_id": self.customer_id,
            "entitlements": None
            if entitlements is None
            else {"livemode": entitlements.livemode, **access_as_dict(entitlements, now)},
            "records": self.records,
        }


def user_access(dynamodb: Any, table: str, user_id: str, *, livemode: bool) -> UserEntitlements | None:
    """The user entitlements item, None when the table has none (written before it existed)."""
    return EntitlementsReader(table, livemode=livemode, client=dynamodb).user_entitlements(user_id)


def user_as_dict(user: UserEntitlements, now: float) -> dict[str, Any]:
    return {"livemode": user.livemode, "customer_ids": list(user.customer_ids), **access_as_dict(user, now)}


def access_as_dict(access: CustomerEntitlements | UserEntitlements, now: float) -> dict[str, Any]:
    """What a customer's and a user's entitlements items say alike, each feature active or not at `now`."""
    return {
        "features": {
            name: {"until": grant.until, "source": grant.source, "active": grant.active_at(now)}
            for name, grant in sorted(access.features.items())
        },
        "active_features": sorted(access.active_features(now)),
        "payment_issue": access.payment_issue,
        "deleted": access.deleted,
        "version": access.version,
        "updated_at": access.updated_at,
    }


def customer_for_user(dynamodb: Any, table: str, user_id: str, *, livemode: bool) -> str:
    found = EntitlementsReader(table, livemode=livemode, client=dynamodb).customer_for_user(user_id)
    if found is None:
        mode = "live" if livemode else "test"
        other = "without --live" if livemode else "with --live"
        raise CustomerNotFound(f"no {mode}-mode customer for user {user_id!r} (try {other})")
    return found


def show_customer(dynamodb: Any, table: TableSettings, customer_id: str) -> CustomerView:
    entitlements = EntitlementsReader(table.name, client=dynamodb).entitlements(customer_id)
    records = stored_records(table, customer_id)
    if entitlements is None and not records:
        raise CustomerNotFound(f"the table has nothing about customer {customer_id!r}")
    return CustomerView(customer_id, entitlements, records)


def stored_records(table: TableSettings, customer_id: str) -> list[dict[str, Any]]:
    """The customer's records through the table adapter, which knows their (internal) layout."""
    from adapters import sync_table  # noqa: PLC0415 - pynamodb only for this command
    from domain.records import record_to_dict  # noqa: PLC0415

    table.bind()
    state = sync_table.DynamoCustomerStore().load(customer_id)
    records = [
        {
            "kind": snapshot.record.kind,
            "id": snapshot.record.id,
            "stamp": {
                "created": snapshot.stamp.created,
                "rank": snapshot.stamp.rank,
                "event_id": snapshot.stamp.event_id,
            },
            "record": record_to_dict(snapshot.record),
        }
        for snapshot in state.snapshots.values()
    ]
    return sorted(records, key=lambda r: (r["kind"], r["id"]))
