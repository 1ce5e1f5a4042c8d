"""The one DynamoDB table, through pynamodb: records, entitlements, lookups, the event ledger.

Item layout (only the entitlements item is a published contract, see DESIGN.md):

    pk                          sk                      what
    CUSTOMER#<customer>         ENTITLEMENTS            the answer backend services read (contract)
    CUSTOMER#<customer>         <KIND>#<object id>      one record per Stripe object (snapshot + stamp)
    USER#<test|live>#<user id>  CUSTOMER                application user -> customer (consistent read)
    PAYMENT#<payment intent>    CUSTOMER                payment -> customer, for disputes
    GUEST#<object id>           <KIND>#<object id>      purchases without a customer
    UNMATCHED#<intent|charge>   <KIND>#<object id>      disputes/refunds of a payment no customer knows
    EVENT#<event id>            EVENT                   ledger: applied events, expires after the TTL
    RECONCILE                   CURSOR                  the reconciler's resume point
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from domain.entitlements import Entitlements, Grant
from domain.records import RecordKind, Snapshot, Stamp, record_from_dict, record_to_dict
from domain.sync import (
    ConcurrentChange,
    CustomerChange,
    CustomerState,
    DuplicateEvent,
    StaleWrite,
    StoredEntitlements,
)

DAY = 86_400
ENTITLEMENTS_SK = "ENTITLEMENTS"


class SyncItem(Model):
    """Every item of the table; `item_type` tells pynamodb which class to read it back as."""

    class Meta:
        table_name = os.environ.get("TABLE_NAME", "stripe-sync")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    item_type = DiscriminatorAttribute()


class RecordItem(SyncItem, discriminator="record"):
    kind = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    account = UnicodeAttribute(null=True)  # Connect account, for fetching the object back
    livemode = BooleanAttribute()
    stamp_created = NumberAttribute()
    stamp_rank = NumberAttribute()
    stamp_event = UnicodeAttribute()
    body = UnicodeAttribute()  # the record as JSON: internal, may change shape


class EntitlementsItem(SyncItem, discriminator="entitlements"):
    customer_id = UnicodeAttribute()
    livemode = BooleanAttribute()
    features = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    payment_issue = BooleanAttribute()
    updated_at = NumberAttribute()
    version = NumberAttribute()
    deleted = BooleanAttribute()
    records_version = NumberAttribute()  # internal: one higher at every write to the customer


class LookupItem(SyncItem, discriminator="lookup"):
    customer_id = UnicodeAttribute()
    livemode = BooleanAttribute(null=True)


class LedgerItem(SyncItem, discriminator="event"):
    event_type = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    record_key = UnicodeAttribute(null=True)
    applied_at = NumberAttribute()
    expires_at = TTLAttribute()


def configure(table_name: str, *, host: str | None = None, region: str | None = None) -> None:
    """Point the models at a table (tests and the local runtime; Lambdas use TABLE_NAME)."""
    SyncItem.Meta.table_name = table_name
    if host is not None:
        SyncItem.Meta.host = host
    if region is not None:
        SyncItem.Meta.region = region
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
    features: dict[str, Any] = {}
    for name, grant in sorted(entitlements.features.items()):
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


def snapshot_of_item(item: RecordItem) -> Snapshot:
    kind: RecordKind = item.kind  # type: ignore[assignment]
    record = record_from_dict(kind, json.loads(item.body))
    return Snapshot(
        record,
        Stamp(int(item.stamp_created), int(item.stamp_rank), item.stamp_event),
        item.customer_id,
        item.account,
    )


class DynamoCustomerStore:
    """`domain.sync.CustomerStore` on the table."""

    def __init__(self, ledger_days: int = 45, clock: Any = None) -> None:
        # The ledger outlives Stripe's 30 days of retries plus the DLQ's 14 days of retention.
        self._ledger_seconds = ledger_days * DAY
        self._clock = clock

    def load(self, customer_id: str) -> CustomerState:
        snapshots: dict[tuple[RecordKind, str], Snapshot] = {}
        stored: StoredEntitlements | None = None
        records_version = 0
        for item in self._partition(customer_id):
            if isinstance(item, RecordItem):
                snapshot = snapshot_of_item(item)
                snapshots[snapshot.key] = snapshot
            elif isinstance(item, EntitlementsItem):
                stored = entitlements_of(item)
                records_version = int(item.records_version or 0)
        return CustomerState(customer_id, snapshots, stored, records_version)

    def _partition(self, customer_id: str) -> Iterator[SyncItem]:
        yield from SyncItem.query(customer_pk(customer_id), consistent_read=True)

    def commit(self, change: CustomerChange) -> None:
        snapshot = change.snapshot
        record = snapshot.record
        stamp = snapshot.stamp
        pk = customer_pk(change.customer_id)
        now = int(self._clock()) if self._clock else change.updated_at
        ledger = LedgerItem(
            f"EVENT#{change.event_id}",
            "EVENT",
            event_type=change.event_type,
            customer_id=change.customer_id,
            record_key=record_sk(record.kind, record.id),
            applied_at=now,
            expires_at=datetime.fromtimestamp(now + self._ledger_seconds, UTC),
        )
        stored_record = record_item(pk, snapshot)
        entitlements = change.entitlements
        entitlements_item = EntitlementsItem(
            pk,
            ENTITLEMENTS_SK,
            customer_id=change.customer_id,
            livemode=entitlements.livemode,
            features=entitlements_to_attributes(entitlements),
            payment_issue=entitlements.payment_issue,
            updated_at=change.updated_at,
            version=change.entitlements_version,
            deleted=entitlements.deleted,
            records_version=change.expected_records_version + 1,
        )
        version_condition = (
            EntitlementsItem.pk.does_not_exist()
            if change.expected_records_version == 0
            else EntitlementsItem.records_version == change.expected_records_version
        )
        # A lookup of a user the customer no longer names goes in the same transaction, and only if
        # it still points at this customer (the user may have moved to another one meanwhile).
        unlinks = [
            lookup
            for link in change.unlink_users
            if (lookup := _lookup(user_pk(link.user_id, link.livemode))) is not None
            and lookup.customer_id == change.customer_id
        ]
        try:
            with TransactWrite(connection=_connection()) as transaction:
                transaction.save(ledger, condition=LedgerItem.pk.does_not_exist())
                transaction.save(stored_record, condition=newer_than_stored(stamp))
                transaction.save(entitlements_item, condition=version_condition)
                for link in change.link_users:
                    transaction.save(
                        LookupItem(
                            user_pk(link.user_id, link.livemode),
                            "CUSTOMER",
                            customer_id=change.customer_id,
                            livemode=link.livemode,
                        )
                    )
                for lookup in unlinks:
                    transaction.delete(lookup, condition=LookupItem.customer_id == change.customer_id)
                for intent in change.link_payment_intents:
                    transaction.save(
                        LookupItem(
                            f"PAYMENT#{intent}",
                            "CUSTOMER",
                            customer_id=change.customer_id,
                            livemode=record.livemode,
                        )
                    )
                for adopted in change.adopted:
                    # Moved into the customer's records; its unmatched copy goes, unless it changed.
                    transaction.save(record_item(pk, adopted), condition=newer_than_stored(adopted.stamp))
                    transaction.delete(
                        record_item(unmatched_pk(adopted), adopted),
                        condition=RecordItem.stamp_event == adopted.stamp.event_id,
                    )
        except TransactWriteError as error:
            raise _condition_failure(error, change) from error

    def customer_of_payment(self, payment_intent_id: str | None, charge_id: str | None) -> str | None:
        for ref in (payment_intent_id, charge_id):
            if ref and (lookup := _lookup(f"PAYMENT#{ref}")) is not None:
                return lookup.customer_id
        return None

    def store_unmatched(self, snapshot: Snapshot) -> bool:
        item = record_item(unmatched_pk(snapshot), snapshot)
        try:
            item.save(condition=newer_than_stored(snapshot.stamp))
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def unmatched_for(self, payment_intent_id: str | None, charge_id: str | None) -> list[Snapshot]:
        found: dict[tuple[RecordKind, str], Snapshot] = {}
        for ref in (payment_intent_id, charge_id):
            if ref:
                for item in RecordItem.query(f"UNMATCHED#{ref}", consistent_read=True):
                    snapshot = snapshot_of_item(item)
                    found[snapshot.key] = snapshot
        return list(found.values())

    def store_guest(self, snapshot: Snapshot, event_type: str) -> bool:
        item = record_item(f"GUEST#{snapshot.record.id}", snapshot)
        try:
            item.save(condition=newer_than_stored(snapshot.stamp))
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _lookup(pk: str) -> LookupItem | None:
    try:
        return LookupItem.get(pk, "CUSTOMER", consistent_read=True)
    except LookupItem.DoesNotExist:
        return None


def unmatched_pk(snapshot: Snapshot) -> str:
    """An unmatched dispute or refund is kept under its payment intent, else its charge."""
    record = snapshot.record
    ref = getattr(record, "payment_intent_id", None) or getattr(record, "charge_id", None) or record.id
    return f"UNMATCHED#{ref}"


def newer_than_stored(stamp: Stamp) -> Any:
    """The record write's condition: nothing stored yet, or an older stamp (created, rank, event id)."""
    return (
        RecordItem.pk.does_not_exist()
        | (RecordItem.stamp_created < stamp.created)
        | ((RecordItem.stamp_created == stamp.created) & (RecordItem.stamp_rank < stamp.rank))
        | (
            (RecordItem.stamp_created == stamp.created)
            & (RecordItem.stamp_rank == stamp.rank)
            & (RecordItem.stamp_event < stamp.event_id)
        )
    )


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
    )


def _condition_failure(error: TransactWriteError, change: CustomerChange) -> Exception:
    """Which condition failed, by position: ledger, record, entitlements, then lookups (a lookup that
    changed since it was read is a concurrent change: the retry reads it again)."""
    reasons = [r.code if r is not None else None for r in error.cancellation_reasons]
    if not reasons:
        return error
    if reasons[0] == "ConditionalCheckFailed":
        return DuplicateEvent(change.event_id)
    if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
        return StaleWrite(change.event_id)
    if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in reasons):
        return ConcurrentChange(change.customer_id)
    return error


def _connection() -> Connection:
    """The models' own connection, so transactions reuse its botocore client (created once)."""
    return SyncItem._get_connection().connection
