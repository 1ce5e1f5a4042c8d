"""The one DynamoDB table's items, through pynamodb: the models, their keys, and the conversions between
items and the domain's records, entitlements and live records. adapters.sync_table writes them for the
worker; adapters.reconciler and adapters.reconcile_cursor read them for the reconciler.

Item layout (the items marked "contract" are published; ARCHITECTURE.md, "The table"):

    pk                          sk                      what
    CUSTOMER#<customer>         ENTITLEMENTS            the answer backend services read (contract)
    CUSTOMER#<customer>         STATE                   the live records (domain.live_records) + version
    CUSTOMER#<customer>         <KIND>#<object id>      one record per Stripe object (snapshot + stamp)
    USER#<test|live>#<user id>  CUSTOMER                app user -> customer (contract, read consistently)
    USER#<test|live>#<user id>  ENTITLEMENTS            a user's access across customers (contract)
    PAYMENT#<payment intent>    CUSTOMER                payment -> customer, for disputes
    GUEST#<object id>           <KIND>#<object id>      purchases without a customer
    UNMATCHED#<intent|charge>   <KIND>#<object id>      disputes/refunds of a payment no customer knows
    EVENT#<event id>            EVENT                   ledger of tables written before state items
                                                        (read by the reconciler until 2027-01-01,
                                                        expires by its TTL)
    RECONCILE                   CURSOR                  the reconciler's resume point (its other items:
                                                        adapters.reconcile_cursor)
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    DiscriminatorAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from domain.entitlements import Entitlements, Grant
from domain.live_records import LiveRecords
from domain.records import RecordKind, Snapshot, Stamp, record_from_dict, record_to_dict
from domain.settlement import can_drift
from domain.sync import (
    StoredEntitlements,
)
from domain.user_entitlements import CustomerPart, UserEntitlements

ENTITLEMENTS_SK = "ENTITLEMENTS"
STATE_SK = "STATE"


RECORDS_TO_CHECK = "records-to-check"


class RecordsToCheck(GlobalSecondaryIndex["SyncItem"]):  # type: ignore[no-untyped-call]
    """The sparse index of the items marked `drift_check` (template.yaml declares it): records that can
    still drift (domain.settlement.can_drift) and Connect customers' entitlements items. Keys plus what
    never changes once written, so a record's later writes do not write the index again."""

    class Meta:
        index_name = RECORDS_TO_CHECK
        projection = IncludeProjection(["item_type", "kind", "livemode", "account"])

    drift_check = UnicodeAttribute(hash_key=True)


class SyncItem(Model):
    """Every item of the table; `item_type` tells pynamodb which class to read it back as."""

    class Meta:
        # Until configure() is called with the function's settings (adapters.settings.TableSettings).
        table_name = "stripe-sync"
        region = "us-east-1"
        host: str | None = None
        aws_access_key_id: str | None = None
        aws_secret_access_key: str | None = None

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    item_type = DiscriminatorAttribute()
    # Set (to the item's pk, which spreads the index's partitions) only on the items the reconciler's
    # records phase reads; a write that settles the record leaves it out (a PutItem replaces the item).
    drift_check = UnicodeAttribute(null=True)
    records_to_check = RecordsToCheck()


class RecordItem(SyncItem, discriminator="record"):
    kind = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    account = UnicodeAttribute(null=True)  # Connect account, for fetching the object back
    livemode = BooleanAttribute()
    stamp_created = NumberAttribute()
    stamp_rank = NumberAttribute()
    stamp_event = UnicodeAttribute()
    body = UnicodeAttribute()  # the record as JSON: internal, may change shape


class AccessItem(SyncItem):
    """What an entitlements reader reads, of a customer or of a user (ARCHITECTURE.md, "The table"):
    the fields both items share. No discriminator: never an item of its own."""

    livemode = BooleanAttribute()
    features = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    payment_issue = BooleanAttribute()
    updated_at = NumberAttribute()
    version = NumberAttribute()
    deleted = BooleanAttribute()


class EntitlementsItem(AccessItem, discriminator="entitlements"):
    customer_id = UnicodeAttribute()
    records_version = NumberAttribute()  # internal: one higher at every write to the customer
    # Internal, for the "entitlements changed" event the table's stream publishes (no extra write):
    cause_event_id = UnicodeAttribute(null=True)  # the Stripe event whose write changed access
    account = UnicodeAttribute(null=True)  # the customer's Connect account
    user_id = UnicodeAttribute(null=True)  # the application's user id the customer names


class StateItem(SyncItem, discriminator="state"):
    """One per customer: the live records, compressed (they are rewritten at most events, and DynamoDB
    bills writes per started KB), and the version every writer of the customer conditions on."""

    version = NumberAttribute()
    rules = UnicodeAttribute()
    livemode = BooleanAttribute(null=True)
    spilled = BooleanAttribute()
    records = BinaryAttribute(legacy_encoding=False)  # zlib(JSON list of stored snapshots)
    purchase_users = UnicodeAttribute(null=True)  # JSON list: users the customer's sessions named


class UserEntitlementsItem(AccessItem, discriminator="user_entitlements"):
    """A user's access across their customers (ARCHITECTURE.md, "The table")."""

    user_id = UnicodeAttribute()
    customer_ids = ListAttribute[UnicodeAttribute](of=UnicodeAttribute)
    # Internal: one higher at every write (each write is conditional on it), and each customer's part
    # as of that customer's state version (JSON; domain.user_entitlements).
    revision = NumberAttribute()
    parts = UnicodeAttribute()
    cause_event_id = UnicodeAttribute(null=True)  # the Stripe event of the last write, for its stream


class LookupItem(SyncItem, discriminator="lookup"):
    customer_id = UnicodeAttribute()
    livemode = BooleanAttribute(null=True)


class LedgerItem(SyncItem, discriminator="event"):
    event_type = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    record_key = UnicodeAttribute(null=True)
    applied_at = NumberAttribute()
    expires_at = TTLAttribute()


def configure(
    table_name: str,
    *,
    host: str | None = None,
    region: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> None:
    """Point the models at a table: the worker and the reconciler with their settings' TableSettings,
    the ops CLI with its target (`credentials`, access key id and secret, for --local's dummies;
    otherwise botocore's chain finds them). `host` and `region` left None keep what was set."""
    SyncItem.Meta.table_name = table_name
    if host is not None:
        SyncItem.Meta.host = host
    if region is not None:
        SyncItem.Meta.region = region
    if credentials is not None:
        SyncItem.Meta.aws_access_key_id, SyncItem.Meta.aws_secret_access_key = credentials
    models: list[type[SyncItem]] = [SyncItem]
    while models:  # every item class, including those other adapters define (the reconciler's cursor)
        model = models.pop()
        model._connection = None  # pynamodb caches the connection per class
        models.extend(model.__subclasses__())


def customer_pk(customer_id: str) -> str:
    return f"CUSTOMER#{customer_id}"


def record_sk(kind: RecordKind, object_id: str) -> str:
    return f"{kind.upper()}#{object_id}"


def user_pk(user_id: str, livemode: bool) -> str:
    return f"USER#{'live' if livemode else 'test'}#{user_id}"


def entitlements_to_attributes(entitlements: Entitlements) -> dict[str, Any]:
    """`features` as the contract says: name -> {until: N (absent for no end), source: S}."""
    return _features_attribute(entitlements.features)


def _features_attribute(granted: Mapping[str, Grant]) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name, grant in sorted(granted.items()):
        value: dict[str, Any] = {"source": grant.source}
        if grant.until is not None:
            value["until"] = grant.until
        features[name] = value
    return features


def entitlements_of(item: EntitlementsItem) -> StoredEntitlements:
    raw = item.features.as_dict() if item.features is not None else {}  # type: ignore[no-untyped-call]
    features = {
        name: Grant(None if value.get("until") is None else int(value["until"]), str(value["source"]))
        for name, value in raw.items()
    }
    entitlements = Entitlements(
        customer_id=item.customer_id,
        livemode=bool(item.livemode),
        features=features,
        payment_issue=bool(item.payment_issue),
        deleted=bool(item.deleted),
    )
    return StoredEntitlements(entitlements, int(item.version), int(item.updated_at))


def user_entitlements_item(
    pk: str, user: UserEntitlements, cause_event_id: str | None = None
) -> UserEntitlementsItem:
    parts = {
        customer: {
            "version": part.version,
            "entitlements": None
            if part.entitlements is None
            else {
                "livemode": part.entitlements.livemode,
                "features": entitlements_to_attributes(part.entitlements),
                "payment_issue": part.entitlements.payment_issue,
                "deleted": part.entitlements.deleted,
            },
        }
        for customer, part in sorted(user.parts.items())
    }
    return UserEntitlementsItem(
        pk,
        ENTITLEMENTS_SK,
        user_id=user.user_id,
        livemode=user.livemode,
        features=_features_attribute(user.features),
        payment_issue=user.payment_issue,
        updated_at=user.updated_at,
        version=user.version,
        deleted=user.deleted,
        customer_ids=list(user.customer_ids),
        revision=user.revision,
        parts=json.dumps(parts, separators=(",", ":"), sort_keys=True),
        cause_event_id=cause_event_id,
    )


def user_entitlements_of(item: UserEntitlementsItem) -> UserEntitlements:
    parts: dict[str, CustomerPart] = {}
    for customer, raw in json.loads(item.parts).items():
        held = raw["entitlements"]
        entitlements = (
            None
            if held is None
            else Entitlements(
                customer_id=customer,
                livemode=bool(held["livemode"]),
                features=_features_of(held["features"]),
                payment_issue=bool(held["payment_issue"]),
                deleted=bool(held["deleted"]),
            )
        )
        parts[customer] = CustomerPart(customer, int(raw["version"]), entitlements)
    raw_features = item.features.as_dict() if item.features is not None else {}  # type: ignore[no-untyped-call]
    return UserEntitlements(
        user_id=item.user_id,
        livemode=bool(item.livemode),
        parts=parts,
        features=_features_of(raw_features),
        payment_issue=bool(item.payment_issue),
        deleted=bool(item.deleted),
        customer_ids=tuple(str(c) for c in item.customer_ids or ()),
        version=int(item.version),
        updated_at=int(item.updated_at),
        revision=int(item.revision),
    )


def _features_of(raw: dict[str, Any]) -> dict[str, Grant]:
    return {
        name: Grant(None if value.get("until") is None else int(value["until"]), str(value["source"]))
        for name, value in raw.items()
    }


def snapshot_of_item(item: RecordItem) -> Snapshot:
    kind: RecordKind = item.kind  # type: ignore[assignment]
    record = record_from_dict(kind, json.loads(item.body))
    return Snapshot(
        record,
        Stamp(int(item.stamp_created), int(item.stamp_rank), item.stamp_event),
        item.customer_id,
        item.account,
    )


def state_item(pk: str, live: LiveRecords, version: int) -> StateItem:
    records = [
        [
            s.record.kind,
            s.customer_id,
            s.account,
            s.stamp.created,
            s.stamp.rank,
            s.stamp.event_id,
            record_to_dict(s.record),
        ]
        for _, s in sorted(live.snapshots.items())
    ]
    body = json.dumps(records, separators=(",", ":"), sort_keys=True).encode()
    return StateItem(
        pk,
        STATE_SK,
        version=version,
        rules=live.rules,
        livemode=live.livemode,
        spilled=live.spilled,
        records=zlib.compress(body, 9),
        purchase_users=json.dumps(sorted(live.purchase_users)) if live.purchase_users else None,
    )


def live_of_item(item: StateItem) -> LiveRecords:
    snapshots = {}
    for kind, customer_id, account, created, rank, event_id, data in json.loads(
        zlib.decompress(item.records)
    ):
        record = record_from_dict(kind, data)
        snapshot = Snapshot(record, Stamp(int(created), int(rank), event_id), customer_id, account)
        snapshots[snapshot.key] = snapshot
    users = frozenset(json.loads(item.purchase_users)) if item.purchase_users else frozenset()
    return LiveRecords(snapshots, item.livemode, bool(item.spilled), item.rules, users)


def unmatched_pk(snapshot: Snapshot) -> str:
    """An unmatched dispute or refund is kept under its payment intent, else its charge."""
    record = snapshot.record
    ref = getattr(record, "payment_intent_id", None) or getattr(record, "charge_id", None) or record.id
    return f"UNMATCHED#{ref}"


def record_item(pk: str, snapshot: Snapshot) -> RecordItem:
    record = snapshot.record
    return RecordItem(
        pk,
        record_sk(record.kind, record.id),
        kind=record.kind,
        customer_id=snapshot.customer_id,
        account=snapshot.account,
        livemode=record.livemode,
        stamp_created=snapshot.stamp.created,
        stamp_rank=snapshot.stamp.rank,
        stamp_event=snapshot.stamp.event_id,
        body=json.dumps(record_to_dict(record), separators=(",", ":"), sort_keys=True),
        drift_check=pk if can_drift(record) else None,
    )
