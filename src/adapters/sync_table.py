"""The one DynamoDB table, through pynamodb: records, entitlements, lookups, the event ledger.

Item layout (only the entitlements item is a published contract, see ARCHITECTURE.md, "The table"):

    pk                          sk                      what
    CUSTOMER#<customer>         ENTITLEMENTS            the answer backend services read (contract)
    CUSTOMER#<customer>         STATE                   the live records (domain.live_records) + version
    CUSTOMER#<customer>         <KIND>#<object id>      one record per Stripe object (snapshot + stamp)
    USER#<test|live>#<user id>  CUSTOMER                application user -> customer (consistent read)
    USER#<test|live>#<user id>  ENTITLEMENTS            a user's access across customers (contract)
    PAYMENT#<payment intent>    CUSTOMER                payment -> customer, for disputes
    GUEST#<object id>           <KIND>#<object id>      purchases without a customer
    UNMATCHED#<intent|charge>   <KIND>#<object id>      disputes/refunds of a payment no customer knows
    EVENT#<event id>            EVENT                   ledger of tables written before state items
                                                        (read by nothing now, expires by its TTL)
    RECONCILE                   CURSOR                  the reconciler's resume point
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
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
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from domain.entitlements import Entitlements, Grant
from domain.live_records import LiveRecords
from domain.records import RecordKind, Snapshot, Stamp, record_from_dict, record_to_dict
from domain.settlement import can_drift, pass_learns_account
from domain.sync import (
    ConcurrentChange,
    CustomerChange,
    CustomerState,
    DuplicateEvent,
    EventView,
    StaleWrite,
    StoredEntitlements,
)
from domain.user_entitlements import CustomerPart, UserEntitlements, with_part

USER_WRITE_ATTEMPTS = 5  # writers of a user's other customers in between: read again and merge again
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


class EntitlementsItem(SyncItem, discriminator="entitlements"):
    customer_id = UnicodeAttribute()
    livemode = BooleanAttribute()
    features = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    payment_issue = BooleanAttribute()
    updated_at = NumberAttribute()
    version = NumberAttribute()
    deleted = BooleanAttribute()
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


class UserEntitlementsItem(SyncItem, discriminator="user_entitlements"):
    """A user's access across their customers (ARCHITECTURE.md, "The table")."""

    user_id = UnicodeAttribute()
    livemode = BooleanAttribute()
    features = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    payment_issue = BooleanAttribute()
    updated_at = NumberAttribute()
    version = NumberAttribute()
    deleted = BooleanAttribute()
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


class DynamoCustomerStore:
    """`domain.sync.CustomerStore` on the table."""

    def load(self, customer_id: str) -> CustomerState:
        """The customer's whole partition (one consistent Query): for the ops CLI, and for building the
        live records once (a table written before state items, new rules, a spilled purchase)."""
        snapshots: dict[tuple[RecordKind, str], Snapshot] = {}
        stored: StoredEntitlements | None = None
        version = 0
        state_version: int | None = None
        for item in self._partition(customer_id):
            if isinstance(item, RecordItem):
                snapshot = snapshot_of_item(item)
                snapshots[snapshot.key] = snapshot
            elif isinstance(item, EntitlementsItem):
                stored = entitlements_of(item)
                version = int(item.records_version or 0)
            elif isinstance(item, StateItem):
                state_version = int(item.version)
        return CustomerState(
            customer_id, snapshots, stored, state_version if state_version is not None else version
        )

    def _partition(self, customer_id: str) -> Iterator[SyncItem]:
        yield from SyncItem.query(customer_pk(customer_id), consistent_read=True)

    def read(self, customer_id: str, key: tuple[RecordKind, str]) -> EventView:
        """One consistent BatchGetItem: the state, the event's record, the entitlements item."""
        pk = customer_pk(customer_id)
        record_key = record_sk(key[0], key[1])
        found = {
            item.sk: item
            for item in SyncItem.batch_get(
                [(pk, STATE_SK), (pk, record_key), (pk, ENTITLEMENTS_SK)], consistent_read=True
            )
        }
        state = found.get(STATE_SK)
        record = found.get(record_key)
        entitlements = found.get(ENTITLEMENTS_SK)
        stored = entitlements_of(entitlements) if isinstance(entitlements, EntitlementsItem) else None
        if isinstance(state, StateItem):
            return EventView(
                customer_id,
                snapshot_of_item(record) if isinstance(record, RecordItem) else None,
                live_of_item(state),
                stored,
                int(state.version),
                has_history=True,
            )
        # No state item: a new customer, or one written before state items (its entitlements item was
        # written with every record, so it tells): the applier builds the state from the partition.
        legacy_version = (
            int(entitlements.records_version or 0) if isinstance(entitlements, EntitlementsItem) else 0
        )
        return EventView(
            customer_id,
            snapshot_of_item(record) if isinstance(record, RecordItem) else None,
            None,
            stored,
            legacy_version,
            has_history=stored is not None,
        )

    def commit(self, change: CustomerChange) -> None:
        """Ordered writes, each conditional, none in a transaction (a transaction bills twice):
        lookups that only ever add, the record (stamp), the state (version), the entitlements (computed
        from a newer state). A user lookup that moves goes in one transaction with the record."""
        pk = customer_pk(change.customer_id)
        for adopted in change.adopted:
            _adopt(pk, adopted)
        if change.snapshot is not None:
            self._write_record(pk, change)
        if change.live is not None:
            state = state_item(pk, change.live, change.new_version)
            condition = (
                StateItem.version == change.expected_version
                if change.state_exists
                else StateItem.pk.does_not_exist()
            )
            try:
                state.save(condition=condition)
            except PutError as error:
                if error.cause_response_code == "ConditionalCheckFailedException":
                    raise ConcurrentChange(change.customer_id) from error
                raise
        if change.entitlements is not None:
            self._write_entitlements(pk, change, change.entitlements)
        self._write_user_parts(change)

    def _write_record(self, pk: str, change: CustomerChange) -> None:
        snapshot = change.snapshot
        assert snapshot is not None
        record = snapshot.record
        for intent in change.link_payment_intents:  # a PaymentIntent's customer never changes
            LookupItem(
                f"PAYMENT#{intent}", "CUSTOMER", customer_id=change.customer_id, livemode=record.livemode
            ).save()
        links = [
            LookupItem(
                user_pk(link.user_id, link.livemode),
                "CUSTOMER",
                customer_id=change.customer_id,
                livemode=link.livemode,
            )
            for link in change.link_users
        ]
        # A lookup of a user the customer no longer names is deleted with the record, and only if it
        # still points at this customer (the user may have moved to another one meanwhile).
        unlinks = [
            lookup
            for link in change.unlink_users
            if (lookup := _lookup(user_pk(link.user_id, link.livemode))) is not None
            and lookup.customer_id == change.customer_id
        ]
        item = record_item(pk, snapshot)
        if not unlinks:
            for link_item in links:  # only adds: harmless even if the record then proves stale
                link_item.save()
            try:
                item.save(condition=newer_than_stored(snapshot.stamp))
            except PutError as error:
                if error.cause_response_code == "ConditionalCheckFailedException":
                    raise self._refused(pk, change) from error
                raise
            return
        try:
            with TransactWrite(connection=_connection()) as transaction:
                transaction.save(item, condition=newer_than_stored(snapshot.stamp))
                for link_item in links:
                    transaction.save(link_item)
                for lookup in unlinks:
                    transaction.delete(lookup, condition=LookupItem.customer_id == change.customer_id)
        except TransactWriteError as error:
            reasons = [r.code if r is not None else None for r in error.cancellation_reasons]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise self._refused(pk, change) from error
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in reasons):
                raise ConcurrentChange(change.customer_id) from error
            raise

    @staticmethod
    def _refused(pk: str, change: CustomerChange) -> Exception:
        """The record's condition failed: it already holds this event (a resent write), or newer."""
        assert change.snapshot is not None
        try:
            stored = RecordItem.get(
                pk, record_sk(change.snapshot.record.kind, change.snapshot.record.id), consistent_read=True
            )
        except DoesNotExist:
            return ConcurrentChange(change.customer_id)
        if stored.stamp_event == change.snapshot.stamp.event_id:
            return DuplicateEvent(change.event_id)
        return StaleWrite(change.event_id)

    def _write_entitlements(self, pk: str, change: CustomerChange, entitlements: Entitlements) -> None:
        item = EntitlementsItem(
            pk,
            ENTITLEMENTS_SK,
            customer_id=change.customer_id,
            livemode=entitlements.livemode,
            features=entitlements_to_attributes(entitlements),
            payment_issue=entitlements.payment_issue,
            updated_at=change.updated_at,
            version=change.entitlements_version,
            deleted=entitlements.deleted,
            records_version=change.new_version,
            cause_event_id=change.event_id,
            account=change.account,
            user_id=change.user_id,
            drift_check=pk if pass_learns_account(change.account) else None,
        )
        try:
            item.save(
                condition=EntitlementsItem.pk.does_not_exist()
                | (EntitlementsItem.records_version < change.new_version)
            )
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            # Computed from an older state than the stored one: a later writer already published.

    def _write_user_parts(self, change: CustomerChange) -> None:
        for user_id, livemode, part in change.user_parts():
            for _attempt in range(USER_WRITE_ATTEMPTS):
                pk = user_pk(user_id, livemode)
                try:
                    current = UserEntitlementsItem.get(pk, ENTITLEMENTS_SK, consistent_read=True)
                except UserEntitlementsItem.DoesNotExist:
                    stored = None
                    condition: Any = UserEntitlementsItem.pk.does_not_exist()
                else:
                    stored = user_entitlements_of(current)
                    condition = UserEntitlementsItem.revision == stored.revision
                merged = with_part(stored, user_id, livemode, part, change.now, repair=change.users_repair)
                if merged is None:
                    break  # that customer's part is as new already
                try:
                    user_entitlements_item(pk, merged, change.event_id).save(condition=condition)
                except PutError as error:
                    if error.cause_response_code == "ConditionalCheckFailedException":
                        continue  # another customer of the user wrote in between: merge again
                    raise
                break
            else:
                raise ConcurrentChange(f"user entitlements of {user_id} changed {USER_WRITE_ATTEMPTS} times")

    def customer_of_payment(self, payment_intent_id: str | None, charge_id: str | None) -> str | None:
        for ref in (payment_intent_id, charge_id):
            if ref and (lookup := _lookup(f"PAYMENT#{ref}")) is not None:
                return lookup.customer_id
        return None

    def store_unmatched(self, snapshot: Snapshot) -> bool:
        return _save_if_newer(unmatched_pk(snapshot), snapshot)

    def unmatched_for(self, payment_intent_id: str | None, charge_id: str | None) -> list[Snapshot]:
        found: dict[tuple[RecordKind, str], Snapshot] = {}
        for ref in (payment_intent_id, charge_id):
            if ref:
                for item in RecordItem.query(f"UNMATCHED#{ref}", consistent_read=True):
                    snapshot = snapshot_of_item(item)
                    found[snapshot.key] = snapshot
        return list(found.values())

    def store_guest(self, snapshot: Snapshot, event_type: str) -> bool:
        return _save_if_newer(f"GUEST#{snapshot.record.id}", snapshot)


def _save_if_newer(pk: str, snapshot: Snapshot) -> bool:
    """A record kept outside any customer's partition; False when a newer snapshot is stored."""
    try:
        record_item(pk, snapshot).save(condition=newer_than_stored(snapshot.stamp))
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _adopt(pk: str, adopted: Snapshot) -> None:
    """Move an unmatched dispute/refund into the customer's records, then delete its unmatched copy
    unless it changed meanwhile. Both writes are idempotent: a retry after a crash repeats them."""
    try:
        record_item(pk, adopted).save(condition=newer_than_stored(adopted.stamp))
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise  # else: the customer already holds it (or newer)
    try:
        record_item(unmatched_pk(adopted), adopted).delete(
            condition=RecordItem.stamp_event == adopted.stamp.event_id
        )
    except DeleteError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise  # else: gone already, or a newer copy arrived (the next purchase event adopts it)


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
        drift_check=pk if can_drift(record) else None,
    )


def _connection() -> Connection:
    """The models' own connection, so transactions reuse its botocore client (created once)."""
    return SyncItem._get_connection().connection
