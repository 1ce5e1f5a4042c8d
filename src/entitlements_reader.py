"""Read what a customer may use, straight from the sync table: one strongly consistent GetItem each.

A single module that depends on boto3 only, for backend services to vendor (copy this file) or install
with the project. It reads the published entitlements item and the user entitlements item
(ARCHITECTURE.md, "The table"); it never writes. IAM: the stack's EntitlementsReaderPolicy output, which allows
GetItem of those items and only of the attributes below (ENTITLEMENTS_ATTRIBUTES,
USER_ENTITLEMENTS_ATTRIBUTES, LOOKUP_ATTRIBUTES): every read names them in a ProjectionExpression, so records holding customers'
emails stay out of a reader's reach.

    reader = EntitlementsReader("stripe-sync-prod-SyncTable-…", livemode=True)
    access = reader.user_entitlements("user-42")  # everything any of the user's customers grants
    if access and access.has("pro"):
        ...
    access = reader.entitlements("cus_…")  # one customer's

A backend told of changes (an EventBridge rule on the stack's "Customer Entitlements Changed" events)
reads the same value from the event, with no table read and no IAM on the table:

    def handler(event, context):
        access = entitlements_from_event(event)  # the customer's entitlements after the change
        if access is None or not access.has("pro"):
            end_sessions(event["detail"]["customer_id"])
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3

# What each read asks for; template.yaml's EntitlementsReaderPolicy allows exactly these (and the keys).
ENTITLEMENTS_ATTRIBUTES = (
    "customer_id",
    "livemode",
    "features",
    "payment_issue",
    "updated_at",
    "version",
    "deleted",
)
USER_ENTITLEMENTS_ATTRIBUTES = (
    "user_id",
    "customer_ids",
    "livemode",
    "features",
    "payment_issue",
    "updated_at",
    "version",
    "deleted",
)
LOOKUP_ATTRIBUTES = ("customer_id",)
# The "entitlements changed" events' envelope (domain.entitlement_events in the stack).
EVENT_SOURCE = "stripe-sync"
CUSTOMER_CHANGED = "Customer Entitlements Changed"


class NotAnEntitlementsEvent(ValueError):
    """The event is not a customer's "entitlements changed" event of this stack."""


def projection(attributes: tuple[str, ...]) -> dict[str, Any]:
    """ProjectionExpression with every name as a placeholder (several are DynamoDB reserved words)."""
    return {
        "ProjectionExpression": ", ".join(f"#a{index}" for index in range(len(attributes))),
        "ExpressionAttributeNames": {f"#a{index}": name for index, name in enumerate(attributes)},
    }


@dataclass(frozen=True, slots=True)
class FeatureGrant:
    until: int | None  # epoch seconds; None: no end
    source: str  # the subscription or purchase id, or "entitlements" (Stripe Entitlements)

    def active_at(self, now: float) -> bool:
        return self.until is None or self.until > now


class GrantedFeatures:
    """What a customer's and a user's access answer alike: which features are granted at a time."""

    __slots__ = ()
    features: dict[str, FeatureGrant]

    def has(self, feature: str, now: float | None = None) -> bool:
        """Granted now: present, and its `until` is absent, null or later than now."""
        grant = self.features.get(feature)
        return grant is not None and grant.active_at(time.time() if now is None else now)

    def active_features(self, now: float | None = None) -> set[str]:
        at = time.time() if now is None else now
        return {name for name, grant in self.features.items() if grant.active_at(at)}


@dataclass(frozen=True, slots=True)
class CustomerEntitlements(GrantedFeatures):
    customer_id: str
    livemode: bool
    features: dict[str, FeatureGrant]
    payment_issue: bool
    deleted: bool
    version: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class UserEntitlements(GrantedFeatures):
    """A user's access across all their Stripe customers: a feature is granted when any of them
    grants it (the latest `until` wins)."""

    user_id: str
    customer_ids: tuple[str, ...]
    livemode: bool
    features: dict[str, FeatureGrant]
    payment_issue: bool
    deleted: bool  # every customer of the user is deleted
    version: int
    updated_at: int


class EntitlementsReader:
    def __init__(self, table_name: str, *, livemode: bool = True, client: Any = None) -> None:
        self._table = table_name
        self._livemode = livemode
        self._client = client or boto3.client("dynamodb")

    def entitlements(self, customer_id: str) -> CustomerEntitlements | None:
        """The customer's entitlements, or None when the table has never heard of the customer."""
        response = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"CUSTOMER#{customer_id}"}, "sk": {"S": "ENTITLEMENTS"}},
            ConsistentRead=True,
            **projection(ENTITLEMENTS_ATTRIBUTES),
        )
        item = response.get("Item")
        return None if item is None else parse_entitlements_item(item)

    def user_entitlements(self, user_id: str, *, livemode: bool | None = None) -> UserEntitlements | None:
        """The application user's access (customer metadata or Checkout client_reference_id named
        them) across all their customers, in this reader's mode unless told otherwise; None when no
        customer names the user."""
        item = self._user_item(user_id, "ENTITLEMENTS", USER_ENTITLEMENTS_ATTRIBUTES, livemode)
        return None if item is None else parse_user_entitlements_item(item)

    def customer_for_user(self, user_id: str, *, livemode: bool | None = None) -> str | None:
        """One Stripe customer of the application's user (the one whose record named the user last),
        in this reader's mode unless told otherwise. A user may have several customers: for what the
        user may use, read `user_entitlements`."""
        item = self._user_item(user_id, "CUSTOMER", LOOKUP_ATTRIBUTES, livemode)
        return None if item is None else str(item["customer_id"]["S"])

    def _user_item(
        self, user_id: str, sort_key: str, attributes: tuple[str, ...], livemode: bool | None
    ) -> dict[str, Any] | None:
        """One of the user's items, read consistently, in this reader's mode unless told otherwise."""
        mode = "live" if (self._livemode if livemode is None else livemode) else "test"
        response = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"USER#{mode}#{user_id}"}, "sk": {"S": sort_key}},
            ConsistentRead=True,
            **projection(attributes),
        )
        item: dict[str, Any] | None = response.get("Item")
        return item


def _features(item: dict[str, Any]) -> dict[str, FeatureGrant]:
    features: dict[str, FeatureGrant] = {}
    for name, value in item.get("features", {}).get("M", {}).items():
        grant = value["M"]
        until = grant.get("until")
        features[name] = FeatureGrant(
            until=int(until["N"]) if until and "N" in until else None,
            source=str(grant["source"]["S"]),
        )
    return features


def parse_user_entitlements_item(item: dict[str, Any]) -> UserEntitlements:
    """The user entitlements item as DynamoDB's low-level API returns it -> UserEntitlements."""
    return UserEntitlements(
        user_id=str(item["user_id"]["S"]),
        customer_ids=tuple(str(c["S"]) for c in item.get("customer_ids", {}).get("L", [])),
        livemode=bool(item["livemode"]["BOOL"]),
        features=_features(item),
        payment_issue=bool(item["payment_issue"]["BOOL"]),
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
        version=int(item["version"]["N"]),
        updated_at=int(item["updated_at"]["N"]),
    )


def parse_entitlements_item(item: dict[str, Any]) -> CustomerEntitlements:
    """The item as DynamoDB's low-level API returns it -> CustomerEntitlements."""
    return CustomerEntitlements(
        customer_id=str(item["customer_id"]["S"]),
        livemode=bool(item["livemode"]["BOOL"]),
        features=_features(item),
        payment_issue=bool(item["payment_issue"]["BOOL"]),
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
        version=int(item["version"]["N"]),
        updated_at=int(item["updated_at"]["N"]),
    )


def entitlements_from_event(event: dict[str, Any]) -> CustomerEntitlements | None:
    """A "Customer Entitlements Changed" EventBridge event -> the customer's entitlements after the
    change, as `EntitlementsReader.entitlements` would have read them then (None: the item was deleted).
    EventBridge delivers at least once and in any order: keep the highest `version` seen per customer
    and drop a copy with a lower or equal one."""
    if not isinstance(event, dict) or event.get("source") != EVENT_SOURCE:
        raise NotAnEntitlementsEvent("not an event of the stripe-sync stack")
    if event.get("detail-type") != CUSTOMER_CHANGED:
        raise NotAnEntitlementsEvent(f"detail-type {event.get('detail-type')!r} is not {CUSTOMER_CHANGED!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise NotAnEntitlementsEvent("event has no detail")
    after = detail.get("after")
    if after is None:
        return None
    try:
        return CustomerEntitlements(
            customer_id=str(detail["customer_id"]),
            livemode=bool(detail["livemode"]),
            features={
                name: FeatureGrant(
                    until=None if grant.get("until") is None else int(grant["until"]),
                    source=str(grant["source"]),
                )
                for name, grant in after["features"].items()
            },
            payment_issue=bool(after["payment_issue"]),
            deleted=bool(after["deleted"]),
            version=int(detail["version"]),
            updated_at=int(detail["updated_at"]),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise NotAnEntitlementsEvent(f"detail is not an entitlements change: {error!r}") from error
