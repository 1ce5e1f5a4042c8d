"""The worker's `domain.sync.CustomerStore` on the one DynamoDB table: reads of a customer's items and
their ordered, conditional writes. The items themselves (models, keys, conversions) are
adapters.table_items; ARCHITECTURE.md, "The table", describes the layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from adapters.table_items import (
    ENTITLEMENTS_SK,
    STATE_SK,
    EntitlementsItem,
    LookupItem,
    RecordItem,
    StateItem,
    SyncItem,
    UserEntitlementsItem,
    customer_pk,
    entitlements_of,
    entitlements_to_attributes,
    live_of_item,
    record_item,
    record_sk,
    snapshot_of_item,
    state_item,
    unmatched_pk,
    user_entitlements_item,
    user_entitlements_of,
    user_pk,
)
from domain.entitlements import Entitlements
from domain.records import RecordKind, Snapshot, Stamp
from domain.settlement import pass_learns_account
from domain.sync import (
    ConcurrentChange,
    CustomerChange,
    CustomerState,
    DuplicateEvent,
    EventView,
    StaleWrite,
    StoredEntitlements,
)
from domain.user_entitlements import with_part

USER_WRITE_ATTEMPTS = 5  # writers of a user's other customers in between: read again and merge again


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


def _lookup(pk: str) -> LookupItem | None:
    try:
        return LookupItem.get(pk, "CUSTOMER", consistent_read=True)
    except LookupItem.DoesNotExist:
        return None


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


def _connection() -> Connection:
    """The models' own connection, so transactions reuse its botocore client (created once)."""
    return SyncItem._get_connection().connection
